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

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/operator"
	"github.com/together-operator/together-operator/internal/testenv"
	togetherapi "github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/webhook"
)

// writeTLS writes a CA (ca.crt) and a serving certificate for 127.0.0.1
// signed by it (tls.crt, tls.key) into dir, as a cert-manager CA issuer and
// a mounted Secret would.
func writeTLS(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "events"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.crt": {Type: "CERTIFICATE", Bytes: caDER}, "tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSendToTheOperatorOverTLS runs the operator as the manager binary wires
// it, with its events endpoint on HTTPS from a certificate directory, and
// sends signed events to it with the plugin: the endpoint accepts the
// plugin's signature over TLS and refuses a wrong secret.
func TestSendToTheOperatorOverTLS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	certDir := t.TempDir()
	writeTLS(t, certDir)

	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Client: operator.ClientOptions(), Cache: operator.CacheOptions()})
	if err != nil {
		t.Fatal(err)
	}
	// No Together API is reachable: nothing here calls it (the poller's
	// interval is an hour and no resource needs a job).
	api, err := togetherapi.New(togetherapi.Options{BaseURL: "http://127.0.0.1:1/v1", APIKey: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := operator.Setup(mgr, operator.Config{API: api, EventsAddr: "127.0.0.1:0",
		EventsTLS:    webhook.TLSFiles{Dir: certDir},
		PollInterval: time.Hour, ModelsInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()
	addrCtx, addrCancel := context.WithTimeout(ctx, 30*time.Second)
	defer addrCancel()
	addr, err := parts.Events.ListenAddr(addrCtx)
	if err != nil {
		t.Fatal(err)
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}

	c := mgr.GetClient()
	ns := "e2e"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, Data: map[string][]byte{"secret": []byte("e2e-secret")}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "hook"}}}); err != nil {
		t.Fatal(err)
	}

	pluginEnv := func() *env { return &env{c: c, namespace: ns} }
	send := func(extra ...string) (string, error) {
		var out strings.Builder
		args := append([]string{"send", "--url", "https://" + addr.String(), "--cacert", filepath.Join(certDir, "ca.crt"),
			"--type", "fine_tune.checkpoint", "--data", `{"fine_tune_id":"ft-nobody","step":1,"loss":1.0}`}, extra...)
		err := run(ctx, args, &out, &out, pluginEnv())
		return out.String(), err
	}

	// The subscription reaches the endpoint's cache shortly after it is
	// created; until then the endpoint answers 401, as for any unknown one.
	var out string
	gomega.NewWithT(t).Eventually(func() error {
		out, err = send("--subscription", "default")
		return err
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(gomega.Succeed(),
		"waiting for the endpoint to accept a well-signed event over TLS once the subscription is cached")
	// No resource tracks ft-nobody: a well-signed event is acknowledged as
	// unmatched (202); a bad signature would have been 401.
	if !strings.Contains(out, "HTTP 202") {
		t.Errorf("want the endpoint's 202 for a well-signed unmatched event, got %q", out)
	}
	out, err = send("--url", "https://"+addr.String()+webhook.PathFor(ns, "default"), "--secret", "not-the-secret")
	if err == nil || !strings.Contains(out, "HTTP 401") {
		t.Errorf("a wrong secret must get 401: err %v, output %q", err, out)
	}
	// Plain HTTP to the HTTPS endpoint does not reach the handler.
	var plain strings.Builder
	err = run(ctx, []string{"send", "--url", "http://" + addr.String(), "--subscription", "default", "--type", "batch.done"}, &plain, &plain, pluginEnv())
	if err == nil || strings.Contains(plain.String(), "HTTP 202") || strings.Contains(plain.String(), "HTTP 200") {
		t.Errorf("plain HTTP to the TLS endpoint: err %v, output %q", err, plain.String())
	}
}
