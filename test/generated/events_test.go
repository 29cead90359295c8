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
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventTypesAndReasonsAreConstants keeps every Kubernetes Event's type
// and reason a named constant (api/v1alpha1: EventTypeNormal/Warning and
// the Reason… constants), so that a reason a person or an alert matches on
// is declared once and documented beside the others: an Eventf call whose
// type or reason is a string literal fails, and so does a "Normal" or
// "Warning" literal anywhere outside api/.
func TestEventTypesAndReasonsAreConstants(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "ls-files", "*.go")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var bad []string
	fset := token.NewFileSet()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "api/") || strings.HasPrefix(f, "hack/") {
			continue
		}
		file, err := parser.ParseFile(fset, filepath.Join(root, f), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		literal := func(e ast.Expr) bool {
			lit, ok := e.(*ast.BasicLit)
			return ok && lit.Kind == token.STRING
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if ok && (sel.Sel.Name == "Eventf" || sel.Sel.Name == "Event") && len(n.Args) >= 5 {
					if literal(n.Args[2]) || literal(n.Args[3]) {
						bad = append(bad, fset.Position(n.Pos()).String()+": an Event's type or reason is a string literal")
					}
				}
			case *ast.BasicLit:
				if n.Value == `"Normal"` || n.Value == `"Warning"` {
					bad = append(bad, fset.Position(n.Pos()).String()+": "+n.Value+" literal (use togetherv1.EventTypeNormal/Warning)")
				}
			}
			return true
		})
	}
	if len(bad) > 0 {
		t.Errorf("Event types and reasons must be the constants of api/v1alpha1:\n%s", strings.Join(bad, "\n"))
	}
}
