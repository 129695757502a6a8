// Package testcert makes a throwaway certificate authority and a server
// certificate for 127.0.0.1, ::1 and localhost, for tests of TLS over
// loopback.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are a CA and a server certificate it signed, as TLS configs and as
// PEM files in a test's temporary directory.
type Certs struct {
	Server *tls.Config // the server certificate
	Client *tls.Config // trusts the CA only
	CAFile string      // the CA certificate, PEM
	// CertFile and KeyFile are the server certificate and its key, PEM.
	CertFile, KeyFile string
}

// New makes fresh certificates valid for an hour; it fails tb on error.
func New(tb testing.TB) *Certs {
	tb.Helper()
	fail := func(err error) {
		if err != nil {
			tb.Fatalf("testcert: %v", err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fail(err)
	notBefore := time.Now().Add(-time.Minute)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weir test CA"},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	fail(err)
	caCert, err := x509.ParseCertificate(caDER)
	fail(err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fail(err)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	fail(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	fail(err)

	dir := tb.TempDir()
	c := &Certs{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server-key.pem"),
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	fail(os.WriteFile(c.CAFile, caPEM, 0o600))
	fail(os.WriteFile(c.CertFile, certPEM, 0o600))
	fail(os.WriteFile(c.KeyFile, keyPEM, 0o600))

	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	fail(err)
	c.Server = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	c.Client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return c
}
