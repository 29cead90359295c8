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

// Package lattice is the operator's state machine: what one event does to
// a fine-tune's or a batch's status, written as a join so that any order and
// number of deliveries ends in the same status. It is pure (no clock, no I/O).
package lattice

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
)

// Outcome is what applying one event did.
type Outcome string

const (
	// Applied means the event changed status.
	Applied Outcome = "applied"
	// Duplicate means the event's ID was already recorded.
	Duplicate Outcome = "duplicate"
	// Stale means the event was valid but could not move state forward (an
	// older checkpoint, anything about a previous attempt's job, a transition
	// after a terminal phase). It is acknowledged and changes nothing.
	Stale Outcome = "stale"
	// Unmatched means no resource tracks the event's job.
	Unmatched Outcome = "unmatched"
	// Ignored means the subscription does not ask for this type, or the type
	// is unknown.
	Ignored Outcome = "ignored"
	// Rejected means the delivery was refused (bad signature, bad payload).
	Rejected Outcome = "rejected"
	// Failed means the effect could not be written; the sender should retry.
	Failed Outcome = "failed"
)

// The apply functions below are the state machine of the operator, and they
// are written as joins of a semilattice: every field only moves "up" (phase by
// rank, step by value, a terminal result once set is kept). Applying the same
// set of events in any order and any number of times therefore gives the same
// status, which is what makes redelivery, reordering and push+poll of the same
// transition safe. processedEvents only saves writes; correctness does not
// depend on it.

var fineTunePhaseRank = map[togetherv1.FineTunePhase]int{
	"": 0, togetherv1.FineTunePending: 1, togetherv1.FineTuneQueued: 2, togetherv1.FineTuneRunning: 3,
	togetherv1.FineTuneSucceeded: 4, togetherv1.FineTuneFailed: 4, togetherv1.FineTuneCancelled: 4,
}

// fineTuneRemotePhase maps Together's status words to phases.
var fineTuneRemotePhase = map[string]togetherv1.FineTunePhase{
	"pending": togetherv1.FineTunePending, "queued": togetherv1.FineTuneQueued,
	"running": togetherv1.FineTuneRunning, "compressing": togetherv1.FineTuneRunning,
	"uploading": togetherv1.FineTuneRunning, "cancel_requested": togetherv1.FineTuneRunning,
	"cancelled": togetherv1.FineTuneCancelled, "error": togetherv1.FineTuneFailed,
	"user_error": togetherv1.FineTuneFailed, "completed": togetherv1.FineTuneSucceeded,
}

// RaisesFineTunePhase reports whether moving from one phase to another is
// forward, so that a source can skip events that cannot change anything.
func RaisesFineTunePhase(from, to togetherv1.FineTunePhase) bool {
	return fineTunePhaseRank[to] > fineTunePhaseRank[from]
}

// RaisesBatchPhase is RaisesFineTunePhase for batches.
func RaisesBatchPhase(from, to togetherv1.BatchPhase) bool {
	return batchPhaseRank[to] > batchPhaseRank[from]
}

// FineTunePhaseFor maps a Together fine-tune status word to a phase; the
// second result is false for a word this operator does not know.
func FineTunePhaseFor(remote string) (togetherv1.FineTunePhase, bool) {
	p, ok := fineTuneRemotePhase[remote]
	return p, ok
}

// ApplyFineTune records ev in st and reports what it did. It never reads the
// clock: now stamps lastEvent and checkpoint times.
func ApplyFineTune(st *togetherv1.TogetherFineTuneStatus, ev event.Event, now metav1.Time) Outcome {
	if slices.Contains(st.ProcessedEvents, ev.ID) {
		return Duplicate
	}
	if st.JobID == "" || st.JobID != ev.JobID {
		return Stale
	}
	changed := false
	switch ev.Type {
	case togetherv1.EventFineTuneCheckpoint:
		if st.FinalStep > 0 && ev.Step > st.FinalStep {
			// The job said it ended at FinalStep: a later step is not its
			// result (a stray or replayed push), before or after the end.
			return Stale
		}
		// An evaluation-only event (eval loss, no training loss) moves
		// evalLoss and leaves the checkpoint list alone.
		if ev.Loss != nil || ev.EvalLoss == nil {
			changed = mergeCheckpoint(st, ev, now)
		}
		if ev.EvalLoss != nil && !st.Phase.IsTerminal() && (st.EvalLoss == nil || *st.EvalLoss != *ev.EvalLoss) {
			st.EvalLoss = ptrCopy(ev.EvalLoss)
			changed = true
		}
		changed = raiseFineTunePhase(st, togetherv1.FineTuneRunning, "running") || changed
	case togetherv1.EventFineTuneCompleted:
		raised := raiseFineTunePhase(st, togetherv1.FineTuneSucceeded, "completed")
		changed = raised
		if st.Phase == togetherv1.FineTuneSucceeded {
			changed = setOnce(&st.OutputModel, ev.ModelName) || changed
			// The completion's eval loss is the finished model's: it
			// replaces one read during training.
			if ev.EvalLoss != nil && (st.EvalLoss == nil || raised && *st.EvalLoss != *ev.EvalLoss) {
				st.EvalLoss = ptrCopy(ev.EvalLoss)
				changed = true
			}
			changed = raiseFinalStep(st, ev.Step) || changed
		}
	case togetherv1.EventFineTuneFailed:
		changed = raiseFineTunePhase(st, togetherv1.FineTuneFailed, "error")
		if st.Phase == togetherv1.FineTuneFailed && st.Error == nil {
			st.Error = &togetherv1.JobError{Message: ev.ErrorMessage, Step: ev.Step}
			changed = true
		}
		if st.Phase == togetherv1.FineTuneFailed {
			changed = raiseFinalStep(st, ev.Step) || changed
		}
	case event.TypeFineTuneStatus:
		if p, ok := fineTuneRemotePhase[ev.RemoteStatus]; ok && !p.IsTerminal() || p == togetherv1.FineTuneCancelled {
			changed = raiseFineTunePhase(st, p, ev.RemoteStatus)
		}
	default:
		return Ignored
	}
	changed = setRemaining(st, ev.SecondsRemaining) || changed
	if !changed {
		return Stale
	}
	Record(&st.ProcessedEvents, &st.LastEvent, ev, now)
	return Applied
}

// setRemaining keeps the remaining-time estimate of a job still working and
// clears it once the job has ended.
func setRemaining(st *togetherv1.TogetherFineTuneStatus, secs *int64) bool {
	if st.Phase.IsTerminal() {
		if st.SecondsRemaining == nil {
			return false
		}
		st.SecondsRemaining = nil
		return true
	}
	if secs == nil || (st.SecondsRemaining != nil && *st.SecondsRemaining == *secs) {
		return false
	}
	st.SecondsRemaining = ptrCopy(secs)
	return true
}

// raiseFineTunePhase moves the phase up to p if p ranks higher; a terminal
// phase is never replaced, not even by another terminal one.
func raiseFineTunePhase(st *togetherv1.TogetherFineTuneStatus, p togetherv1.FineTunePhase, remote string) bool {
	if fineTunePhaseRank[p] <= fineTunePhaseRank[st.Phase] {
		return false
	}
	st.Phase = p
	st.RemoteStatus = remote
	return true
}

// raiseFinalStep records the step a terminal event says the job ended at
// (0: it did not say) and drops what lies beyond it: checkpoints with a
// higher step, and the step and loss they set. FinalStep only grows (a
// maximum over the terminal events applied), and a checkpoint beyond it is
// ignored whenever it arrives, so the result does not depend on whether a
// stray checkpoint came before or after the end (for up to CheckpointSlack
// stray checkpoints that arrive before the end; see checkpointLimit).
func raiseFinalStep(st *togetherv1.TogetherFineTuneStatus, step int64) bool {
	if step <= st.FinalStep {
		return false
	}
	st.FinalStep = step
	if keep := slices.IndexFunc(st.Checkpoints, func(c togetherv1.Checkpoint) bool { return c.Step > step }); keep >= 0 {
		st.Checkpoints = st.Checkpoints[:keep]
	}
	trimCheckpoints(st, checkpointLimit(st))
	deriveStepLoss(st)
	return true
}

// CheckpointSlack is how many checkpoints beyond MaxCheckpoints the list
// holds until the job's final step is known. Checkpoints that the final
// step later rules out would otherwise have pushed out ones it keeps, and
// the list would depend on whether they came before or after the end; with
// the slack it does not, for up to CheckpointSlack of them.
const CheckpointSlack = 4

func checkpointLimit(st *togetherv1.TogetherFineTuneStatus) int {
	if st.FinalStep > 0 {
		return togetherv1.MaxCheckpoints
	}
	return togetherv1.MaxCheckpoints + CheckpointSlack
}

// trimCheckpoints keeps the newest limit checkpoints.
func trimCheckpoints(st *togetherv1.TogetherFineTuneStatus, limit int) {
	if n := len(st.Checkpoints); n > limit {
		st.Checkpoints = slices.Delete(st.Checkpoints, 0, n-limit)
	}
}

// deriveStepLoss sets step and loss from the checkpoint list: the newest
// checkpoint's, or, once the job reported its final step, that step and the
// loss of the newest checkpoint up to it. Both are functions of the list and
// FinalStep, which are joins, so they are too.
func deriveStepLoss(st *togetherv1.TogetherFineTuneStatus) {
	n := len(st.Checkpoints)
	switch {
	case st.FinalStep > 0:
		st.Step, st.Loss = st.FinalStep, nil
		if n > 0 {
			st.Loss = ptrCopy(st.Checkpoints[n-1].Loss)
		}
	case n > 0 && st.Checkpoints[n-1].Step >= st.Step:
		st.Step, st.Loss = st.Checkpoints[n-1].Step, ptrCopy(st.Checkpoints[n-1].Loss)
	}
}

// mergeCheckpoint adds a checkpoint to the bounded list (kept sorted by step,
// newest last) and moves step/loss to the highest step seen.
func mergeCheckpoint(st *togetherv1.TogetherFineTuneStatus, ev event.Event, now metav1.Time) bool {
	i, found := slices.BinarySearchFunc(st.Checkpoints, ev.Step, func(c togetherv1.Checkpoint, step int64) int {
		return cmpInt(c.Step, step)
	})
	if found {
		if st.Checkpoints[i].Loss != nil || ev.Loss == nil {
			return false
		}
		st.Checkpoints[i].Loss = ptrCopy(ev.Loss)
	} else {
		limit := checkpointLimit(st)
		if len(st.Checkpoints) >= limit && i == 0 {
			return false // older than every checkpoint kept
		}
		t := now
		st.Checkpoints = slices.Insert(st.Checkpoints, i, togetherv1.Checkpoint{Step: ev.Step, Loss: ptrCopy(ev.Loss), Time: &t})
		trimCheckpoints(st, limit)
	}
	deriveStepLoss(st)
	return true
}

var batchPhaseRank = map[togetherv1.BatchPhase]int{
	"": 0, togetherv1.BatchPending: 1, togetherv1.BatchValidating: 2, togetherv1.BatchInProgress: 3,
	togetherv1.BatchSucceeded: 4, togetherv1.BatchFailed: 4, togetherv1.BatchExpired: 4, togetherv1.BatchCancelled: 4,
}

var batchTerminalPhase = map[string]togetherv1.BatchPhase{
	"COMPLETED": togetherv1.BatchSucceeded, "FAILED": togetherv1.BatchFailed,
	"EXPIRED": togetherv1.BatchExpired, "CANCELLED": togetherv1.BatchCancelled,
}

var batchRunningPhase = map[string]togetherv1.BatchPhase{
	"VALIDATING": togetherv1.BatchValidating, "IN_PROGRESS": togetherv1.BatchInProgress,
}

// BatchPhaseFor maps a Together batch status word to a phase.
func BatchPhaseFor(remote string) (togetherv1.BatchPhase, bool) {
	if p, ok := batchTerminalPhase[remote]; ok {
		return p, true
	}
	p, ok := batchRunningPhase[remote]
	return p, ok
}

// batchFields is the part of batch state an event can change; the top-level
// status and each part of a split batch share it.
type batchFields struct {
	Phase                     *togetherv1.BatchPhase
	Progress                  *int32
	TotalTokens               *int64
	OutputFileID, ErrorFileID *string
	OutputURL, Error          *string
}

// ApplyBatch records ev in st. A split batch is matched through any of its
// parts; the top-level fields are then derived from the parts.
func ApplyBatch(st *togetherv1.TogetherBatchStatus, ev event.Event, now metav1.Time) Outcome {
	if slices.Contains(st.ProcessedEvents, ev.ID) {
		return Duplicate
	}
	if ev.Type != togetherv1.EventBatchDone && ev.Type != event.TypeBatchProgress {
		return Ignored
	}
	var changed bool
	if len(st.Parts) > 0 {
		idx := slices.IndexFunc(st.Parts, func(p togetherv1.BatchPart) bool { return p.BatchID == ev.JobID })
		if idx < 0 {
			return Stale
		}
		p := &st.Parts[idx]
		var url, errMsg string
		changed = mergeBatch(batchFields{&p.Phase, &p.Progress, &p.TotalTokens, &p.OutputFileID, &p.ErrorFileID, &url, &errMsg}, ev)
		if changed {
			st.AggregateParts()
			if errMsg != "" && st.Error == "" {
				st.Error = errMsg
			}
		}
	} else {
		if st.BatchID == "" || st.BatchID != ev.JobID {
			return Stale
		}
		changed = mergeBatch(batchFields{&st.Phase, &st.Progress, &st.TotalTokens, &st.OutputFileID, &st.ErrorFileID, &st.OutputURL, &st.Error}, ev)
	}
	if !changed {
		return Stale
	}
	Record(&st.ProcessedEvents, &st.LastEvent, ev, now)
	return Applied
}

func mergeBatch(f batchFields, ev event.Event) bool {
	changed := false
	var target togetherv1.BatchPhase
	if ev.Type == togetherv1.EventBatchDone {
		target = batchTerminalPhase[ev.RemoteStatus]
	} else {
		target = batchRunningPhase[ev.RemoteStatus]
	}
	if target != "" && batchPhaseRank[target] > batchPhaseRank[*f.Phase] {
		*f.Phase = target
		changed = true
	}
	progress := ev.Progress
	if ev.Type == togetherv1.EventBatchDone && target == togetherv1.BatchSucceeded {
		progress = 100
	}
	if progress > *f.Progress && (!f.Phase.IsTerminal() || ev.Type == togetherv1.EventBatchDone) {
		*f.Progress = min(progress, 100)
		changed = true
	}
	if ev.Type == togetherv1.EventBatchDone && *f.Phase == target {
		if ev.TotalTokens > *f.TotalTokens {
			*f.TotalTokens = ev.TotalTokens
			changed = true
		}
		changed = setOnce(f.OutputFileID, ev.OutputFileID) || changed
		changed = setOnce(f.ErrorFileID, ev.ErrorFileID) || changed
		changed = setOnce(f.OutputURL, ev.OutputURL) || changed
		changed = setOnce(f.Error, ev.ErrorMessage) || changed
	}
	return changed
}

// Record remembers an applied event's ID in the bounded processed list.
func Record(ids *[]string, last **togetherv1.EventRecord, ev event.Event, now metav1.Time) {
	*ids = append(*ids, ev.ID)
	if n := len(*ids); n > togetherv1.MaxProcessedEvents {
		*ids = slices.Delete(*ids, 0, n-togetherv1.MaxProcessedEvents)
	}
	*last = &togetherv1.EventRecord{ID: ev.ID, Type: string(ev.Type), Time: now}
}

func setOnce(dst *string, v string) bool {
	if *dst != "" || v == "" {
		return false
	}
	*dst = v
	return true
}

func ptrCopy[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
