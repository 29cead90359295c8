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

package togethersim_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDoesNotImportTheClient keeps the simulator an independent witness: if
// it imported the operator's client, its wire shapes would be the client's
// beliefs and a test decoding one with the other could never disagree.
func TestDoesNotImportTheClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasSuffix(dep, "/internal/together") {
			t.Fatalf("internal/togethersim depends on %s; its wire shapes must come from Together's published sources, not the client", dep)
		}
	}
}
