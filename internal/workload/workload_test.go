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

package workload

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

const (
	oldID = "old/id"
	newID = "new/id"
)

var target = Target{From: oldID, To: newID}

func TestRewriteArg(t *testing.T) {
	cases := []struct {
		arg    string
		want   string
		wantOK bool
	}{
		{"--model=old/id", "--model=new/id", true},
		// Only the --model flag: any other key=value is not a model field.
		{"old/id", "", false},
		{"MODEL=old/id", "", false},
		{"--fallback=old/id", "", false},
		{"--model=old/id-v2", "", false},
		{"--model=xold/id", "", false},
		{"=old/id", "", false},
		{"--model", "", false},
		{"--model=old/id=x", "", false},
	}
	for _, c := range cases {
		got, ok := RewriteArg(c.arg, oldID, newID)
		if got != c.want || ok != c.wantOK {
			t.Errorf("RewriteArg(%q) = %q, %v; want %q, %v", c.arg, got, ok, c.want, c.wantOK)
		}
	}
}

func deployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", ResourceVersion: "7"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "warm", Args: []string{"--model", "old/id"}}},
			Containers: []corev1.Container{
				{Name: "sidecar", Env: []corev1.EnvVar{{Name: "MODEL", Value: "old/id-v2"}}},
				{
					Name: "app",
					Env: []corev1.EnvVar{
						{Name: "OTHER", Value: "xold/id"},
						{Name: "MODEL", Value: "old/id"},
						{Name: "TOGETHER_BASE_URL", Value: "old/id"},
						{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
					},
					Command: []string{"serve", "--model=old/id"},
					Args:    []string{"--port=80", "--model=old/id-v2", "--fallback=old/id", "--model", "old/id"},
				},
			},
		}}},
	}
}

func workloadOf(d *appsv1.Deployment) Workload {
	return Workload{Annotations: d.Annotations, Template: &d.Spec.Template, ResourceVersion: d.ResourceVersion}
}

func TestScanFindsWholeValuesOnly(t *testing.T) {
	d := deployment()
	d.Annotations = map[string]string{togetherv1.ModelAnnotation: oldID}
	d.Spec.Template.Annotations = map[string]string{togetherv1.ModelAnnotation: "old/id-v2"}
	got := map[string][2]string{}
	for _, c := range Scan(workloadOf(d), target) {
		got[c.Field] = [2]string{c.From, c.To}
	}
	// Not the command, not TOGETHER_BASE_URL (not a model variable), not
	// --fallback=: only model-bearing fields.
	want := map[string][2]string{
		"metadata.annotations[together.ai/model]":         {"old/id", "new/id"},
		"spec.template.spec.initContainers[warm].args[1]": {"old/id", "new/id"},
		"spec.template.spec.containers[app].env[MODEL]":   {"old/id", "new/id"},
		"spec.template.spec.containers[app].args[4]":      {"old/id", "new/id"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Scan found %v, want %v", got, want)
	}
}

// apply runs a patch the way the API server does (it uses the same library).
func apply(t *testing.T, d *appsv1.Deployment, patch []byte) (*appsv1.Deployment, error) {
	t.Helper()
	doc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, err
	}
	res := &appsv1.Deployment{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func TestPatchChangesOnlyMatchesAndRollsBack(t *testing.T) {
	orig := deployment()
	changes := Scan(workloadOf(orig), target)
	patch, err := Patch(workloadOf(orig), changes, Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}
	migrated, err := apply(t, orig, patch)
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}

	want := deployment()
	want.Spec.Template.Spec.InitContainers[0].Args[1] = newID
	want.Spec.Template.Spec.Containers[1].Env[1].Value = newID
	want.Spec.Template.Spec.Containers[1].Args[4] = newID
	if !reflect.DeepEqual(migrated.Spec, want.Spec) {
		t.Errorf("migrated spec = %+v\nwant %+v", migrated.Spec, want.Spec)
	}

	rolledBack, err := apply(t, migrated, []byte(migrated.Annotations[togetherv1.RollbackAnnotation]))
	if err != nil {
		t.Fatalf("applying rollback: %v", err)
	}
	if !reflect.DeepEqual(rolledBack.Spec, orig.Spec) {
		t.Errorf("rolled back spec = %+v\nwant %+v", rolledBack.Spec, orig.Spec)
	}
	if want := map[string]string{togetherv1.RolledBackAnnotation: oldID}; !reflect.DeepEqual(rolledBack.Annotations, want) {
		t.Errorf("rollback left annotations %v, want only %v", rolledBack.Annotations, want)
	}
	if again := Scan(workloadOf(rolledBack), target); len(again) != 0 {
		t.Errorf("a migration found %d fields to move on a workload rolled back from %s: %+v", len(again), oldID, again)
	}
}

func TestPatchRefusesConcurrentChange(t *testing.T) {
	orig := deployment()
	orig.Annotations = map[string]string{"keep": "me"}
	changes := Scan(workloadOf(orig), target)
	patch, err := Patch(workloadOf(orig), changes, Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}

	edited := deployment()
	edited.Annotations = map[string]string{"keep": "me"}
	edited.Spec.Template.Spec.Containers[1].Env[1].Value = "someone/else"
	if _, err := apply(t, edited, patch); err == nil {
		t.Error("patch overwrote a value changed after the scan")
	}

	shifted := deployment()
	shifted.Annotations = map[string]string{"keep": "me"}
	shifted.Spec.Template.Spec.Containers[0], shifted.Spec.Template.Spec.Containers[1] =
		shifted.Spec.Template.Spec.Containers[1], shifted.Spec.Template.Spec.Containers[0]
	if _, err := apply(t, shifted, patch); err == nil {
		t.Error("patch applied to containers that moved since the scan")
	}

	// An unrelated concurrent change (replicas, another annotation) is kept.
	other := deployment()
	other.Annotations = map[string]string{"keep": "me", "added": "later"}
	other.ResourceVersion = "8"
	res, err := apply(t, other, patch)
	if err != nil {
		t.Fatalf("patch failed on an unrelated change: %v", err)
	}
	if res.Annotations["added"] != "later" || res.Annotations["keep"] != "me" {
		t.Errorf("annotations = %v, want the concurrent ones kept", res.Annotations)
	}
}

func TestPatchCreatingAnnotationsNeedsSameVersion(t *testing.T) {
	orig := deployment()
	patch, err := Patch(workloadOf(orig), Scan(workloadOf(orig), target), Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}
	later := deployment()
	later.ResourceVersion = "8"
	later.Annotations = map[string]string{"added": "later"}
	if _, err := apply(t, later, patch); err == nil {
		t.Error("patch replaced an annotations map created after the scan")
	}
}

// A second patch of the same workload (a field that appeared later, or a
// second migration moving the replacement on) merges into the rollback
// record: rolling back restores every field to its first value.
func TestRollbackRecordMergesLaterPatches(t *testing.T) {
	orig := deployment()
	first, err := Patch(workloadOf(orig), Scan(workloadOf(orig), target), Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}
	migrated, err := apply(t, orig, first)
	if err != nil {
		t.Fatal(err)
	}
	// Someone adds a container still on the old model; the next scan moves it.
	migrated.Spec.Template.Spec.Containers = append(migrated.Spec.Template.Spec.Containers,
		corev1.Container{Name: "late", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: oldID}}})
	changes := Scan(workloadOf(migrated), target)
	if len(changes) != 1 {
		t.Fatalf("second scan found %+v, want the late container only", changes)
	}
	second, err := Patch(workloadOf(migrated), changes, Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}
	migrated, err = apply(t, migrated, second)
	if err != nil {
		t.Fatal(err)
	}
	// Then a later migration moves new/id on to newer/id.
	onward := Target{From: newID, To: "newer/id"}
	third, err := Patch(workloadOf(migrated), Scan(workloadOf(migrated), onward), Options{RollbackTo: newID})
	if err != nil {
		t.Fatal(err)
	}
	migrated, err = apply(t, migrated, third)
	if err != nil {
		t.Fatal(err)
	}
	if v := migrated.Spec.Template.Spec.Containers[1].Env[1].Value; v != "newer/id" {
		t.Fatalf("onward migration left MODEL at %q", v)
	}

	rolledBack, err := apply(t, migrated, []byte(migrated.Annotations[togetherv1.RollbackAnnotation]))
	if err != nil {
		t.Fatalf("applying the merged rollback %s: %v", migrated.Annotations[togetherv1.RollbackAnnotation], err)
	}
	want := deployment()
	want.Spec.Template.Spec.Containers = append(want.Spec.Template.Spec.Containers,
		corev1.Container{Name: "late", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: oldID}}})
	if !reflect.DeepEqual(rolledBack.Spec, want.Spec) {
		t.Errorf("rolled back spec = %+v\nwant %+v", rolledBack.Spec, want.Spec)
	}
	if got := rolledBack.Annotations[togetherv1.RolledBackAnnotation]; got != oldID {
		t.Errorf("rolled back to %q, want the first model %q", got, oldID)
	}
}

// A patch built on a stale rollback record fails instead of dropping the
// record a concurrent patch wrote.
func TestPatchRefusesStaleRollbackRecord(t *testing.T) {
	orig := deployment()
	orig.Annotations = map[string]string{togetherv1.RollbackAnnotation: "[]"}
	patch, err := Patch(workloadOf(orig), Scan(workloadOf(orig), target), Options{RollbackTo: oldID})
	if err != nil {
		t.Fatal(err)
	}
	orig.Annotations[togetherv1.RollbackAnnotation] = `[{"op":"test","path":"/x","value":"y"}]`
	if _, err := apply(t, orig, patch); err == nil {
		t.Error("patch overwrote a rollback record written after the scan")
	}
}

// FuzzScanTouchesOnlyModelFields feeds adversarial containers to Scan: whatever
// the values, a change is only ever to an allowed env var, an argument that is
// --model=ID or follows --model, or the model annotation — never a command.
func FuzzScanTouchesOnlyModelFields(f *testing.F) {
	f.Add("python", "sh", "PATH", "python", "--model", "python")
	f.Add("old/id", "new/id", "TOGETHER_BASE_URL", "old/id", "--model=old/id", "old/id")
	f.Fuzz(func(t *testing.T, from, to, envName, envValue, arg0, arg1 string) {
		w := Workload{Annotations: map[string]string{}, Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Command: []string{from, arg0, arg1}, Args: []string{arg0, arg1, from},
			Env: []corev1.EnvVar{{Name: envName, Value: envValue}, {Name: "MODEL", Value: from}},
		}}}}}
		for _, c := range Scan(w, Target{From: from, To: to}) {
			switch {
			case c.From != from && c.From != ModelFlag+"="+from:
				t.Fatalf("change of %s from %q, which is neither the model nor --model=model", c.Field, c.From)
			case strings.Contains(c.Path, "/command/"):
				t.Fatalf("Scan rewrote the command: %+v", c)
			case strings.Contains(c.Path, "/env/0/"):
				if !slices.Contains(togetherv1.DefaultModelEnvNames, envName) {
					t.Fatalf("Scan rewrote env %q, not a model variable", envName)
				}
			case strings.Contains(c.Path, "/args/"):
				i := c.Path[strings.LastIndex(c.Path, "/")+1:]
				if c.From == from && (i == "0" || w.Template.Spec.Containers[0].Args[mustAtoi(t, i)-1] != ModelFlag) {
					t.Fatalf("Scan rewrote argument %s %q, which does not follow --model", i, c.From)
				}
			}
		}
	})
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
