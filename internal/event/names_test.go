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
	"regexp"
	"testing"
)

func TestObjectNameIsStableValidAndCollisionSafe(t *testing.T) {
	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	ids := []string{"meta-llama/Llama-3-8b-chat-hf", "META-LLAMA/llama-3-8b-chat-hf", "meta-llama/Llama.3.8b.chat.hf", "///", "", string(make([]byte, 300))}
	seen := map[string]string{}
	for _, id := range ids {
		n := ObjectName("deprecated", id)
		if len(n) > 63 || !dns.MatchString(n) {
			t.Errorf("name %q for %q is not a valid DNS label", n, id)
		}
		if n != ObjectName("deprecated", id) {
			t.Errorf("name for %q is not stable", id)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q collide as %q", id, other, n)
		}
		seen[n] = id
	}
}
