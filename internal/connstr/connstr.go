// Package connstr parses Azure Event Hubs connection strings:
//
//	Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=NAME;SharedAccessKey=KEY;EntityPath=HUB
//
// The SDK (root package) reads them to find the namespace and log in; the
// broker reads the same strings when a client logs in with SASL PLAIN as
// "$ConnectionString". Both share this one parser, so both agree on what a
// valid string is.
package connstr

import (
	"net"
	"net/url"
	"strings"
)

// Error reports what is wrong with a connection string. It never includes
// the shared access key.
type Error struct {
	// Missing names the absent part ("Endpoint", "SharedAccessKeyName",
	// "SharedAccessKey"), or is empty when Reason says what else is wrong.
	Missing string
	Reason  string
}

func (e *Error) Error() string {
	if e.Missing != "" {
		return "missing " + e.Missing
	}
	return e.Reason
}

// Parts are the parts of a connection string that weir uses.
type Parts struct {
	// Host and Port are the endpoint's; Port is "" unless the endpoint
	// names one.
	Host, Port string
	KeyName    string // SharedAccessKeyName
	Key        string // SharedAccessKey
	EntityPath string // "" when the string names no event hub
}

// KafkaPort is the port of Event Hubs' Kafka endpoint, used when the
// endpoint names none.
const KafkaPort = "9093"

// Broker is the Kafka endpoint of the string: its host, on its port or
// KafkaPort.
func (p Parts) Broker() string {
	port := p.Port
	if port == "" {
		port = KafkaPort
	}
	return net.JoinHostPort(p.Host, port)
}

// Parse parses s. Keys are matched case-insensitively, as the Azure SDKs
// do. A missing or malformed part is reported as an *Error.
func Parse(s string) (Parts, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Parts{}, &Error{Reason: "empty"}
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Parts{}, &Error{Reason: "part " + quoteKey(kv) + " has no '='"}
		}
		parts[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	for _, need := range []string{"Endpoint", "SharedAccessKeyName", "SharedAccessKey"} {
		if parts[strings.ToLower(need)] == "" {
			return Parts{}, &Error{Missing: need}
		}
	}
	u, err := url.Parse(parts["endpoint"])
	if err != nil || u.Host == "" {
		return Parts{}, &Error{Reason: "Endpoint is not a URL like sb://NAMESPACE.servicebus.windows.net/"}
	}
	return Parts{
		Host:       u.Hostname(),
		Port:       u.Port(),
		KeyName:    parts["sharedaccesskeyname"],
		Key:        parts["sharedaccesskey"],
		EntityPath: parts["entitypath"],
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
