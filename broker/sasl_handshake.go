package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleSaslHandshake starts a SASL login (sasl.go): PLAIN is the one
// mechanism. Version 1 says SaslAuthenticate requests follow; version 0
// that the next frame is the raw token. Like Kafka, an unsupported
// mechanism is answered with the enabled ones and the connection closed;
// a second handshake before the login completes closes it at once; a
// handshake after a completed login (weir sets no session lifetime, so
// there is no re-authentication) is answered ILLEGAL_SASL_STATE.
func (c *conn) handleSaslHandshake(h *header, req *kmsg.SASLHandshakeRequest) (r reply, closeAfter bool, err error) {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = []string{mechanismPlain}
	switch c.login.step {
	case loggedIn:
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return now(resp), false, nil
	case awaitAuthenticate, awaitRawToken:
		return reply{}, false, &frameError{Reason: "SaslHandshake twice", Key: h.key, Ver: h.version}
	}
	if req.Mechanism != mechanismPlain {
		c.refuseLogin("", &loginError{Detail: "unsupported mechanism " + quoteName(req.Mechanism)})
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return now(resp), true, nil
	}
	if h.version == 0 {
		c.login.step = awaitRawToken
	} else {
		c.login.step = awaitAuthenticate
	}
	return now(resp), false, nil
}
