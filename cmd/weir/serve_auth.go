package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/weirhq/weir/broker"
)

// authFlags are serve's TLS and SASL flags. Secrets given as flags are
// visible to other local users (ps, /proc); $WEIR_SASL_PLAIN_USER and
// $WEIR_SAS_KEY (NAME=SECRET, one login each) keep them off the command
// line.
type authFlags struct {
	tlsCert, tlsKey *string
	plainUsers      *secretsFlag
	sasKeys         *secretsFlag
}

func addAuthFlags(fs *flag.FlagSet) *authFlags {
	a := &authFlags{plainUsers: &secretsFlag{}, sasKeys: &secretsFlag{}}
	a.tlsCert = fs.String("tls-cert", "", "serve TLS with this certificate (PEM `file`, chain included); needs --tls-key")
	a.tlsKey = fs.String("tls-key", "", "private key (PEM `file`) of --tls-cert")
	fs.Var(a.plainUsers, "sasl-plain-user", "accept the SASL PLAIN login `NAME=PASSWORD` (repeatable; also $WEIR_SASL_PLAIN_USER)")
	fs.Var(a.sasKeys, "sas-key", "accept Event Hubs connection-string logins (user $ConnectionString) signed with the shared access key `NAME=KEY` (repeatable; also $WEIR_SAS_KEY)")
	return a
}

// config returns the broker's TLS config and SASL logins: the flags' and
// the environment's.
func (a *authFlags) config(getenv func(string) string) (*tls.Config, broker.SASLConfig, error) {
	var sasl broker.SASLConfig
	for _, src := range []struct {
		flag, env, want string
		dst             *secretsFlag
	}{
		{"--sasl-plain-user", "$WEIR_SASL_PLAIN_USER", "NAME=PASSWORD", a.plainUsers},
		{"--sas-key", "$WEIR_SAS_KEY", "NAME=KEY", a.sasKeys},
	} {
		if v := getenv(src.env[1:]); v != "" {
			src.dst.Set(v)
		}
		if src.dst.bad {
			return nil, sasl, fmt.Errorf("%s / %s: want %s", src.flag, src.env, src.want)
		}
	}
	sasl.PlainUsers, sasl.SASKeys = a.plainUsers.m, a.sasKeys.m
	if (*a.tlsCert == "") != (*a.tlsKey == "") {
		return nil, sasl, errors.New("--tls-cert and --tls-key go together")
	}
	if *a.tlsCert == "" {
		return nil, sasl, nil
	}
	pair, err := tls.LoadX509KeyPair(*a.tlsCert, *a.tlsKey)
	if err != nil {
		return nil, sasl, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, sasl, nil
}

// secretsFlag collects repeated NAME=SECRET flags. It never shows a secret:
// not in usage, not in errors (a malformed value is reported by config,
// since the flag package would quote it).
type secretsFlag struct {
	m   map[string]string
	bad bool // a value without NAME= or SECRET
}

func (f *secretsFlag) String() string {
	if f == nil {
		return ""
	}
	names := make([]string, 0, len(f.m))
	for n := range f.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func (f *secretsFlag) Set(s string) error {
	name, secret, ok := strings.Cut(s, "=")
	if !ok || name == "" || secret == "" {
		f.bad = true
		return nil
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[name] = secret
	return nil
}
