package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleSaslAuthenticate checks the PLAIN message of a login that began
// with a v1 SaslHandshake (sasl.go). Refused credentials are answered
// SASL_AUTHENTICATION_FAILED with a message that never echoes the password
// or key, then the connection is closed, as Kafka does. SaslAuthenticate
// without a handshake first closes the connection; after a completed login
// it is answered ILLEGAL_SASL_STATE.
func (c *conn) handleSaslAuthenticate(h *header, req *kmsg.SASLAuthenticateRequest) (r reply, closeAfter bool, err error) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	switch c.login.step {
	case loggedIn:
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate request received after successful authentication"
		resp.ErrorMessage = &msg
		return now(resp), false, nil
	case awaitHandshake:
		return reply{}, false, &frameError{Reason: "SaslAuthenticate before SaslHandshake", Key: h.key, Ver: h.version}
	}
	user, err := c.b.checkPlain(req.SASLAuthBytes)
	if err != nil {
		c.refuseLogin(user, err)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = errorMessage(err)
		return now(resp), true, nil
	}
	c.loggedIn(user)
	return now(resp), false, nil
}
