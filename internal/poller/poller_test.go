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

package poller

import (
	"strconv"
	"testing"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/together"
)

// A polled batch's event ID is what makes a state read twice one event (a
// duplicate) and a changed state a new one; a pushed batch.done and a
// polled one of the same terminal status converge on the same effect.
func TestBatchEventIDsFollowTheState(t *testing.T) {
	statuses := []together.BatchStatus{together.BatchValidating, together.BatchInProgress, together.BatchCanceling,
		together.BatchCompleted, together.BatchFailed, together.BatchExpired, together.BatchCancelled}
	seen := map[string]string{}
	for _, st := range statuses {
		for _, progress := range []float64{0, 42, 42.9, 100} {
			b := &together.Batch{ID: "batch-1", Status: st, Progress: progress, OutputFileID: "file-out"}
			ev, again := BatchEvent(b), BatchEvent(b)
			if ev.ID != again.ID {
				t.Fatalf("%s at %v: the same state gave two IDs, %q and %q", st, progress, ev.ID, again.ID)
			}
			if st.Terminal() {
				if ev.Type != togetherv1.EventBatchDone || ev.OutputFileID != "file-out" || ev.RemoteStatus != string(st) {
					t.Fatalf("%s: got %+v, want batch.done carrying the status and the output file", st, ev)
				}
			} else if ev.Type != event.TypeBatchProgress || ev.Progress != int32(progress) {
				t.Fatalf("%s at %v: got %+v, want batch progress at %d", st, progress, ev, int32(progress))
			}
			state := string(st)
			if !st.Terminal() {
				state += "@" + strconv.Itoa(int(int32(progress)))
			}
			if prev, dup := seen[ev.ID]; dup && prev != state {
				t.Fatalf("two different states, %s and %s, share the event ID %q", prev, state, ev.ID)
			}
			seen[ev.ID] = state
		}
	}
}

// A job whose list entry did not change costs no per-job reads the next
// cycle; any change of its update time or status does.
func TestMovedFollowsTheJobsFingerprint(t *testing.T) {
	p := &Poller{}
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	job := &together.FineTune{ID: "ft-1", Status: together.FineTuneRunning, UpdatedAt: at}
	if !p.moved(job.ID, job) {
		t.Fatal("a job never seen has not moved")
	}
	p.markSeen(job.ID, fingerprint(job))
	if p.moved(job.ID, job) {
		t.Fatal("an unchanged job moved")
	}
	same := *job
	same.UpdatedAt = at.In(time.FixedZone("east", 9*3600))
	if p.moved(job.ID, &same) {
		t.Fatal("the same update time in another zone counts as a move")
	}
	for name, change := range map[string]func(*together.FineTune){
		"update time": func(j *together.FineTune) { j.UpdatedAt = at.Add(time.Millisecond) },
		"status":      func(j *together.FineTune) { j.Status = together.FineTuneCompleted },
	} {
		changed := *job
		change(&changed)
		if !p.moved(job.ID, &changed) {
			t.Fatalf("a change of %s is not a move", name)
		}
	}
	unknownTime := *job
	unknownTime.UpdatedAt = time.Time{}
	if !p.moved(job.ID, &unknownTime) {
		t.Fatal("a job without an update time must be read each cycle: nothing says it did not move")
	}
}
