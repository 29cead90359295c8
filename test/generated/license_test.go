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

package generated

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryGoFileCarriesTheLicenceHeader keeps the header that
// hack/boilerplate.go.txt defines (and controller-gen writes into generated
// files) on every Go file, so that a file added without it fails the build
// instead of shipping unlicensed; `hack/add-license.sh` adds it.
func TestEveryGoFileCarriesTheLicenceHeader(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	header, err := os.ReadFile(filepath.Join(root, "hack", "boilerplate.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	header = bytes.TrimSpace(header)
	cmd := exec.Command("git", "ls-files", "*.go")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (the header check reads the list of tracked files)", err)
	}
	var missing []string
	for _, f := range strings.Fields(string(out)) {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		// Only the file's opening counts: a build constraint may come first.
		head := src
		if len(head) > 2048 {
			head = head[:2048]
		}
		if !bytes.Contains(head, header) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d Go file(s) lack the licence header of hack/boilerplate.go.txt (run hack/add-license.sh):\n%s",
			len(missing), strings.Join(missing, "\n"))
	}
}
