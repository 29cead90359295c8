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
	"testing"
)

// TestAPIReferenceIsFresh regenerates the CRD reference with crd-ref-docs
// and compares it with the committed docs/api.md, so that a field added,
// renamed or re-documented in api/ without `make docs` fails the build
// instead of leaving readers with a stale reference.
func TestAPIReferenceIsFresh(t *testing.T) {
	bin := os.Getenv("CRD_REF_DOCS")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "crd-ref-docs")
	}
	gen, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gen); err != nil {
		t.Fatalf("crd-ref-docs not found at %s: run `make crd-ref-docs` (make test does this)", gen)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "api.md")
	// The same arguments as `make docs`.
	cmd := exec.Command(gen, "--source-path=./api", "--config=hack/crd-ref-docs.yaml",
		"--renderer=markdown", "--output-path="+fresh)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crd-ref-docs: %v\n%s", err, out)
	}
	want, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "api.md"))
	if err != nil {
		t.Fatalf("docs/api.md is missing: run `make docs`")
	}
	if !bytes.Equal(want, got) {
		t.Errorf("docs/api.md is stale: run `make docs` and commit the result")
	}
}
