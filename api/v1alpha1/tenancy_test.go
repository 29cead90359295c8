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

package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

func TestIsModelID(t *testing.T) {
	for id, want := range map[string]bool{
		"meta-llama/Llama-3.3-70B-Instruct-Turbo":  true,
		"deepseek-ai/DeepSeek-V3":                  true,
		"me@example.com/Meta-Llama-3.1-8B-ft-1a2b": true,
		"org/model:v2":                true,
		"https://api.together.xyz/v1": false,
		"python":                      false,
		"org/name/extra":              false,
		"/name":                       false,
		"org/":                        false,
		"org/na me":                   false,
		"":                            false,
		strings.Repeat("a", 200) + "/" + strings.Repeat("b", 60): false,
	} {
		if got := togetherv1.IsModelID(id); got != want {
			t.Errorf("IsModelID(%q) = %v, want %v", id, got, want)
		}
	}
}

// The CRD's pattern and the intake's check must be the same rule, or an
// event could create a migration the API server refuses (or the reverse).
func TestModelIDPatternMatchesCRD(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "together.ai_togethermodelmigrations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "pattern: "+togetherv1.ModelIDPattern); n != 2 {
		t.Errorf("the CRD holds ModelIDPattern %d times, want 2 (modelID and replacementModel): regenerate with make manifests or align the markers", n)
	}
}
