package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/internal/connstr"
)

// SASL login, as on a Kafka SASL listener (KIP-43, KIP-152): after any
// number of ApiVersions, a connection sends SaslHandshake naming its
// mechanism (only PLAIN here), then its PLAIN message in SaslAuthenticate
// (handshake v1) or as a raw size-prefixed token (handshake v0). Any other
// request before that, or the login steps out of order, closes the
// connection; refused credentials are answered, then the connection is
// closed. sasl_handshake.go and sasl_authenticate.go are the two APIs.

const (
	apiKeySaslHandshake    = 17
	apiKeySaslAuthenticate = 36

	// mechanismPlain is the one SASL mechanism weir serves.
	mechanismPlain = "PLAIN"
	// connectionStringUser is the PLAIN user of Event Hubs-style logins:
	// the password is a whole connection string.
	connectionStringUser = "$ConnectionString"
)

// saslAPIs are the entries SASL adds to the ApiVersions answer.
var saslAPIs = []api{
	{apiKeySaslHandshake, 0, 1, nil},
	{apiKeySaslAuthenticate, 0, 2, nil},
}

// loginStep is where a connection is in its SASL login.
type loginStep uint8

const (
	awaitHandshake    loginStep = iota // only ApiVersions and SaslHandshake are served
	awaitAuthenticate                  // handshake v1 done: SaslAuthenticate next
	awaitRawToken                      // handshake v0 done: the next frame is the raw PLAIN token
	loggedIn                           // every request is served
)

// login is a connection's SASL state. Its one owner is the connection's
// reader goroutine; it is nil on a broker without SASL.
type login struct {
	step loginStep
	user string // who logged in, for logs
}

// validate reports the first bad login of s, never echoing a password or key.
func (s *SASLConfig) validate() error {
	for user, pass := range s.PlainUsers {
		switch {
		case user == "":
			return &ConfigError{"SASL.PlainUsers", "empty user name"}
		case strings.IndexByte(user, 0) >= 0 || strings.IndexByte(pass, 0) >= 0:
			return &ConfigError{"SASL.PlainUsers", "user " + quoteName(user) + ": NUL in user name or password (PLAIN separates them with NUL)"}
		case user == connectionStringUser:
			return &ConfigError{"SASL.PlainUsers", connectionStringUser + " is the user of connection-string logins: set SASL.SASKeys instead"}
		case pass == "":
			return &ConfigError{"SASL.PlainUsers", "user " + quoteName(user) + ": empty password"}
		}
	}
	for name, key := range s.SASKeys {
		switch {
		case name == "":
			return &ConfigError{"SASL.SASKeys", "empty key name"}
		case strings.ContainsAny(name, ";= \t\r\n") || name != strings.TrimSpace(name):
			return &ConfigError{"SASL.SASKeys", "key name " + quoteName(name) + ": must not contain ';', '=' or white space"}
		case key == "":
			return &ConfigError{"SASL.SASKeys", "key name " + quoteName(name) + ": empty key"}
		case strings.ContainsAny(key, "; \t\r\n"):
			return &ConfigError{"SASL.SASKeys", "key name " + quoteName(name) + ": the key must not contain ';' or white space"}
		}
	}
	return nil
}

func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "\"" + s + "\""
}

// errLoginRefused is the message of every refused login: it says no more
// than Kafka's, and never echoes a password or key.
const errLoginRefused = "Authentication failed: Invalid username or password"

// loginError is a refused login: Message goes to the client (never a
// password or key), Detail only to the broker's log.
type loginError struct {
	Message string
	Detail  string
}

func (e *loginError) Error() string { return e.Message }

// checkPlain checks a SASL PLAIN message (RFC 4616: authzid NUL user NUL
// password) against the configured logins and returns the user.
func (b *Broker) checkPlain(msg []byte) (string, error) {
	authzid, rest, ok1 := bytes.Cut(msg, []byte{0})
	user, pass, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || len(user) == 0 || len(pass) == 0 {
		return "", &loginError{"Authentication failed: malformed SASL PLAIN message", "malformed PLAIN message"}
	}
	if len(authzid) > 0 && !bytes.Equal(authzid, user) {
		return "", &loginError{"Authentication failed: Client requested an authorization id that is different from username",
			"authorization id differs from user"}
	}
	name := string(user)
	if name == connectionStringUser {
		return name, b.checkConnectionString(string(pass))
	}
	want, ok := b.cfg.SASL.PlainUsers[name]
	if !equalSecret(want, pass) || !ok {
		return name, &loginError{errLoginRefused, "unknown user or wrong password"}
	}
	return name, nil
}

// checkConnectionString checks an Event Hubs connection string given as the
// password of "$ConnectionString": its SharedAccessKeyName must be a
// configured SAS key name, and its SharedAccessKey that key.
func (b *Broker) checkConnectionString(s string) error {
	p, err := connstr.Parse(s)
	if err != nil {
		var ce *connstr.Error
		if errors.As(err, &ce) && ce.Missing != "" {
			return &loginError{"Authentication failed: connection string is missing " + ce.Missing, "bad connection string"}
		}
		// connstr's other reasons may quote the start of a part: not sent.
		return &loginError{"Authentication failed: malformed connection string", "bad connection string"}
	}
	want, ok := b.cfg.SASL.SASKeys[p.KeyName]
	if !equalSecret(want, []byte(p.Key)) || !ok {
		return &loginError{errLoginRefused, "unknown SharedAccessKeyName " + quoteName(p.KeyName) + " or wrong key"}
	}
	return nil
}

// equalSecret compares a secret in constant time, whatever the lengths.
func equalSecret(want string, got []byte) bool {
	w, g := sha256.Sum256([]byte(want)), sha256.Sum256(got)
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1
}

// refuseLogin counts and logs a refused login.
func (c *conn) refuseLogin(user string, err error) {
	c.b.metrics.authFailures.Inc()
	detail := err.Error()
	var le *loginError
	if errors.As(err, &le) {
		detail = le.Detail
	}
	c.logger.Info("weir: SASL login refused", "user", quoteName(user), "reason", detail)
}

// handleLoginFrame serves one frame of a connection on a SASL broker: the
// login steps, ApiVersions, and once logged in every request. closeAfter
// means: write this answer, then close the connection.
func (c *conn) handleLoginFrame(frame []byte) (p pending, closeAfter bool, err error) {
	if c.login.step == awaitRawToken {
		return c.handleRawToken(frame)
	}
	h, body, err := parseHeader(frame)
	if err != nil {
		return pending{}, false, err
	}
	switch {
	case h.key == apiKeySaslHandshake || h.key == apiKeySaslAuthenticate:
	case c.login.step == loggedIn || h.key == apiKeyApiVersions:
		p, err := c.b.handleRequest(c.ctx, h, body)
		return p, false, err
	default:
		return pending{}, false, &frameError{Reason: "request before SASL authentication", Key: h.key, Ver: h.version}
	}
	a := saslAPIs[0]
	if h.key == apiKeySaslAuthenticate {
		a = saslAPIs[1]
	}
	if h.version < a.min || h.version > a.max {
		return pending{}, false, &frameError{Reason: "unsupported version", Key: h.key, Ver: h.version}
	}
	req, err := decodeRequest(&h, body)
	if err != nil {
		return pending{}, false, err
	}
	var r reply
	switch req := req.(type) {
	case *kmsg.SASLHandshakeRequest:
		r, closeAfter, err = c.handleSaslHandshake(&h, req)
	case *kmsg.SASLAuthenticateRequest:
		r, closeAfter, err = c.handleSaslAuthenticate(&h, req)
	}
	if err != nil {
		return pending{}, false, err
	}
	return pending{corr: h.corr, key: h.key, reply: r}, closeAfter, nil
}

// handleRawToken takes the frame after a v0 SaslHandshake: the PLAIN
// message itself, not a Kafka request. Success is answered with an empty
// token; a refused login closes the connection with no answer, as Kafka
// does (the v0 flow has no way to carry an error).
func (c *conn) handleRawToken(frame []byte) (pending, bool, error) {
	user, err := c.b.checkPlain(frame)
	if err != nil {
		c.refuseLogin(user, err)
		return pending{}, false, &frameError{Reason: "SASL login refused", Key: apiKeySaslAuthenticate, Err: err}
	}
	c.loggedIn(user)
	return pending{key: apiKeySaslAuthenticate, reply: reply{rawToken: true}}, false, nil
}

// loggedIn moves the connection past its login.
func (c *conn) loggedIn(user string) {
	c.login.step, c.login.user = loggedIn, user
	c.logger.Debug("weir: SASL login", "user", user)
}

// emptyToken is the v0 flow's answer to an accepted raw token: a
// size-prefixed empty token.
var emptyToken = binary.BigEndian.AppendUint32(nil, 0)
