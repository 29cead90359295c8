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

// Package generated checks that the committed generated files (CRDs, RBAC,
// DeepCopy) are what controller-gen makes from the current markers, so a type
// change without `make manifests generate` fails the build.
package generated

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func controllerGen(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CONTROLLER_GEN")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "controller-gen")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("controller-gen not found at %s: run `make controller-gen` (make test does this)", abs)
	}
	return abs
}

func TestGeneratedFilesAreFresh(t *testing.T) {
	gen := controllerGen(t)
	tmp := t.TempDir()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	// As the Makefile runs it: the types from within the api module (a Go
	// module of its own), the RBAC from the root module.
	run := func(dir string, args ...string) {
		cmd := exec.Command(gen, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("controller-gen %v: %v\n%s", args, err, out)
		}
	}
	api := filepath.Join(root, "api")
	run(api, "crd:allowDangerousTypes=true", "paths=./...", "output:crd:dir="+filepath.Join(tmp, "crd"))
	run(root, "rbac:roleName=manager-role", "paths=./...", "output:rbac:dir="+filepath.Join(tmp, "rbac"))
	run(api, "object:headerFile=../hack/boilerplate.go.txt", "paths=./...", "output:object:dir="+filepath.Join(tmp, "obj"))

	compareDir(t, filepath.Join(tmp, "crd"), filepath.Join(root, "config", "crd", "bases"))
	compareFile(t, filepath.Join(tmp, "rbac", "role.yaml"), filepath.Join(root, "config", "rbac", "role.yaml"))
	compareFile(t, filepath.Join(tmp, "obj", "zz_generated.deepcopy.go"), filepath.Join(root, "api", "v1alpha1", "zz_generated.deepcopy.go"))
}

func compareDir(t *testing.T, fresh, committed string) {
	t.Helper()
	entries, err := os.ReadDir(fresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		compareFile(t, filepath.Join(fresh, e.Name()), filepath.Join(committed, e.Name()))
	}
	committedEntries, _ := os.ReadDir(committed)
	if len(committedEntries) != len(entries) {
		t.Errorf("%s holds %d files but controller-gen makes %d: run `make manifests`", committed, len(committedEntries), len(entries))
	}
}

func compareFile(t *testing.T, fresh, committed string) {
	t.Helper()
	want, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Errorf("%s is missing: run `make manifests generate`", committed)
		return
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s is stale: run `make manifests generate` and commit the result", committed)
	}
}
