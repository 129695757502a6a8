package weir

import (
	"errors"
	"strings"

	"github.com/weirhq/weir/internal/connstr"
)

// ConnectionStringError reports what is wrong with an Event Hubs connection
// string. It never includes the shared access key.
type ConnectionStringError struct {
	// Missing names the absent part ("Endpoint", "SharedAccessKeyName",
	// "SharedAccessKey"), or is empty when Reason says what else is wrong.
	Missing string
	Reason  string
}

func (e *ConnectionStringError) Error() string {
	if e.Missing != "" {
		return "weir: bad connection string: missing " + e.Missing
	}
	return "weir: bad connection string: " + e.Reason
}

func (e *ConnectionStringError) Unwrap() error { return ErrInvalidConfig }

// EventHubsConnection is a parsed Event Hubs connection string:
//
//	Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=NAME;SharedAccessKey=KEY;EntityPath=HUB
type EventHubsConnection struct {
	// Broker is the Kafka endpoint: the endpoint's host on port 9093,
	// unless the endpoint names a port.
	Broker string
	// EntityPath is the event hub (topic), or "" when the string names none.
	EntityPath string
	// raw is the whole string: Event Hubs takes it as the SASL PLAIN
	// password, with the user "$ConnectionString".
	raw string
}

// ParseConnectionString parses an Event Hubs connection string. Keys are
// matched case-insensitively, as the Azure SDKs do. A missing or malformed
// part is reported as a *ConnectionStringError.
func ParseConnectionString(s string) (EventHubsConnection, error) {
	p, err := connstr.Parse(s)
	if err != nil {
		var ce *connstr.Error
		if errors.As(err, &ce) {
			return EventHubsConnection{}, &ConnectionStringError{Missing: ce.Missing, Reason: ce.Reason}
		}
		return EventHubsConnection{}, &ConnectionStringError{Reason: err.Error()}
	}
	return EventHubsConnection{
		Broker:     p.Broker(),
		EntityPath: p.EntityPath,
		raw:        strings.TrimSpace(s),
	}, nil
}
