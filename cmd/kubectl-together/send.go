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
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

type sendOptions struct {
	url, secret, subscription, typ, data, id string
	// caFile, when set, is the only CA trusted for an https URL (an
	// endpoint serving a certificate from a private issuer).
	caFile string
}

func eventTypes() []string { return push.Types }

// send posts one event signed both ways the push contract allows (the
// X-Together-Signature hex HMAC and Standard Webhooks headers), as a relay
// would, and prints the receiver's answer.
func send(ctx context.Context, e *env, o sendOptions) error {
	if o.url == "" || o.typ == "" {
		return errors.New("send needs --url and --type")
	}
	if !json.Valid([]byte(o.data)) {
		return errors.New("--data is not valid JSON")
	}
	target, err := url.Parse(o.url)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") {
		return fmt.Errorf("--url %q: want http(s)://HOST:PORT[/webhooks/together/NAMESPACE/NAME]", o.url)
	}
	secret := o.secret
	if o.subscription != "" {
		var sub togetherv1.TogetherWebhookSubscription
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: o.subscription}, &sub); err != nil {
			return fmt.Errorf("reading TogetherWebhookSubscription %s/%s: %w", e.namespace, o.subscription, err)
		}
		if secret == "" {
			var s corev1.Secret
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: sub.Spec.SecretRef.Name}, &s); err != nil {
				return fmt.Errorf("reading the subscription's signing Secret %s/%s: %w", e.namespace, sub.Spec.SecretRef.Name, err)
			}
			k := sub.Spec.SecretRef.Key
			if k == "" {
				k = "secret"
			}
			if len(s.Data[k]) == 0 {
				return fmt.Errorf("Secret %s/%s has no key %q", e.namespace, s.Name, k)
			}
			secret = string(s.Data[k])
		}
		if target.Path == "" || target.Path == "/" {
			path := sub.Status.WebhookPath
			if path == "" {
				path = "/webhooks/together/" + sub.Namespace + "/" + sub.Name
			}
			target.Path = path
		}
	}
	if secret == "" {
		return errors.New("send needs --secret (or env TOGETHER_WEBHOOK_SECRET) or --subscription")
	}
	id := o.id
	if id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("making an event id: %w", err)
		}
		id = "evt_" + hex.EncodeToString(b[:])
	}
	now := e.now()
	body, err := json.Marshal(push.Envelope{ID: id, Type: o.typ, CreatedAt: now.UTC(), Data: json.RawMessage(o.data)})
	if err != nil {
		return fmt.Errorf("encoding the event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(push.HeaderSignature, push.Hex([]byte(secret), body))
	req.Header.Set(push.HeaderWebhookID, id)
	req.Header.Set(push.HeaderWebhookTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(push.HeaderWebhookSignature, push.Standard([]byte(secret), id, now, body))
	hc := &http.Client{Timeout: 30 * time.Second}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("reading --cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--cacert %s holds no PEM certificate", o.caFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("posting the event: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	fmt.Fprintf(e.out, "sent %s %s to %s: HTTP %d %s\n", o.typ, id, target.String(), resp.StatusCode, strings.TrimSpace(string(answer)))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver refused the event with HTTP %d", resp.StatusCode)
	}
	return nil
}
