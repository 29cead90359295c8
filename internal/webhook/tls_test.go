/*
Copyright 2026 The together-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// testCA signs serving certificates for 127.0.0.1, the way cert-manager's CA
// issuer would, so that a client trusting the CA can tell which certificate
// the endpoint served.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// writeServing writes a serving certificate with the given serial number into
// dir as tls.crt and tls.key, replacing the files by rename as a Secret
// volume update does.
func (ca *testCA) writeServing(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "events"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, block *pem.Block) {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.key", &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	write("tls.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// startEvents starts a Server with the given TLS files on a free loopback
// port and returns its address; the server stops with the test.
func startEvents(t *testing.T, files TLSFiles) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Addr: "127.0.0.1:0", TLS: files}
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	addr, err := s.ListenAddr(waitCtx)
	if err != nil {
		t.Fatalf("events endpoint did not start: %v", err)
	}
	return addr.String()
}

// TestEventsEndpointTLS serves HTTPS from a certificate directory, and a
// certificate replaced on disk is served to new connections without a
// restart.
func TestEventsEndpointTLS(t *testing.T) {
	g := NewWithT(t)
	ca := newTestCA(t)
	dir := t.TempDir()
	ca.writeServing(t, dir, 100)
	addr := startEvents(t, TLSFiles{Dir: dir, WatchInterval: 100 * time.Millisecond})

	// servedSerial makes a fresh connection (no keep-alive, so each call
	// sees the certificate served now) and returns the serving
	// certificate's serial and the answer's status code.
	servedSerial := func() (int64, int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool}, DisableKeepAlives: true,
		}}
		resp, err := c.Get("https://" + addr + PathFor("default", "sub"))
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), resp.StatusCode, nil
	}

	serial, code, err := servedSerial()
	g.Expect(err).NotTo(HaveOccurred(), "a client trusting the CA must reach the endpoint over HTTPS")
	g.Expect(serial).To(Equal(int64(100)))
	g.Expect(code).To(Equal(http.StatusMethodNotAllowed), "the events handler answers behind TLS")

	// Plain HTTP to the TLS port is refused rather than served.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + PathFor("default", "sub"))
	if err == nil {
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), "plain HTTP to the HTTPS port must not reach the handler")
	}

	ca.writeServing(t, dir, 200)
	g.Eventually(func() (int64, error) {
		s, _, err := servedSerial()
		return s, err
	}).WithTimeout(15*time.Second).WithPolling(100*time.Millisecond).Should(Equal(int64(200)),
		"the renewed certificate must be served without a restart")
}

// TestEventsEndpointPlainByDefault keeps plain HTTP when no certificate
// directory is set.
func TestEventsEndpointPlainByDefault(t *testing.T) {
	addr := startEvents(t, TLSFiles{})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + PathFor("default", "sub"))
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("plain HTTP GET answered %d, want 405", resp.StatusCode)
	}
}

// TestEventsEndpointTLSMissingFiles fails the start with a message naming
// the file, instead of serving plain HTTP by mistake.
func TestEventsEndpointTLSMissingFiles(t *testing.T) {
	dir := t.TempDir()
	s := &Server{Addr: "127.0.0.1:0", TLS: TLSFiles{Dir: dir}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Start(ctx)
	if err == nil {
		t.Fatal("Start with no certificate files must fail")
	}
	if want := filepath.Join(dir, "tls.crt"); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
