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

package controller

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
)

// Fine-tune metrics. Gauges follow the current attempt of each resource;
// counters count attempts that ended, once each, when the reconciler records
// the attempt's end in status.attempts.
var (
	fineTuneStepGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "together_finetune_step",
		Help: "Training step of the newest checkpoint of a fine-tune's current attempt.",
	}, []string{"namespace", "name"})
	fineTuneLossGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "together_finetune_loss",
		Help: "Training loss at the newest checkpoint of a fine-tune's current attempt.",
	}, []string{"namespace", "name"})
	fineTuneCompletions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "together_finetune_completions_total",
		Help: "Fine-tune attempts that completed.",
	}, []string{"namespace"})
	fineTuneFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "together_finetune_failures_total",
		Help: "Fine-tune attempts that failed or were cancelled outside the operator.",
	}, []string{"namespace"})
)

func init() {
	metrics.Registry.MustRegister(fineTuneStepGauge, fineTuneLossGauge, fineTuneCompletions, fineTuneFailures)
}

// observeFineTuneMetrics publishes the current attempt's progress.
func observeFineTuneMetrics(ft *togetherv1.TogetherFineTune) {
	fineTuneStepGauge.WithLabelValues(ft.Namespace, ft.Name).Set(float64(ft.Status.Step))
	if ft.Status.Loss != nil {
		fineTuneLossGauge.WithLabelValues(ft.Namespace, ft.Name).Set(*ft.Status.Loss)
	}
}

// deleteFineTuneMetrics drops a deleted resource's series so they do not
// linger with their last values.
func deleteFineTuneMetrics(namespace, name string) {
	fineTuneStepGauge.DeleteLabelValues(namespace, name)
	fineTuneLossGauge.DeleteLabelValues(namespace, name)
}

// reconcileOutcome acts on the phase the event intake recorded: it waits
// while the job runs, retries a failure while attempts remain, and lets
// deployment proceed once the job succeeded.
func (r *TogetherFineTuneReconciler) reconcileOutcome(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) (ctrl.Result, error) {
	st := &ft.Status
	if st.JobID == "" {
		return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonJobPending, "Waiting for the job to be submitted.", 0)
	}
	observeFineTuneMetrics(ft)
	switch st.Phase {
	case togetherv1.FineTuneSucceeded:
		r.recordAttemptEnd(ft, s)
		return ctrl.Result{}, nil
	case togetherv1.FineTuneFailed:
		r.recordAttemptEnd(ft, s)
		// Only a job the operator submitted can be submitted again; an
		// adopted job (spec.jobID) has no training spec to retry with.
		if ft.Spec.Training != nil && st.Attempt < ftMaxAttempts(ft) {
			msg, err := r.submit(ctx, ft, s, st.Attempt+1)
			if err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonJobPending, msg, 0)
		}
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonJobFailed, fmt.Sprintf(
			"Fine-tune job %s failed at step %d: %s. All %d attempts are used; fix the cause and raise spec.retry.maxAttempts, or recreate the resource.",
			st.JobID, ftErrStep(st), ftErrMessage(st), ftMaxAttempts(ft))).Silent() // recordAttemptEnd announced it
	case togetherv1.FineTuneCancelled:
		r.recordAttemptEnd(ft, s)
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonJobCancelled, fmt.Sprintf(
			"Fine-tune job %s was cancelled outside the operator; recreate the resource to train again.", st.JobID)).Silent()
	case togetherv1.FineTuneRunning:
		return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonJobRunning, fmt.Sprintf(
			"Fine-tune job %s is training, step %d (attempt %d of %d).", st.JobID, st.Step, st.Attempt, ftMaxAttempts(ft)), 0)
	default:
		return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonJobPending, fmt.Sprintf(
			"Fine-tune job %s is waiting to start (attempt %d of %d).", st.JobID, st.Attempt, ftMaxAttempts(ft)), 0)
	}
}

// recordAttemptEnd writes the current attempt's terminal phase into its
// history entry, and on that transition only counts it and emits its Event,
// once the entry is written: later reconciles find the entry filled and do
// nothing, and a reconcile whose write was lost repeats the transition.
func (r *TogetherFineTuneReconciler) recordAttemptEnd(ft *togetherv1.TogetherFineTune, s *scope) {
	st := &ft.Status
	var entry *togetherv1.FineTuneAttempt
	for i := range st.Attempts {
		if st.Attempts[i].JobID == st.JobID {
			entry = &st.Attempts[i]
		}
	}
	if entry == nil {
		st.Attempts = append(st.Attempts, togetherv1.FineTuneAttempt{Attempt: st.Attempt, JobID: st.JobID})
		entry = &st.Attempts[len(st.Attempts)-1]
	}
	if entry.Phase != "" {
		return
	}
	entry.Phase = st.Phase
	jobID, attempt, maxAttempts, model := st.JobID, st.Attempt, ftMaxAttempts(ft), st.OutputModel
	switch st.Phase {
	case togetherv1.FineTuneSucceeded:
		s.afterWrite(func() {
			fineTuneCompletions.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonCompleted, "Follow",
				"Fine-tune job %s completed; output model %s.", jobID, model)
		})
	case togetherv1.FineTuneFailed:
		msg, step := ftErrMessage(st), ftErrStep(st)
		entry.Error = &togetherv1.JobError{Message: msg, Step: step}
		s.afterWrite(func() {
			fineTuneFailures.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeWarning, togetherv1.ReasonJobFailed, "Follow",
				"Fine-tune job %s (attempt %d of %d) failed at step %d: %s", jobID, attempt, maxAttempts, step, msg)
		})
	case togetherv1.FineTuneCancelled:
		s.afterWrite(func() {
			fineTuneFailures.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeWarning, togetherv1.ReasonJobCancelled, "Follow",
				"Fine-tune job %s was cancelled outside the operator.", jobID)
		})
	}
}

func ftErrMessage(st *togetherv1.TogetherFineTuneStatus) string {
	if st.Error == nil || st.Error.Message == "" {
		return "Together gave no error message"
	}
	return st.Error.Message
}

func ftErrStep(st *togetherv1.TogetherFineTuneStatus) int64 {
	if st.Error != nil && st.Error.Step > 0 {
		return st.Error.Step
	}
	return st.Step
}
