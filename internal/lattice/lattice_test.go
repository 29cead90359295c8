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

package lattice

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
)

var t0 = metav1.NewTime(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))

// lifecycle returns the events of one fine-tune job in the order they happen.
func lifecycle(job string, steps int, fail bool) []event.Event {
	evs := []event.Event{{ID: job + "-queued", Type: event.TypeFineTuneStatus, JobID: job, RemoteStatus: "queued"}}
	for s := 1; s <= steps; s++ {
		evs = append(evs, event.Event{ID: fmt.Sprintf("%s-ckpt-%d", job, s), Type: togetherv1.EventFineTuneCheckpoint, JobID: job,
			Step: int64(s * 10), Loss: ptr.To(3.0 / float64(s))})
	}
	if fail {
		return append(evs, event.Event{ID: job + "-failed", Type: togetherv1.EventFineTuneFailed, JobID: job, ErrorMessage: "OOM", Step: int64(steps * 10)})
	}
	return append(evs, event.Event{ID: job + "-done", Type: togetherv1.EventFineTuneCompleted, JobID: job, ModelName: "me/" + job, EvalLoss: ptr.To(0.42), Step: int64(steps * 10)})
}

// semantic strips the bookkeeping fields whose content depends on delivery
// order (which IDs are in the bounded window, which event came last).
func semantic(st togetherv1.TogetherFineTuneStatus) togetherv1.TogetherFineTuneStatus {
	st.ProcessedEvents, st.LastEvent = nil, nil
	return st
}

func TestFineTuneFinalStatusIsIndependentOfOrderAndDuplicates(t *testing.T) {
	for _, fail := range []bool{false, true} {
		for _, steps := range []int{3, 30} { // 30 checkpoints exceed the bounded list
			inOrder := togetherv1.TogetherFineTuneStatus{JobID: "ft-1", Phase: togetherv1.FineTunePending}
			evs := lifecycle("ft-1", steps, fail)
			for _, ev := range evs {
				ApplyFineTune(&inOrder, ev, t0)
			}
			for seed := range uint64(200) {
				rng := rand.New(rand.NewPCG(seed, 7))
				deliveries := append([]event.Event(nil), evs...)
				for range len(evs) / 2 { // ~50% duplicates
					deliveries = append(deliveries, evs[rng.IntN(len(evs))])
				}
				rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
				got := togetherv1.TogetherFineTuneStatus{JobID: "ft-1", Phase: togetherv1.FineTunePending}
				for _, ev := range deliveries {
					ApplyFineTune(&got, ev, t0)
				}
				if !equality.Semantic.DeepEqual(semantic(got), semantic(inOrder)) {
					t.Fatalf("fail=%v steps=%d seed=%d: shuffled result differs\n got: %+v\nwant: %+v", fail, steps, seed, semantic(got), semantic(inOrder))
				}
			}
		}
	}
}

// TestTerminalMeansTerminal: once a job has ended at a step, checkpoints
// beyond it are not its result — whether they arrive after the end (a stray
// or replayed push) or before it (reordered) — and the status is the same
// in every order.
func TestTerminalMeansTerminal(t *testing.T) {
	for _, fail := range []bool{false, true} {
		for _, steps := range []int{3, 30} {
			evs := lifecycle("ft-1", steps, fail)
			final := int64(steps * 10)
			want := togetherv1.TogetherFineTuneStatus{JobID: "ft-1", Phase: togetherv1.FineTunePending}
			for _, ev := range evs {
				ApplyFineTune(&want, ev, t0)
			}
			finalLoss := *want.Loss
			// After the end: checkpoints past the final step, and one below
			// it that was already recorded (a replay).
			strays := []event.Event{
				{ID: "stray-1", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: final + 10, Loss: ptr.To(0.5)},
				{ID: "stray-2", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: final + 20, Loss: ptr.To(0.3)},
			}
			for _, ev := range strays {
				if out := ApplyFineTune(&want, ev, t0); out != Stale {
					t.Fatalf("fail=%v steps=%d: checkpoint %d after the end: %s, want stale", fail, steps, ev.Step, out)
				}
			}
			if want.Step != final || *want.Loss != finalLoss || want.Checkpoints[len(want.Checkpoints)-1].Step != final {
				t.Fatalf("fail=%v steps=%d: result moved after the end: step %d loss %v", fail, steps, want.Step, *want.Loss)
			}
			all := append(append([]event.Event(nil), evs...), strays...)
			for seed := range uint64(200) {
				rng := rand.New(rand.NewPCG(seed, 11))
				deliveries := append([]event.Event(nil), all...)
				for range len(all) / 2 {
					deliveries = append(deliveries, all[rng.IntN(len(all))])
				}
				rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
				got := togetherv1.TogetherFineTuneStatus{JobID: "ft-1", Phase: togetherv1.FineTunePending}
				for _, ev := range deliveries {
					ApplyFineTune(&got, ev, t0)
				}
				if !equality.Semantic.DeepEqual(semantic(got), semantic(want)) {
					t.Fatalf("fail=%v steps=%d seed=%d: result depends on order\n got: %+v\nwant: %+v", fail, steps, seed, semantic(got), semantic(want))
				}
			}
		}
	}
}

func TestFineTuneStateNeverMovesBackwards(t *testing.T) {
	st := togetherv1.TogetherFineTuneStatus{JobID: "ft-1"}
	if out := ApplyFineTune(&st, event.Event{ID: "c5", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: 50, Loss: ptr.To(1.0)}, t0); out != Applied {
		t.Fatalf("first checkpoint: %s", out)
	}
	if st.Phase != togetherv1.FineTuneRunning || st.Step != 50 {
		t.Fatalf("phase %s step %d after a checkpoint", st.Phase, st.Step)
	}
	ApplyFineTune(&st, event.Event{ID: "q", Type: event.TypeFineTuneStatus, JobID: "ft-1", RemoteStatus: "queued"}, t0)
	if st.Phase != togetherv1.FineTuneRunning {
		t.Fatalf("a late queued status moved phase back to %s", st.Phase)
	}
	ApplyFineTune(&st, event.Event{ID: "c3", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: 30, Loss: ptr.To(2.0)}, t0)
	if st.Step != 50 || *st.Loss != 1.0 {
		t.Fatalf("an older checkpoint moved step/loss to %d/%v", st.Step, *st.Loss)
	}
	ApplyFineTune(&st, event.Event{ID: "done", Type: togetherv1.EventFineTuneCompleted, JobID: "ft-1", ModelName: "m"}, t0)
	if out := ApplyFineTune(&st, event.Event{ID: "fail", Type: togetherv1.EventFineTuneFailed, JobID: "ft-1", ErrorMessage: "x"}, t0); out != Stale {
		t.Fatalf("failure after completion: %s, want stale", out)
	}
	if st.Phase != togetherv1.FineTuneSucceeded || st.Error != nil {
		t.Fatalf("terminal phase changed: %s %v", st.Phase, st.Error)
	}
	if out := ApplyFineTune(&st, event.Event{ID: "done", Type: togetherv1.EventFineTuneCompleted, JobID: "ft-1", ModelName: "m"}, t0); out != Duplicate {
		t.Fatalf("redelivery: %s, want duplicate", out)
	}
}

func TestFineTuneEventForAnotherAttemptIsStale(t *testing.T) {
	st := togetherv1.TogetherFineTuneStatus{JobID: "ft-2", Phase: togetherv1.FineTunePending}
	out := ApplyFineTune(&st, event.Event{ID: "x", Type: togetherv1.EventFineTuneFailed, JobID: "ft-1", ErrorMessage: "old"}, t0)
	if out != Stale || st.Phase != togetherv1.FineTunePending || len(st.ProcessedEvents) != 0 {
		t.Fatalf("old attempt's event: outcome %s, status %+v", out, st)
	}
}

func TestProcessedEventsAreBounded(t *testing.T) {
	st := togetherv1.TogetherFineTuneStatus{JobID: "ft-1"}
	for i := range 200 {
		ApplyFineTune(&st, event.Event{ID: fmt.Sprint("c", i), Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-1", Step: int64(i + 1)}, t0)
	}
	if len(st.ProcessedEvents) != togetherv1.MaxProcessedEvents || len(st.Checkpoints) != togetherv1.MaxCheckpoints+CheckpointSlack {
		t.Fatalf("processed %d checkpoints %d", len(st.ProcessedEvents), len(st.Checkpoints))
	}
	ApplyFineTune(&st, event.Event{ID: "done", Type: togetherv1.EventFineTuneCompleted, JobID: "ft-1", ModelName: "m", Step: 200}, t0)
	if len(st.Checkpoints) != togetherv1.MaxCheckpoints {
		t.Fatalf("%d checkpoints once the job ended, want %d", len(st.Checkpoints), togetherv1.MaxCheckpoints)
	}
	if st.Checkpoints[len(st.Checkpoints)-1].Step != 200 || st.ProcessedEvents[len(st.ProcessedEvents)-1] != "done" {
		t.Fatalf("newest not last: %+v", st.Checkpoints[len(st.Checkpoints)-1])
	}
}

func TestSplitBatchAggregatesParts(t *testing.T) {
	st := togetherv1.TogetherBatchStatus{BatchID: "b0", Parts: []togetherv1.BatchPart{{Index: 0, BatchID: "b0"}, {Index: 1, BatchID: "b1"}}}
	ApplyBatch(&st, event.Event{ID: "p0", Type: event.TypeBatchProgress, JobID: "b0", RemoteStatus: "IN_PROGRESS", Progress: 50}, t0)
	if st.Phase != togetherv1.BatchInProgress || st.Progress != 25 {
		t.Fatalf("after one part at 50%%: %s %d", st.Phase, st.Progress)
	}
	ApplyBatch(&st, event.Event{ID: "d0", Type: togetherv1.EventBatchDone, JobID: "b0", RemoteStatus: "COMPLETED", TotalTokens: 10, OutputFileID: "o0"}, t0)
	if st.Phase != togetherv1.BatchInProgress {
		t.Fatalf("one part done should not finish the batch: %s", st.Phase)
	}
	ApplyBatch(&st, event.Event{ID: "d1", Type: togetherv1.EventBatchDone, JobID: "b1", RemoteStatus: "COMPLETED", TotalTokens: 5, OutputFileID: "o1"}, t0)
	if st.Phase != togetherv1.BatchSucceeded || st.TotalTokens != 15 || st.Progress != 100 {
		t.Fatalf("all parts done: %s tokens %d progress %d", st.Phase, st.TotalTokens, st.Progress)
	}
	if out := ApplyBatch(&st, event.Event{ID: "other", Type: togetherv1.EventBatchDone, JobID: "b9", RemoteStatus: "FAILED"}, t0); out != Stale {
		t.Fatalf("event for an unknown part: %s", out)
	}
}

func TestBatchOrderIndependence(t *testing.T) {
	evs := []event.Event{
		{ID: "v", Type: event.TypeBatchProgress, JobID: "b", RemoteStatus: "VALIDATING"},
		{ID: "p1", Type: event.TypeBatchProgress, JobID: "b", RemoteStatus: "IN_PROGRESS", Progress: 30},
		{ID: "p2", Type: event.TypeBatchProgress, JobID: "b", RemoteStatus: "IN_PROGRESS", Progress: 80},
		{ID: "d", Type: togetherv1.EventBatchDone, JobID: "b", RemoteStatus: "COMPLETED", TotalTokens: 99, OutputFileID: "f"},
	}
	want := togetherv1.TogetherBatchStatus{BatchID: "b"}
	for _, ev := range evs {
		ApplyBatch(&want, ev, t0)
	}
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := append(append([]event.Event(nil), evs...), evs...)
		rng.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		got := togetherv1.TogetherBatchStatus{BatchID: "b"}
		for _, ev := range d {
			ApplyBatch(&got, ev, t0)
		}
		got.ProcessedEvents, got.LastEvent, want.ProcessedEvents, want.LastEvent = nil, nil, nil, nil
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("seed %d: got %+v want %+v", seed, got, want)
		}
	}
}

// A split batch's overall phase is one rule (TogetherBatchStatus.
// AggregateParts) shared with the reconciler: the worst ending of any part,
// whatever order the parts end in. Two rules used to disagree here, so the
// intake wrote Expired and the next reconcile rewrote Failed.
func TestSplitBatchEndsInTheWorstPartWhateverTheOrder(t *testing.T) {
	done := func(id, remote string) event.Event {
		return event.Event{ID: "done-" + id, Type: togetherv1.EventBatchDone, JobID: id, RemoteStatus: remote}
	}
	for _, order := range [][]event.Event{
		{done("b0", "EXPIRED"), done("b1", "FAILED")},
		{done("b1", "FAILED"), done("b0", "EXPIRED")},
	} {
		st := togetherv1.TogetherBatchStatus{BatchID: "b0", Parts: []togetherv1.BatchPart{{Index: 0, BatchID: "b0"}, {Index: 1, BatchID: "b1"}}}
		for _, ev := range order {
			ApplyBatch(&st, ev, t0)
		}
		if st.Phase != togetherv1.BatchFailed {
			t.Fatalf("parts [Expired, Failed] applied as %s then %s: phase %s, want Failed", order[0].JobID, order[1].JobID, st.Phase)
		}
		again := st
		again.AggregateParts()
		if again.Phase != st.Phase {
			t.Fatalf("the reconciler's derivation %s disagrees with the intake's %s", again.Phase, st.Phase)
		}
	}
}
