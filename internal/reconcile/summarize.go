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

package reconcile

import (
	"context"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Object is a resource of this group as the summary sees it.
type Object interface {
	client.Object
	StatusConditions() *[]metav1.Condition
	SetObservedGeneration(int64)
}

// Conditions declares, once per kind, the conditions its reconciler owns and
// how Ready follows from them.
type Conditions struct {
	// Owned lists every condition type the reconciler writes. Ready,
	// Reconciling and Stalled are always owned.
	Owned []string
	// Positive lists the sub-conditions of normal-true polarity that Ready
	// depends on: while one is present and not True, Ready is False with its
	// reason. Informational conditions (Registered) are owned but not listed.
	Positive []string
	// AnnounceReady emits a Normal Event each time Ready changes status or
	// reason towards something other than a stall (stalls always warn).
	AnnounceReady bool
}

// Outcome is what a reconcile's steps produced.
type Outcome struct {
	// Result is the merged result of the steps that finished.
	Result ctrl.Result
	// Err is the step error that stopped the reconcile, or nil.
	Err error
	// Ready is what Ready says when every step finished (nil: unchanged).
	Ready *metav1.Condition
}

// Report is what the summary decided.
type Report struct {
	Result ctrl.Result
	// Err is returned to controller-runtime: only retryable failures
	// without a Retry-After, and errors that are not an *Error.
	Err error
	// Observed says the status reflects the object's generation, so
	// observedGeneration may move: true unless the reconcile must be retried.
	Observed bool
	// Announce emits the Events and log line of the change. It must run once
	// the status that records the change is written, so that a lost write,
	// which the next reconcile repeats, is not announced twice.
	Announce func()
}

// Summarize is the one place an outcome becomes conditions, a result, an
// Event and a log line. before holds the conditions as the reconcile read
// them; Events and logs fire only when the new conditions differ from them,
// so a problem that persists across retries speaks once.
func (c Conditions) Summarize(ctx context.Context, obj Object, before []metav1.Condition, o Outcome, rec events.EventRecorder) Report {
	conds := obj.StatusConditions()
	gen := obj.GetGeneration()
	rep := Report{Result: o.Result, Observed: true}
	e, isOutcome := As(o.Err)
	switch {
	case o.Err == nil:
		if o.Ready != nil {
			SetReady(conds, gen, o.Ready.Status, o.Ready.Reason, o.Ready.Message)
			ClearProgress(conds)
		}
		for _, t := range c.Positive {
			if sub := apimeta.FindStatusCondition(*conds, t); sub != nil && sub.Status != metav1.ConditionTrue {
				SetReady(conds, gen, metav1.ConditionFalse, sub.Reason, sub.Message)
			}
		}
	case !isOutcome:
		// An error of the operator's own plumbing (the API server, a
		// conflict): retried with backoff; conditions say what they said.
		return Report{Err: o.Err, Announce: func() {}}
	default:
		if e.Condition != "" {
			SetCondition(conds, gen, e.Condition, metav1.ConditionFalse, e.Reason, e.Message)
		}
		rep.Result = ctrl.Result{RequeueAfter: e.RequeueAfter}
		switch e.Handling {
		case Stall:
			MarkStalled(conds, gen, e.Reason, e.Message)
		case Wait:
			MarkReconciling(conds, gen, e.Reason, e.Message)
		default:
			MarkReconciling(conds, gen, e.Reason, e.Message)
			rep.Observed = false
			if e.RequeueAfter == 0 {
				rep.Err = e
			}
		}
	}
	rep.Announce = func() { c.announce(ctx, obj, before, e, rec) }
	return rep
}

// announce emits what changed: a Warning Event and a log line when the
// resource becomes stalled (or stalled for another reason), and, for kinds
// that announce progress, a Normal Event when Ready moves.
func (c Conditions) announce(ctx context.Context, obj Object, before []metav1.Condition, e *Error, rec events.EventRecorder) {
	log := logf.FromContext(ctx)
	now := *obj.StatusConditions()
	if s := apimeta.FindStatusCondition(now, togetherv1.StalledCondition); s != nil && s.Status == metav1.ConditionTrue {
		if was := apimeta.FindStatusCondition(before, togetherv1.StalledCondition); was == nil || was.Status != s.Status || was.Reason != s.Reason || was.Message != s.Message {
			kv := []any{"reason", s.Reason, "message", s.Message}
			if e != nil && e.Err != nil {
				kv = append(kv, "cause", e.Err.Error())
			}
			log.Info("stalled: needs a person to act", kv...)
			if (e == nil || !e.Quiet) && rec != nil {
				rec.Eventf(obj, nil, togetherv1.EventTypeWarning, s.Reason, "Reconcile", "%s", s.Message)
			}
		}
		return
	}
	if e != nil && e.Handling == Retry {
		if e.RequeueAfter > 0 {
			log.Info("retrying after the server's Retry-After", "reason", e.Reason, "after", e.RequeueAfter.String(), "cause", e.Error())
		}
		return
	}
	if !c.AnnounceReady || rec == nil {
		return
	}
	r := apimeta.FindStatusCondition(now, togetherv1.ReadyCondition)
	if r == nil {
		return
	}
	if was := apimeta.FindStatusCondition(before, togetherv1.ReadyCondition); was != nil && was.Status == r.Status && was.Reason == r.Reason {
		return
	}
	rec.Eventf(obj, nil, togetherv1.EventTypeNormal, r.Reason, "Reconcile", "%s", r.Message)
}

// SetReady records Ready together with the kstatus companions: Reconciling
// and Stalled exist only while True, so they are removed whenever Ready is
// True.
func SetReady(conds *[]metav1.Condition, generation int64, status metav1.ConditionStatus, reason, message string) {
	SetCondition(conds, generation, togetherv1.ReadyCondition, status, reason, message)
	if status == metav1.ConditionTrue {
		ClearProgress(conds)
	}
}

// MarkReconciling sets Reconciling=True and Ready=False (Unknown would hide
// that work is in progress from kubectl wait), and clears Stalled.
func MarkReconciling(conds *[]metav1.Condition, generation int64, reason, message string) {
	SetCondition(conds, generation, togetherv1.ReconcilingCondition, metav1.ConditionTrue, reason, message)
	apimeta.RemoveStatusCondition(conds, togetherv1.StalledCondition)
	SetReady(conds, generation, metav1.ConditionFalse, reason, message)
}

// MarkStalled sets Stalled=True and Ready=False and clears Reconciling: the
// operator will not make progress until a person changes something.
func MarkStalled(conds *[]metav1.Condition, generation int64, reason, message string) {
	SetCondition(conds, generation, togetherv1.StalledCondition, metav1.ConditionTrue, reason, message)
	apimeta.RemoveStatusCondition(conds, togetherv1.ReconcilingCondition)
	SetReady(conds, generation, metav1.ConditionFalse, reason, message)
}

// ClearProgress removes Reconciling and Stalled, which kstatus wants present
// only while True.
func ClearProgress(conds *[]metav1.Condition) {
	apimeta.RemoveStatusCondition(conds, togetherv1.ReconcilingCondition)
	apimeta.RemoveStatusCondition(conds, togetherv1.StalledCondition)
}

// SetCondition records a condition, stamped with the generation it is about.
func SetCondition(conds *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}
