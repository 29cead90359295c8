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
