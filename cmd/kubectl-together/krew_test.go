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
	"os"
	"path/filepath"
	"regexp"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/together-operator/together-operator/internal/testenv"
)

// krewPlugin mirrors the fields of krew's index Plugin type
// (krew.googlecontainertools.github.com/v1alpha2) that a manifest may
// carry; the krew module itself is not a dependency (its client-go is years
// older than this project's).
type krewPlugin struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Version          string `json:"version"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Homepage         string `json:"homepage"`
		Platforms        []struct {
			Selector metav1.LabelSelector `json:"selector"`
			URI      string               `json:"uri"`
			Sha256   string               `json:"sha256"`
			Bin      string               `json:"bin"`
			Files    []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestKrewManifest checks plugins/together.yaml the way krew's validation
// does: known fields only, the name matching the file, a v-prefixed semantic
// version, a short description under 50 characters, and for each platform a
// selector, an archive URI, a sha256 and the plugin binary.
func TestKrewManifest(t *testing.T) {
	path := filepath.Join(testenv.RepoRoot(), "plugins", "together.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" {
		t.Errorf("apiVersion/kind = %s/%s", p.APIVersion, p.Kind)
	}
	if p.Metadata.Name != "together" {
		t.Errorf("metadata.name %q: krew requires the file name (together.yaml) and `kubectl together`", p.Metadata.Name)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(p.Spec.Version) {
		t.Errorf("spec.version %q is not a v-prefixed semantic version", p.Spec.Version)
	}
	if n := len(p.Spec.ShortDescription); n == 0 || n > 50 {
		t.Errorf("shortDescription has %d characters; krew wants 1..50", n)
	}
	if len(p.Spec.Platforms) == 0 {
		t.Fatal("no platforms")
	}
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i, pl := range p.Spec.Platforms {
		if len(pl.Selector.MatchLabels) == 0 || pl.URI == "" || !sha.MatchString(pl.Sha256) {
			t.Errorf("platform %d: selector, uri and a 64-hex sha256 are required", i)
		}
		if pl.Bin != "kubectl-together" {
			t.Errorf("platform %d: bin %q, want kubectl-together (the name kubectl looks up)", i, pl.Bin)
		}
	}
}
