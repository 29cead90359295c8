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
