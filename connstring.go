package weir

import (
	"net"
	"net/url"
	"strings"
)

// eventHubsKafkaPort is the port of Event Hubs' Kafka endpoint.
const eventHubsKafkaPort = "9093"

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
	s = strings.TrimSpace(s)
	if s == "" {
		return EventHubsConnection{}, &ConnectionStringError{Reason: "empty"}
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return EventHubsConnection{}, &ConnectionStringError{Reason: "part " + quoteKey(kv) + " has no '='"}
		}
		parts[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	for _, need := range []string{"Endpoint", "SharedAccessKeyName", "SharedAccessKey"} {
		if parts[strings.ToLower(need)] == "" {
			return EventHubsConnection{}, &ConnectionStringError{Missing: need}
		}
	}
	u, err := url.Parse(parts["endpoint"])
	if err != nil || u.Host == "" {
		return EventHubsConnection{}, &ConnectionStringError{Reason: "Endpoint is not a URL like sb://NAMESPACE.servicebus.windows.net/"}
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = eventHubsKafkaPort
	}
	return EventHubsConnection{
		Broker:     net.JoinHostPort(host, port),
		EntityPath: parts["entitypath"],
		raw:        s,
	}, nil
}

// quoteKey shows at most the first few characters of a malformed part, so
// that an error never echoes a whole key.
func quoteKey(s string) string {
	if len(s) > 12 {
		s = s[:12] + "..."
	}
	return "\"" + s + "\""
}
