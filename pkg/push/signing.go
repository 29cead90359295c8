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

package push

// The two signature forms: a hex HMAC-SHA256 of the raw body in
// X-Together-Signature, and the Standard Webhooks form (webhook-id,
// webhook-timestamp, webhook-signature), which binds an ID and a timestamp
// into what it signs.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Header names of both signature forms.
const (
	HeaderSignature          = "X-Together-Signature"
	HeaderWebhookID          = "webhook-id"
	HeaderWebhookTimestamp   = "webhook-timestamp"
	HeaderWebhookSignature   = "webhook-signature"
	standardSignatureVersion = "v1,"
)

// Hex returns the X-Together-Signature value for body: hex HMAC-SHA256.
func Hex(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Standard returns the webhook-signature value ("v1,<base64>") for the
// Standard Webhooks form, which signs id + "." + timestamp + "." + body.
func Standard(secret []byte, id string, ts time.Time, body []byte) string {
	return standardSignatureVersion + base64.StdEncoding.EncodeToString(standardMAC(secret, id, strconv.FormatInt(ts.Unix(), 10), body))
}

func standardMAC(secret []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyHex reports whether header (with or without a "sha256=" prefix) is
// the hex HMAC of body under any of secrets. Every comparison is
// constant-time, and every secret is tried, so timing does not tell which
// secret (or whether any) matched.
func VerifyHex(header string, body []byte, secrets ...[]byte) bool {
	header = strings.TrimPrefix(strings.TrimSpace(header), "sha256=")
	got, err := hex.DecodeString(header)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	ok := false
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		m := hmac.New(sha256.New, s)
		m.Write(body)
		if hmac.Equal(got, m.Sum(nil)) {
			ok = true
		}
	}
	return ok
}

// VerifyStandard reports whether sigHeader holds a v1 signature of
// id.ts.body under any of secrets, and whether ts lies within tolerance of
// now. sigHeader may list several space-separated signatures, as Standard
// Webhooks senders do during their own key rotation.
func VerifyStandard(id, ts, sigHeader string, body []byte, now time.Time, tolerance time.Duration, secrets ...[]byte) bool {
	if id == "" || ts == "" || sigHeader == "" {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return false
	}
	var macs [][]byte
	for _, s := range secrets {
		if len(s) > 0 {
			macs = append(macs, standardMAC(s, id, ts, body))
		}
	}
	ok := false
	for _, part := range strings.Fields(sigHeader) {
		b64, found := strings.CutPrefix(part, standardSignatureVersion)
		if !found {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, m := range macs {
			if hmac.Equal(got, m) {
				ok = true
			}
		}
	}
	return ok
}
