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

package manifests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestPrintColumnsPointAtFields reads the CRDs as installed and checks what
// `kubectl get` shows: every column's JSONPath names a field of the schema
// (a typo prints an empty column and no error anywhere), `-o wide` has
// columns of its own with Ready's reason among them, and counts say their
// unit.
func TestPrintColumnsPointAtFields(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("want the four CRDs, found %v (%v)", files, err)
	}
	filter := regexp.MustCompile(`\[\?\(@\.type=="[A-Za-z]+"\)\]`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			kind := crd.Spec.Names.Kind
			wide, reason := 0, false
			for _, c := range v.AdditionalPrinterColumns {
				if c.Priority > 0 {
					wide++
					reason = reason || (c.Name == "Reason" && strings.Contains(c.JSONPath, `@.type=="Ready"`) && strings.HasSuffix(c.JSONPath, ".reason"))
				}
				path := filter.ReplaceAllString(c.JSONPath, "")
				if !strings.HasPrefix(path, ".") {
					t.Errorf("%s column %q: JSONPath %q does not start at the object", kind, c.Name, c.JSONPath)
					continue
				}
				if !inSchema(v.Schema.OpenAPIV3Schema, strings.Split(path[1:], ".")) {
					t.Errorf("%s column %q: JSONPath %q names no field of the schema", kind, c.Name, c.JSONPath)
				}
			}
			if wide < 2 || !reason {
				t.Errorf("%s: -o wide adds %d column(s) (Reason among them: %v); want Ready's reason and more", kind, wide, reason)
			}
		}
	}
}

// TestPrintColumnsSayTheirUnits pins the columns whose meaning is not in
// their value: a percentage, a count of fields rather than workloads, and an
// age rather than an event.
func TestPrintColumnsSayTheirUnits(t *testing.T) {
	want := map[string]map[string]string{
		"together.ai_togetherbatches.yaml":              {"Progress %": ".status.progress"},
		"together.ai_togethermodelmigrations.yaml":      {"Targets Moved": ".status.migrated"},
		"together.ai_togetherwebhooksubscriptions.yaml": {"Last Push": ".status.lastEventTime"},
	}
	for file, cols := range want {
		data, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", file))
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
			got[c.Name] = c.JSONPath
		}
		for name, path := range cols {
			if got[name] != path {
				t.Errorf("%s: column %q shows %q, want %q", file, name, got[name], path)
			}
		}
	}
}

// inSchema walks the schema's properties along path.
func inSchema(s *apiextensionsv1.JSONSchemaProps, path []string) bool {
	if s == nil {
		return false
	}
	if len(path) == 0 {
		return true
	}
	if path[0] == "metadata" {
		return true // ObjectMeta is not in a CRD's schema
	}
	p, ok := s.Properties[path[0]]
	if !ok {
		if s.Items != nil && s.Items.Schema != nil {
			return inSchema(s.Items.Schema, path)
		}
		return false
	}
	return inSchema(&p, path[1:])
}
