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
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// ObjectName turns a remote ID (a job ID, a model ID) into a stable, valid
// Kubernetes object name: prefix, a readable lowercase form of the ID, and a
// hash of the exact ID, so that IDs differing only in case or punctuation
// never collide.
func ObjectName(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	hash := hex.EncodeToString(sum[:])[:10]
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	readable := strings.Trim(b.String(), "-")
	// 253 is the limit for most kinds; 63 keeps names usable as label values.
	if max := 63 - len(prefix) - len(hash) - 2; len(readable) > max {
		readable = strings.Trim(readable[:max], "-")
	}
	if readable == "" {
		return prefix + "-" + hash
	}
	return prefix + "-" + readable + "-" + hash
}
