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

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	secret = []byte("s3cret")
	body   = []byte(`{"id":"e1","type":"batch.done","data":{"batch_id":"b"}}`)
	now    = time.Unix(1_800_000_000, 0)
)

func TestHexForms(t *testing.T) {
	sig := Hex(secret, body)
	for _, h := range []string{sig, "sha256=" + sig, " " + sig + " "} {
		if !VerifyHex(h, body, secret) {
			t.Errorf("valid signature %q rejected", h)
		}
	}
	for name, h := range map[string]string{
		"empty": "", "garbled": "zz" + sig[2:], "short": sig[:10], "other body": Hex(secret, []byte("{}")),
		"other secret": Hex([]byte("x"), body), "uppercase prefix only": "sha256=",
	} {
		if VerifyHex(h, body, secret) {
			t.Errorf("%s: invalid signature accepted", name)
		}
	}
	if VerifyHex(sig, body) || VerifyHex(sig, body, nil) {
		t.Error("a signature verified without any secret")
	}
}

func TestRotationAcceptsBothSecrets(t *testing.T) {
	old, cur := []byte("old"), []byte("new")
	if !VerifyHex(Hex(old, body), body, cur, old) || !VerifyHex(Hex(cur, body), body, cur, old) {
		t.Fatal("during rotation both secrets must verify")
	}
	if VerifyHex(Hex(old, body), body, cur) {
		t.Fatal("the previous secret verified after it was removed")
	}
}

func TestStandardWebhooks(t *testing.T) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Standard(secret, "msg_1", now, body)
	if !strings.HasPrefix(sig, "v1,") {
		t.Fatalf("signature %q lacks the v1 prefix", sig)
	}
	ok := func(id, ts, sig string, at time.Time) bool {
		return VerifyStandard(id, ts, sig, body, at, 5*time.Minute, secret)
	}
	if !ok("msg_1", ts, sig, now) || !ok("msg_1", ts, "v1,bm9wZQ== "+sig, now) {
		t.Fatal("valid signature rejected")
	}
	cases := map[string]bool{
		"stale":        ok("msg_1", ts, sig, now.Add(6*time.Minute)),
		"future":       ok("msg_1", ts, sig, now.Add(-6*time.Minute)),
		"other id":     ok("msg_2", ts, sig, now),
		"no id":        ok("", ts, sig, now),
		"bad ts":       ok("msg_1", "yesterday", sig, now),
		"other ts":     ok("msg_1", strconv.FormatInt(now.Unix()+1, 10), sig, now),
		"v2 prefix":    ok("msg_1", ts, "v2,"+strings.TrimPrefix(sig, "v1,"), now),
		"not base64":   ok("msg_1", ts, "v1,!!!", now),
		"empty header": ok("msg_1", ts, "", now),
	}
	for name, accepted := range cases {
		if accepted {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzVerify feeds arbitrary headers to both verifiers: they must never
// panic, and must never accept a signature they did not make.
func FuzzVerify(f *testing.F) {
	f.Add("sha256="+Hex(secret, body), "msg", "1800000000", Standard(secret, "msg", now, body), body)
	f.Add("", "", "", "", []byte{})
	f.Add("sha256=zz", "id", "-1", "v1,,,, v1,AAAA", []byte("x"))
	f.Fuzz(func(t *testing.T, hexSig, id, ts, std string, b []byte) {
		if VerifyHex(hexSig, b, secret) {
			if strings.TrimPrefix(strings.TrimSpace(hexSig), "sha256=") != Hex(secret, b) {
				t.Fatalf("accepted a hex signature that is not ours: %q", hexSig)
			}
		}
		if VerifyStandard(id, ts, std, b, now, 5*time.Minute, secret) {
			sec, _ := strconv.ParseInt(ts, 10, 64)
			if !strings.Contains(std, Standard(secret, id, time.Unix(sec, 0), b)) {
				t.Fatalf("accepted a standard signature that is not ours: %q", std)
			}
		}
	})
}
