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

package intake

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
)

// randomEvents is a shuffled, partly duplicated lifecycle of one job: the
// changes the apply step makes to a status, in an order a sender may
// produce.
func randomEvents(r *rand.Rand, job string) []event.Event {
	var evs []event.Event
	steps := 1 + r.IntN(60)
	for s := int64(1); s <= int64(steps); s++ {
		loss := 1 / float64(s+1)
		evs = append(evs, event.Event{ID: fmt.Sprintf("%s-ck-%d", job, s), Type: togetherv1.EventFineTuneCheckpoint, JobID: job, Step: s, Loss: &loss})
		if r.IntN(10) == 0 {
			evs = append(evs, event.Event{ID: fmt.Sprintf("%s-st-%d", job, s), Type: event.TypeFineTuneStatus, JobID: job, RemoteStatus: "running", Step: s})
		}
	}
	switch r.IntN(3) {
	case 0:
		evs = append(evs, event.Event{ID: job + "-done", Type: togetherv1.EventFineTuneCompleted, JobID: job, ModelName: "org/" + job})
	case 1:
		evs = append(evs, event.Event{ID: job + "-failed", Type: togetherv1.EventFineTuneFailed, JobID: job, ErrorMessage: "out of memory"})
	}
	for i := range evs {
		if r.IntN(4) == 0 {
			evs = append(evs, evs[i])
		}
	}
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs
}

func runningFineTune(job string) *togetherv1.TogetherFineTune {
	return &togetherv1.TogetherFineTune{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: job, ResourceVersion: "41", Generation: 1, UID: types.UID("u-" + job),
			Labels: map[string]string{"team": "ml"}, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000, 0))},
		Spec:   togetherv1.TogetherFineTuneSpec{JobID: job, Training: &togetherv1.TrainingSpec{Model: "base", TrainingFile: "file-1"}},
		Status: togetherv1.TogetherFineTuneStatus{JobID: job, Phase: togetherv1.FineTuneRunning, Attempt: 1},
	}
}

// TestGuardedStatusPatch checks, over many random batches of events
// applied to a fine-tune, that the intake's status patch is the patch
// controller-runtime's guarded merge patch (MergeFromWithOptimisticLock)
// computes from the whole objects, and that applying it to the object as
// stored gives the new object with the guard's resourceVersion: the API
// server receives the same request it received before the patch was
// computed from the statuses alone.
func TestGuardedStatusPatch(t *testing.T) {
	op := ops[KindFineTune]
	r := rand.New(rand.NewPCG(19, 1))
	now := metav1.NewTime(time.Unix(1_700_000_100, 0))
	for run := range 300 {
		job := fmt.Sprintf("ft-%d", run)
		obj := runningFineTune(job)
		evs := randomEvents(r, job)
		for len(evs) > 0 {
			n := min(len(evs), 1+r.IntN(8))
			work := obj.DeepCopy()
			for _, ev := range evs[:n] {
				op.apply(work, ev, now)
			}
			evs = evs[n:]

			got, err := guardedStatusPatch(obj.ResourceVersion, op.status(obj), op.status(work))
			if err != nil {
				t.Fatal(err)
			}
			want, err := client.MergeFromWithOptions(obj, client.MergeFromWithOptimisticLock{}).Data(work)
			if err != nil {
				t.Fatal(err)
			}
			var g, w map[string]any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("the patch is not JSON: %v: %s", err, got)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if _, ok := w["status"]; !ok {
				w["status"] = map[string]any{} // controller-runtime leaves an unchanged status out
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("run %d: status patch\n%s\nwant the guarded merge patch\n%s", run, got, want)
			}

			stored, _ := json.Marshal(obj)
			patched, err := jsonpatch.MergePatch(stored, got)
			if err != nil {
				t.Fatal(err)
			}
			var after togetherv1.TogetherFineTune
			if err := json.Unmarshal(patched, &after); err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != obj.ResourceVersion {
				t.Fatalf("run %d: the patch carries resourceVersion %q, want the guard %q", run, after.ResourceVersion, obj.ResourceVersion)
			}
			wantJSON, _ := json.Marshal(work.Status)
			gotJSON, _ := json.Marshal(after.Status)
			if string(gotJSON) != string(wantJSON) {
				t.Fatalf("run %d: patched status\n%s\nwant\n%s", run, gotJSON, wantJSON)
			}
			obj = work
			obj.ResourceVersion = fmt.Sprint(42 + run)
		}
	}
}

// TestMergeDiffCases compares the member-by-member diff with
// jsonpatch.CreateMergePatch on the shapes the random lifecycles above do
// not produce: members that go away, null, objects that become something
// else, nested removals, arrays.
func TestMergeDiffCases(t *testing.T) {
	for _, c := range []struct{ from, to string }{
		{`{"a":1,"b":2}`, `{"a":1}`},
		{`{"a":1}`, `{"a":1,"b":{"c":[1,2]}}`},
		{`{"a":null}`, `{"a":{"b":1}}`},
		{`{"a":{"b":1}}`, `{"a":null}`},
		{`{"a":{"b":1}}`, `{"a":7}`},
		{`{"a":{"b":1,"c":{"d":2,"e":3}}}`, `{"a":{"b":1,"c":{"d":2}}}`},
		{`{"a":{"b":1,"c":{"d":2}}}`, `{"a":{"b":1,"c":{"d":2}}}`},
		{`{"l":[1,2,3]}`, `{"l":[1,2]}`},
		{`{"l":[{"x":1}]}`, `{"l":[{"x":1},{"x":2}]}`},
		{`{}`, `{}`},
		{`{"s":"a\"b"}`, `{"s":"a\"c","t\"":true}`},
	} {
		got, err := appendMergeDiff(nil, []byte(c.from), []byte(c.to))
		if err != nil {
			t.Fatalf("%s -> %s: %v", c.from, c.to, err)
		}
		want, err := jsonpatch.CreateMergePatch([]byte(c.from), []byte(c.to))
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s -> %s: the patch %s is not JSON: %v", c.from, c.to, got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s -> %s: patch %s, want %s", c.from, c.to, got, want)
		}
		applied, err := jsonpatch.MergePatch([]byte(c.from), got)
		if err != nil {
			t.Fatal(err)
		}
		var a, to any
		_ = json.Unmarshal(applied, &a)
		_ = json.Unmarshal([]byte(c.to), &to)
		if !jsonpatch.Equal(applied, []byte(c.to)) && !reflect.DeepEqual(a, stripNulls(to)) {
			t.Errorf("%s -> %s: applying %s gives %s", c.from, c.to, got, applied)
		}
	}
}

// stripNulls removes null members, as applying a merge patch does.
func stripNulls(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range m {
		if x == nil {
			delete(m, k)
		} else {
			m[k] = stripNulls(x)
		}
	}
	return m
}

func TestGuardedStatusPatchNeedsResourceVersion(t *testing.T) {
	ft := runningFineTune("ft-1")
	if _, err := guardedStatusPatch("", &ft.Status, &ft.Status); err == nil {
		t.Fatal("a patch without a resourceVersion guard was built; want an error")
	}
}

// BenchmarkStatusPatch is the intake's work to build one checkpoint's write
// (copy, apply, patch) for a running fine-tune after its first checkpoint
// (what the distinct-CR bench writes) and with a full history (24
// checkpoints, 64 processed events, what a storm writes): controller-
// runtime's guarded merge patch of the whole objects, against the patch
// computed from the two statuses.
func BenchmarkStatusPatch(b *testing.B) {
	op := ops[KindFineTune]
	now := metav1.NewTime(time.Unix(1_700_000_100, 0))
	for _, history := range []int64{1, 150} {
		obj := runningFineTune("ft-1")
		for s := int64(1); s <= history; s++ {
			loss := 1 / float64(s+1)
			op.apply(obj, event.Event{ID: fmt.Sprintf("msg_%024d", s), Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: s, Loss: &loss}, now)
		}
		loss := 0.001
		next := event.Event{ID: "msg_next", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: history + 1, Loss: &loss}
		b.Run(fmt.Sprintf("checkpoints=%d/MergeFromWithOptimisticLock", history), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				work := obj.DeepCopy()
				op.apply(work, next, now)
				if _, err := client.MergeFromWithOptions(obj, client.MergeFromWithOptimisticLock{}).Data(work); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("checkpoints=%d/guardedStatusPatch", history), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				work := obj.DeepCopy()
				op.apply(work, next, now)
				if _, err := guardedStatusPatch(obj.ResourceVersion, op.status(obj), op.status(work)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
