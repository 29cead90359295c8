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
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// app is a Deployment whose container "app" has the given env (nil: none).
func app(env []corev1.EnvVar, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", ResourceVersion: "3", Annotations: annotations},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "sidecar", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "side/car"}}},
			{Name: "app", Env: env, Args: []string{"--model=org/base"}},
		}}}},
	}
}

// sameEnv compares env lists, an empty list being the same as none (a
// rollback that removes the only entry leaves an empty list).
func sameEnv(a, b []corev1.EnvVar) bool {
	return (len(a) == 0 && len(b) == 0) || reflect.DeepEqual(a, b)
}

// A fine-tune's change — an existing value, an empty one, a variable the
// container lacks, a container without env — rolls back from the one record
// to exactly what was there, and the record says what the value was.
func TestSetEnvRecordsOneRollback(t *testing.T) {
	cases := map[string][]corev1.EnvVar{
		"existing value":   {{Name: "A", Value: "a"}, {Name: "TOGETHER_MODEL", Value: "org/base"}, {Name: "Z", Value: "z"}},
		"empty value":      {{Name: "TOGETHER_MODEL"}},
		"missing variable": {{Name: "A", Value: "a"}},
		"no env at all":    nil,
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			orig := app(env, map[string]string{"keep": "me"})
			w := workloadOf(orig)
			ch, err := SetEnv(w, "app", "TOGETHER_MODEL", "me/ft-model")
			if err != nil {
				t.Fatal(err)
			}
			owner := togetherv1.DeployedByAnnotation("app", "TOGETHER_MODEL")
			patch, err := Patch(w, []Change{ch}, Options{PinVersion: true, Annotations: map[string]string{owner: "ft"}})
			if err != nil {
				t.Fatal(err)
			}
			deployed, err := apply(t, orig, patch)
			if err != nil {
				t.Fatalf("applying %s: %v", patch, err)
			}
			got := ""
			for _, e := range deployed.Spec.Template.Spec.Containers[1].Env {
				if e.Name == "TOGETHER_MODEL" {
					got = e.Value
				}
			}
			if got != "me/ft-model" || deployed.Annotations[owner] != "ft" {
				t.Fatalf("after the patch: TOGETHER_MODEL=%q, annotations %v", got, deployed.Annotations)
			}
			rec, err := Read(workloadOf(deployed))
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := rec.Previous(ch.Path); !ok || prev != ch.From {
				t.Errorf("record's previous value of %s = %q, %v; want %q", ch.Path, prev, ok, ch.From)
			}
			rb, err := apply(t, deployed, []byte(deployed.Annotations[togetherv1.RollbackAnnotation]))
			if err != nil {
				t.Fatalf("applying the recorded rollback %s: %v", deployed.Annotations[togetherv1.RollbackAnnotation], err)
			}
			if !sameEnv(rb.Spec.Template.Spec.Containers[1].Env, env) || !reflect.DeepEqual(rb.Spec.Template.Spec.Containers[0], orig.Spec.Template.Spec.Containers[0]) {
				t.Errorf("rolled back containers = %+v, want %+v", rb.Spec.Template.Spec.Containers, orig.Spec.Template.Spec.Containers)
			}
			// A fine-tune's rollback marks nothing: only a migration's
			// rollback stops migrations.
			if want := map[string]string{"keep": "me", owner: "ft"}; !reflect.DeepEqual(rb.Annotations, want) {
				t.Errorf("annotations after the rollback = %v, want %v", rb.Annotations, want)
			}

			// Pinned to the version read: any concurrent write fails it.
			later := app(env, map[string]string{"keep": "me"})
			later.ResourceVersion = "4"
			if _, err := apply(t, later, patch); err == nil {
				t.Error("a PinVersion patch applied to a later version")
			}
		})
	}
}

func TestSetEnvRefusals(t *testing.T) {
	d := app([]corev1.EnvVar{{Name: "TOGETHER_MODEL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}}}, nil)
	if _, err := SetEnv(workloadOf(d), "app", "TOGETHER_MODEL", "x/y"); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("valueFrom: %v", err)
	}
	if _, err := SetEnv(workloadOf(d), "nope", "TOGETHER_MODEL", "x/y"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing container: %v", err)
	}
}

// oldMigrationRecord is the record a migration of an earlier version left on
// app() after moving the app container's --model argument from org/base to
// org/next: its JSON patch, in the exact form that version wrote.
const oldMigrationRecord = `[{"op":"test","path":"/spec/template/spec/containers/1/name","value":"app"},` +
	`{"op":"test","path":"/spec/template/spec/containers/1/args/0","value":"--model=org/next"},` +
	`{"op":"replace","path":"/spec/template/spec/containers/1/args/0","value":"--model=org/base"},` +
	`{"op":"remove","path":"/metadata/annotations/migration.together.ai~1previous.model"},` +
	`{"op":"remove","path":"/metadata/annotations/migration.together.ai~1previous.rollback"},` +
	`{"op":"add","path":"/metadata/annotations/migration.together.ai~1previous.rolled-back","value":"org/base"}]`

func oldMigrated() *appsv1.Deployment {
	d := app([]corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "org/base"}}, map[string]string{
		togetherv1.LegacyMigrationPreviousModelAnnotation: "org/base",
		togetherv1.LegacyMigrationRollbackAnnotation:      oldMigrationRecord,
	})
	d.Spec.Template.Spec.Containers[1].Args[0] = "--model=org/next"
	return d
}

// A workload an earlier version migrated (the old JSON-patch record) rolls
// back from it; the next change carries it into the one record and drops the
// old annotations; the merged record rolls back to the first model and
// marks the workload with the current annotation, which stops migrations.
func TestOldMigrationRecordRollsBack(t *testing.T) {
	orig := app([]corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "org/base"}}, map[string]string{})
	old := oldMigrated()

	rec, err := Read(workloadOf(old))
	if err != nil {
		t.Fatal(err)
	}
	patch, err := rec.RollbackPatch()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := apply(t, old, patch)
	if err != nil {
		t.Fatalf("rolling back the old record with %s: %v", patch, err)
	}
	if !reflect.DeepEqual(rb.Spec, orig.Spec) {
		t.Errorf("rolled back spec = %+v\nwant %+v", rb.Spec, orig.Spec)
	}
	if want := map[string]string{togetherv1.RolledBackAnnotation: "org/base"}; !reflect.DeepEqual(rb.Annotations, want) {
		t.Errorf("annotations after rolling back the old record = %v, want %v", rb.Annotations, want)
	}

	// A fine-tune then deploys into the env var: one record, new format.
	w := workloadOf(old)
	ch, err := SetEnv(w, "app", "TOGETHER_MODEL", "me/ft")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Patch(w, []Change{ch}, Options{PinVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	both, err := apply(t, old, p2)
	if err != nil {
		t.Fatalf("applying %s: %v", p2, err)
	}
	for _, k := range []string{togetherv1.LegacyMigrationRollbackAnnotation, togetherv1.LegacyMigrationPreviousModelAnnotation} {
		if _, ok := both.Annotations[k]; ok {
			t.Errorf("old annotation %s still written after a new patch: %v", k, both.Annotations)
		}
	}
	rb2, err := apply(t, both, []byte(both.Annotations[togetherv1.RollbackAnnotation]))
	if err != nil {
		t.Fatalf("applying the merged record %s: %v", both.Annotations[togetherv1.RollbackAnnotation], err)
	}
	if !reflect.DeepEqual(rb2.Spec, orig.Spec) {
		t.Errorf("merged rollback spec = %+v\nwant %+v", rb2.Spec, orig.Spec)
	}
	if want := map[string]string{togetherv1.RolledBackAnnotation: "org/base"}; !reflect.DeepEqual(rb2.Annotations, want) {
		t.Errorf("annotations after the merged rollback = %v, want %v", rb2.Annotations, want)
	}
	if again := Scan(workloadOf(rb2), Target{From: "org/base", To: "org/next"}); len(again) != 0 {
		t.Errorf("a migration would move a rolled-back workload again: %+v", again)
	}
	// A workload an earlier version rolled back stays rolled back too.
	legacyMark := app([]corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "org/base"}}, map[string]string{togetherv1.LegacyRolledBackAnnotation: "org/base"})
	if again := Scan(workloadOf(legacyMark), Target{From: "org/base", To: "org/next"}); len(again) != 0 {
		t.Errorf("a migration would move a workload marked rolled back by an earlier version: %+v", again)
	}
}

// A workload an earlier version's fine-tune deployed into (the old
// previous-value annotation, readable and hashed keys) rolls back from it,
// the record says what the value was, and a migration's later change merges
// it into the one record.
func TestOldFineTuneRecordRollsBack(t *testing.T) {
	for _, container := range []string{"app", strings.Repeat("c", 60)} {
		t.Run(container[:3], func(t *testing.T) {
			mk := func(model string, ann map[string]string) *appsv1.Deployment {
				d := app([]corev1.EnvVar{{Name: "A", Value: "a"}, {Name: "TOGETHER_MODEL", Value: model}}, ann)
				d.Spec.Template.Spec.Containers[1].Name = container
				return d
			}
			orig := mk("org/base", map[string]string{})
			key := LegacyPreviousModelKey(container, "TOGETHER_MODEL")
			if container == "app" && key != "together.ai/previous-model.app.TOGETHER_MODEL" {
				t.Fatalf("old key = %q", key)
			}
			if name := key[len("together.ai/"):]; len(name) > 63 {
				t.Fatalf("old key %q: name part longer than 63", key)
			}
			old := mk("me/ft", map[string]string{key: "org/base", "other": "x"})

			rec, err := Read(workloadOf(old))
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := rec.Previous("/spec/template/spec/containers/1/env/1/value"); !ok || prev != "org/base" {
				t.Errorf("previous value from the old annotation = %q, %v", prev, ok)
			}
			patch, err := rec.RollbackPatch()
			if err != nil {
				t.Fatal(err)
			}
			rb, err := apply(t, old, patch)
			if err != nil {
				t.Fatalf("rolling back the old record with %s: %v", patch, err)
			}
			if !reflect.DeepEqual(rb.Spec, orig.Spec) {
				t.Errorf("rolled back spec = %+v\nwant %+v", rb.Spec, orig.Spec)
			}
			if want := map[string]string{"other": "x"}; !reflect.DeepEqual(rb.Annotations, want) {
				t.Errorf("annotations after the rollback = %v, want %v", rb.Annotations, want)
			}

			// me/ft is deprecated; a migration moves it on (the fine-tune
			// released it), writing the one record.
			w := workloadOf(old)
			changes := Scan(w, Target{From: "me/ft", To: "me/ft2"})
			if len(changes) != 1 {
				t.Fatalf("scan found %+v", changes)
			}
			p2, err := Patch(w, changes, Options{RollbackTo: "me/ft"})
			if err != nil {
				t.Fatal(err)
			}
			moved, err := apply(t, old, p2)
			if err != nil {
				t.Fatalf("applying %s: %v", p2, err)
			}
			if _, ok := moved.Annotations[key]; ok {
				t.Errorf("old annotation %s still there after a new patch", key)
			}
			rb2, err := apply(t, moved, []byte(moved.Annotations[togetherv1.RollbackAnnotation]))
			if err != nil {
				t.Fatalf("applying the merged record %s: %v", moved.Annotations[togetherv1.RollbackAnnotation], err)
			}
			if !reflect.DeepEqual(rb2.Spec, orig.Spec) {
				t.Errorf("merged rollback spec = %+v\nwant %+v", rb2.Spec, orig.Spec)
			}
		})
	}
}

// A record that is not a JSON patch is refused with the annotation named,
// and nothing is built on it.
func TestUnreadableRecord(t *testing.T) {
	for _, key := range []string{togetherv1.RollbackAnnotation, togetherv1.LegacyMigrationRollbackAnnotation} {
		d := app(nil, map[string]string{key: "{not a patch"})
		if _, err := Patch(workloadOf(d), nil, Options{}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("record in %s: %v", key, err)
		}
	}
}

// FuzzRollbackRestoresEverything drives a workload through an adversarial
// sequence of fine-tune deploys (SetEnv, creating variables or not) and
// migrations (Scan and Patch between a few models, in any order), each
// merged into the one record, and then applies the record: the workload must
// be exactly as it was — every env var, argument and annotation — besides
// the rolled-back mark when a migration took part. A lost or misordered
// step shows as a difference.
func FuzzRollbackRestoresEverything(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{3, 3, 9, 0, 12, 7, 1, 1, 200, 17})
	f.Add([]byte{1, 0, 1, 0, 1, 0, 5, 5, 5, 5, 2, 8})
	models := []string{"org/a", "org/b", "org/c", ""}
	envs := []string{"TOGETHER_MODEL", "MODEL", "LLM_MODEL"}
	f.Fuzz(func(t *testing.T, steps []byte) {
		if len(steps) > 40 {
			steps = steps[:40]
		}
		orig := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "w", ResourceVersion: "1", Annotations: map[string]string{togetherv1.ModelAnnotation: "org/a", "keep": "me"}},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "one", Env: []corev1.EnvVar{{Name: "MODEL", Value: "org/a"}, {Name: "OTHER", Value: "org/a"}}, Args: []string{"--model", "org/a", "--model=org/b"}},
				{Name: "two"},
			}}}},
		}
		cur := orig.DeepCopy()
		migrated := false
		for i := 0; i+1 < len(steps); i += 2 {
			op, arg := steps[i], steps[i+1]
			w := workloadOf(cur)
			var patch []byte
			var err error
			if op%2 == 0 {
				c := []string{"one", "two"}[arg%2]
				to := models[int(arg/2)%3]
				ch, serr := SetEnv(w, c, envs[int(arg/6)%3], to)
				if serr != nil || ch.From == ch.To {
					continue
				}
				patch, err = Patch(w, []Change{ch}, Options{PinVersion: true})
			} else {
				from, to := models[int(arg)%3], models[int(arg/3)%3]
				if from == to {
					continue
				}
				changes := Scan(w, Target{From: from, To: to})
				if len(changes) == 0 {
					continue
				}
				patch, err = Patch(w, changes, Options{RollbackTo: from})
				migrated = true
			}
			if err != nil {
				t.Fatalf("step %d: building the patch: %v", i/2, err)
			}
			next, err := apply(t, cur, patch)
			if err != nil {
				t.Fatalf("step %d: a patch built on the current workload failed: %v\n%s", i/2, err, patch)
			}
			next.ResourceVersion = fmt.Sprint(i + 2)
			cur = next
		}
		rec, err := Read(workloadOf(cur))
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Found() {
			if !reflect.DeepEqual(cur.Spec, orig.Spec) {
				t.Fatal("the workload changed and no record was kept")
			}
			return
		}
		rollback, err := rec.RollbackPatch()
		if err != nil {
			t.Fatal(err)
		}
		back, err := apply(t, cur, rollback)
		if err != nil {
			t.Fatalf("the record did not apply: %v\n%s", err, rollback)
		}
		for i, c := range back.Spec.Template.Spec.Containers {
			o := orig.Spec.Template.Spec.Containers[i]
			if !sameEnv(c.Env, o.Env) || !reflect.DeepEqual(c.Args, o.Args) || c.Name != o.Name {
				t.Fatalf("container %s after the rollback = %+v, want %+v", c.Name, c, o)
			}
		}
		ann := maps.Clone(back.Annotations)
		mark, marked := ann[togetherv1.RolledBackAnnotation]
		delete(ann, togetherv1.RolledBackAnnotation)
		if !reflect.DeepEqual(ann, orig.Annotations) {
			t.Fatalf("annotations after the rollback = %v, want %v", back.Annotations, orig.Annotations)
		}
		if marked != migrated || (marked && mark == "") {
			t.Fatalf("rolled-back mark %q (set %v) after a sequence with migrations %v", mark, marked, migrated)
		}
	})
}
