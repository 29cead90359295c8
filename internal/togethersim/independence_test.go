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
