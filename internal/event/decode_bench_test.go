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

package event

import (
	"fmt"
	"strings"
	"testing"

	"github.com/together-operator/together-operator/pkg/push"
)

// BenchmarkVerifyDecode measures what the endpoint spends on one 1 KiB event
// before it touches the API server: the HMAC check and the decode.
func BenchmarkVerifyDecode(b *testing.B) {
	secret := []byte("bench-secret")
	pad := strings.Repeat("x", 1024-150)
	body := []byte(fmt.Sprintf(`{"id":"evt_1","type":"fine_tune.checkpoint","created_at":"2026-11-27T12:00:00Z","data":{"fine_tune_id":"ft-1","step":10,"loss":1.5,"note":%q}}`, pad))
	sig := push.Hex(secret, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if !push.VerifyHex(sig, body, secret) {
			b.Fatal("signature rejected")
		}
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
