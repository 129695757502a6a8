package broker

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/weirhq/weir/internal/testcert"
)

const (
	testUser, testPass   = "alice", "alice-secret-password"
	testKeyName, testKey = "RootManageSharedAccessKey", "c2VjcmV0LWtleS1vZi10aGUtbmFtZXNwYWNl"
)

func testConnString(keyName, key string) string {
	return "Endpoint=sb://weir.servicebus.windows.net/;SharedAccessKeyName=" + keyName + ";SharedAccessKey=" + key
}

// withSASL configures the test logins, and TLS when certs is not nil.
func withSASL(certs *testcert.Certs) func(*Config) {
	return func(c *Config) {
		c.SASL = SASLConfig{
			PlainUsers: map[string]string{testUser: testPass},
			SASKeys:    map[string]string{testKeyName: testKey},
		}
		if certs != nil {
			c.TLS = certs.Server
		}
	}
}

func saslClient(t *testing.T, b *Broker, certs *testcert.Certs, user, pass string, opts ...kgo.Opt) *kgo.Client {
	opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	if certs != nil {
		opts = append(opts, kgo.DialTLSConfig(certs.Client.Clone()))
	}
	return newClient(t, b, opts...)
}

// A franz-go client logs in with SASL PLAIN over TLS, both as a PLAIN user
// and as "$ConnectionString", and produces and consumes as usual.
func TestSASLPlainOverTLS(t *testing.T) {
	certs := testcert.New(t)
	b := startBroker(t, withSASL(certs))
	for _, login := range []struct{ name, user, pass string }{
		{"plain-user", testUser, testPass},
		{"connection-string", "$ConnectionString", testConnString(testKeyName, testKey) + ";EntityPath=ignored"},
	} {
		t.Run(login.name, func(t *testing.T) {
			topic := "sasl-" + login.name
			cl := saslClient(t, b, certs, login.user, login.pass, kgo.DefaultProduceTopic(topic),
				kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			var rs []*kgo.Record
			for i := range 10 {
				rs = append(rs, &kgo.Record{Value: []byte{byte('a' + i)}})
			}
			if err := cl.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			var got []byte
			for len(got) < len(rs) {
				fs := cl.PollFetches(testCtx(t))
				if err := fs.Err0(); err != nil {
					t.Fatalf("fetch: %v", err)
				}
				fs.EachRecord(func(r *kgo.Record) { got = append(got, r.Value...) })
			}
			if string(got) != "abcdefghij" {
				t.Fatalf("consumed %q, want abcdefghij", got)
			}
		})
	}
	if v := scrapeHandler(t, b)["weir_sasl_authentication_failures_total"]; v != 0 {
		t.Errorf("weir_sasl_authentication_failures_total = %v after good logins, want 0", v)
	}
}

// Wrong credentials are refused with SASL_AUTHENTICATION_FAILED, whose
// message never holds the password or key, and counted.
func TestSASLWrongCredentials(t *testing.T) {
	certs := testcert.New(t)
	b := startBroker(t, withSASL(certs))
	for i, login := range []struct{ user, pass, secret string }{
		{testUser, "wrong-password-1234", "wrong-password-1234"},
		{"mallory", testPass, testPass},
		{"$ConnectionString", testConnString(testKeyName, "d3Jvbmcta2V5"), "d3Jvbmcta2V5"},
		{"$ConnectionString", testConnString("OtherKey", testKey), testKey},
		{"$ConnectionString", "Endpoint=sb://x/;SharedAccessKeyName=" + testKeyName, testKeyName},
		{"$ConnectionString", "not a connection string at all, just the key " + testKey, testKey},
	} {
		cl := saslClient(t, b, certs, login.user, login.pass, kgo.RetryTimeout(time.Second))
		err := cl.Ping(testCtx(t))
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("login %d: Ping = %v, want SASL_AUTHENTICATION_FAILED", i, err)
		}
		if strings.Contains(err.Error(), login.secret) {
			t.Errorf("login %d: error echoes the secret: %v", i, err)
		}
		cl.Close()
	}
	if v := scrapeHandler(t, b)["weir_sasl_authentication_failures_total"]; v < 6 {
		t.Errorf("weir_sasl_authentication_failures_total = %v, want >= 6", v)
	}
}

// saslAuthenticate sends the handshake and the PLAIN message of user and
// pass on r, and returns the SaslAuthenticate response.
func saslAuthenticate(r *rawConn, auth []byte) *kmsg.SASLAuthenticateResponse {
	r.t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	if code := r.roundTrip(hs).(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
		r.t.Fatalf("SaslHandshake: %v", kerr.ErrorForCode(code))
	}
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.Version, req.SASLAuthBytes = 2, auth
	return r.roundTrip(req).(*kmsg.SASLAuthenticateResponse)
}

func plainMsg(user, pass string) []byte { return []byte("\x00" + user + "\x00" + pass) }

func hasAPI(resp *kmsg.ApiVersionsResponse, key int16) bool {
	for _, k := range resp.ApiKeys {
		if k.ApiKey == key {
			return true
		}
	}
	return false
}

// On a SASL broker, ApiVersions is served before the login and lists the
// SASL APIs; any other request before the login closes the connection. On a
// broker without SASL, nothing changes: the SASL APIs are not listed.
func TestSASLRequestBeforeLoginCloses(t *testing.T) {
	b := startBroker(t, withSASL(nil))
	r := dialRaw(t, b)
	av := r.roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	if !hasAPI(av, apiKeySaslHandshake) || !hasAPI(av, apiKeySaslAuthenticate) {
		t.Fatalf("ApiVersions of a SASL broker does not list SaslHandshake and SaslAuthenticate")
	}
	r.corr++
	r.write(frameOf(kmsg.NewPtrMetadataRequest(), r.corr))
	r.expectClosed()

	plainBroker := startBroker(t, nil)
	av = dialRaw(t, plainBroker).roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	if hasAPI(av, apiKeySaslHandshake) || hasAPI(av, apiKeySaslAuthenticate) {
		t.Fatalf("ApiVersions of a broker without SASL lists SASL APIs")
	}
}

// Bad logins get a Kafka error or a closed connection, never a panic, and
// a good one still works afterwards.
func TestSASLBadInput(t *testing.T) {
	b := startBroker(t, withSASL(nil))

	t.Run("garbage auth bytes", func(t *testing.T) {
		for _, auth := range [][]byte{nil, {0}, {0, 0}, []byte("no nuls at all"), []byte("a\x00b\x00"), []byte("\x00\x00pw"), []byte("other\x00" + testUser + "\x00" + testPass)} {
			r := dialRaw(t, b)
			resp := saslAuthenticate(r, auth)
			if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
				t.Fatalf("auth %q: code %v, want SASL_AUTHENTICATION_FAILED", auth, kerr.ErrorForCode(resp.ErrorCode))
			}
			r.expectClosed()
		}
	})
	t.Run("huge auth bytes", func(t *testing.T) {
		r := dialRaw(t, b)
		resp := saslAuthenticate(r, plainMsg(testUser, strings.Repeat("p", 4<<20)))
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
			t.Fatalf("code %v, want SASL_AUTHENTICATION_FAILED", kerr.ErrorForCode(resp.ErrorCode))
		}
		if resp.ErrorMessage == nil || len(*resp.ErrorMessage) > 200 {
			t.Errorf("error message %v: want a short one", resp.ErrorMessage)
		}
		r.expectClosed()
	})
	t.Run("handshake twice", func(t *testing.T) {
		r := dialRaw(t, b)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "PLAIN"
		r.roundTrip(hs)
		r.corr++
		r.write(frameOf(hs, r.corr))
		r.expectClosed()
	})
	t.Run("authenticate without handshake", func(t *testing.T) {
		r := dialRaw(t, b)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 1, plainMsg(testUser, testPass)
		r.corr++
		r.write(frameOf(req, r.corr))
		r.expectClosed()
	})
	t.Run("unsupported mechanism", func(t *testing.T) {
		r := dialRaw(t, b)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "SCRAM-SHA-512"
		resp := r.roundTrip(hs).(*kmsg.SASLHandshakeResponse)
		if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(resp.SupportedMechanisms) != 1 || resp.SupportedMechanisms[0] != "PLAIN" {
			t.Fatalf("got code %v, mechanisms %v; want UNSUPPORTED_SASL_MECHANISM, [PLAIN]", kerr.ErrorForCode(resp.ErrorCode), resp.SupportedMechanisms)
		}
		r.expectClosed()
	})
	t.Run("unsupported version", func(t *testing.T) {
		r := dialRaw(t, b)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 7, "PLAIN"
		r.corr++
		r.write(frameOf(hs, r.corr))
		r.expectClosed()
	})
	t.Run("v0 raw token", func(t *testing.T) {
		for _, tc := range []struct {
			pass string
			ok   bool
		}{{testPass, true}, {"wrong", false}} {
			r := dialRaw(t, b)
			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 0, "PLAIN"
			if code := r.roundTrip(hs).(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
				t.Fatalf("SaslHandshake v0: %v", kerr.ErrorForCode(code))
			}
			tok := plainMsg(testUser, tc.pass)
			r.write(append([]byte{0, 0, 0, byte(len(tok))}, tok...))
			if !tc.ok {
				r.expectClosed()
				continue
			}
			if got := r.readFrame(); len(got) != 0 {
				t.Fatalf("raw token answer %q, want empty", got)
			}
			if resp := r.roundTrip(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
				t.Fatalf("Metadata after a v0 login: %d brokers", len(resp.Brokers))
			}
		}
	})
	t.Run("login steps after the login", func(t *testing.T) {
		r := dialRaw(t, b)
		if resp := saslAuthenticate(r, plainMsg(testUser, testPass)); resp.ErrorCode != 0 {
			t.Fatalf("login: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "PLAIN"
		if code := r.roundTrip(hs).(*kmsg.SASLHandshakeResponse).ErrorCode; code != kerr.IllegalSaslState.Code {
			t.Fatalf("SaslHandshake after login: %v, want ILLEGAL_SASL_STATE", kerr.ErrorForCode(code))
		}
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.SASLAuthBytes = plainMsg(testUser, testPass)
		if code := r.roundTrip(req).(*kmsg.SASLAuthenticateResponse).ErrorCode; code != kerr.IllegalSaslState.Code {
			t.Fatalf("SaslAuthenticate after login: %v, want ILLEGAL_SASL_STATE", kerr.ErrorForCode(code))
		}
		if resp := r.roundTrip(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
			t.Fatalf("Metadata after login: %d brokers", len(resp.Brokers))
		}
	})

	// The broker still serves a good login.
	cl := saslClient(t, b, nil, testUser, testPass)
	if err := cl.Ping(testCtx(t)); err != nil {
		t.Fatalf("good login after bad input: %v", err)
	}
}

// A client that does not speak TLS to a TLS broker is closed, alone: the
// broker serves the next one.
func TestTLSHandshakeFailureClosesOneConnection(t *testing.T) {
	certs := testcert.New(t)
	b := startBroker(t, func(c *Config) { c.TLS = certs.Server })
	r := dialRaw(t, b)
	r.write(frameOf(kmsg.NewPtrApiVersionsRequest(), 1))
	r.expectClosed()

	// A client that does not trust the CA fails its handshake.
	untrusting := newClient(t, b, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}), kgo.RetryTimeout(time.Second))
	if err := untrusting.Ping(testCtx(t)); err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}

	cl := newClient(t, b, kgo.DialTLSConfig(certs.Client.Clone()))
	if err := cl.Ping(testCtx(t)); err != nil {
		t.Fatalf("TLS client after a failed handshake: %v", err)
	}
}

func TestSASLConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg    Config
		field  string
		secret string // must not appear in the error
	}{
		{Config{TLS: &tls.Config{}}, "TLS", ""},
		{Config{SASL: SASLConfig{PlainUsers: map[string]string{"": "pw-123456"}}}, "SASL.PlainUsers", "pw-123456"},
		{Config{SASL: SASLConfig{PlainUsers: map[string]string{"bob": ""}}}, "SASL.PlainUsers", ""},
		{Config{SASL: SASLConfig{PlainUsers: map[string]string{"bob": "a\x00b-secret"}}}, "SASL.PlainUsers", "b-secret"},
		{Config{SASL: SASLConfig{PlainUsers: map[string]string{"$ConnectionString": "pw-123456"}}}, "SASL.PlainUsers", "pw-123456"},
		{Config{SASL: SASLConfig{SASKeys: map[string]string{"": "key-123456"}}}, "SASL.SASKeys", "key-123456"},
		{Config{SASL: SASLConfig{SASKeys: map[string]string{"a;b": "key-123456"}}}, "SASL.SASKeys", "key-123456"},
		{Config{SASL: SASLConfig{SASKeys: map[string]string{"name": ""}}}, "SASL.SASKeys", ""},
		{Config{SASL: SASLConfig{SASKeys: map[string]string{"name": "key;123456"}}}, "SASL.SASKeys", "123456"},
	} {
		tc.cfg.DataDir = "x"
		err := tc.cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want a *ConfigError on %s", tc.cfg, err, tc.field)
			continue
		}
		if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
	ok := Config{DataDir: "x", SASL: SASLConfig{PlainUsers: map[string]string{"bob": "pw"}, SASKeys: map[string]string{"k": "v"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("good SASL config: %v", err)
	}
}

// The broker keeps its own copy of the logins: changing the caller's map
// after Start changes nothing.
func TestSASLConfigCopied(t *testing.T) {
	users := map[string]string{testUser: testPass}
	b := startBroker(t, func(c *Config) { c.SASL.PlainUsers = users })
	users[testUser] = "changed"
	r := dialRaw(t, b)
	if resp := saslAuthenticate(r, plainMsg(testUser, testPass)); resp.ErrorCode != 0 {
		t.Fatalf("login with the password given at Start: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// FuzzSASLLogin feeds two arbitrary frames to a new connection of a SASL
// broker, through the login steps (and, once logged in, dispatch). It must
// never panic; an error only closes the connection.
func FuzzSASLLogin(f *testing.F) {
	b := startBroker(f, withSASL(nil))
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "PLAIN"
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	for _, msg := range [][]byte{plainMsg(testUser, testPass), plainMsg("$ConnectionString", testConnString(testKeyName, testKey)), {0}} {
		auth.SASLAuthBytes = msg
		for v := int16(0); v <= 2; v++ {
			hs.Version, auth.Version = min(v, 1), v
			f.Add(frameOf(hs, 1)[4:], frameOf(auth, 2)[4:])
			f.Add(frameOf(hs, 1)[4:], msg)
		}
	}
	f.Add(frameOf(kmsg.NewPtrApiVersionsRequest(), 1)[4:], frameOf(kmsg.NewPtrMetadataRequest(), 2)[4:])
	f.Fuzz(func(t *testing.T, first, second []byte) {
		c := &conn{b: b, logger: b.logger, ctx: t.Context(), login: &login{}}
		for _, frame := range [][]byte{first, second} {
			p, closeAfter, err := c.handleLoginFrame(frame)
			if err != nil {
				return
			}
			if p.reply.resp != nil {
				appendResponse(nil, p.corr, p.reply.resp)
			}
			p.release()
			if closeAfter {
				return
			}
		}
	})
}
