package controller

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
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
func deleteFineTuneMetrics(ft *togetherv1.TogetherFineTune) {
	fineTuneStepGauge.DeleteLabelValues(ft.Namespace, ft.Name)
	fineTuneLossGauge.DeleteLabelValues(ft.Namespace, ft.Name)
}

// reconcileOutcome acts on the phase the event intake recorded: it keeps
// Reconciling while the job runs, retries a failure while attempts remain,
// and lets deployment proceed once the job succeeded.
func (r *TogetherFineTuneReconciler) reconcileOutcome(ctx context.Context, ft *togetherv1.TogetherFineTune, patcher *statusPatcher) (ctrl.Result, bool, error) {
	st := &ft.Status
	if st.JobID == "" {
		return ctrl.Result{}, false, nil
	}
	observeFineTuneMetrics(ft)
	switch st.Phase {
	case togetherv1.FineTuneSucceeded:
		r.recordAttemptEnd(ft, patcher)
		return ctrl.Result{}, true, nil
	case togetherv1.FineTuneFailed:
		r.recordAttemptEnd(ft, patcher)
		if st.Attempt < ftMaxAttempts(ft) {
			next := st.Attempt + 1
			markReconciling(&st.Conditions, ft.Generation, ReasonRetrying,
				fmt.Sprintf("Attempt %d failed; submitting attempt %d of %d with learning rate %g.", st.Attempt, next, ftMaxAttempts(ft), attemptLearningRate(ft, next)))
			res, _, err := r.submit(ctx, ft, patcher, next)
			return res, false, err
		}
		markStalled(&st.Conditions, ft.Generation, ReasonJobFailed, fmt.Sprintf(
			"Fine-tune job %s failed at step %d: %s. All %d attempts are used; fix the cause and raise spec.retry.maxAttempts, or recreate the resource.",
			st.JobID, ftErrStep(st), ftErrMessage(st), ftMaxAttempts(ft)))
		return ctrl.Result{}, false, nil
	case togetherv1.FineTuneCancelled:
		r.recordAttemptEnd(ft, patcher)
		markStalled(&st.Conditions, ft.Generation, ReasonJobCancelled, fmt.Sprintf(
			"Fine-tune job %s was cancelled outside the operator; recreate the resource to train again.", st.JobID))
		return ctrl.Result{}, false, nil
	case togetherv1.FineTuneRunning:
		markReconciling(&st.Conditions, ft.Generation, ReasonJobRunning, fmt.Sprintf(
			"Fine-tune job %s is training, step %d (attempt %d of %d).", st.JobID, st.Step, st.Attempt, ftMaxAttempts(ft)))
	default:
		markReconciling(&st.Conditions, ft.Generation, ReasonJobPending, fmt.Sprintf(
			"Fine-tune job %s is waiting to start (attempt %d of %d).", st.JobID, st.Attempt, ftMaxAttempts(ft)))
	}
	return ctrl.Result{}, false, nil
}

// recordAttemptEnd writes the current attempt's terminal phase into its
// history entry, and on that transition only counts it and emits its Event,
// once the entry is written: later reconciles find the entry filled and do
// nothing, and a reconcile whose write was lost repeats the transition.
func (r *TogetherFineTuneReconciler) recordAttemptEnd(ft *togetherv1.TogetherFineTune, patcher *statusPatcher) {
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
		patcher.afterWrite(func() {
			fineTuneCompletions.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, corev1.EventTypeNormal, "Completed", "Follow",
				"Fine-tune job %s completed; output model %s.", jobID, model)
		})
	case togetherv1.FineTuneFailed:
		msg, step := ftErrMessage(st), ftErrStep(st)
		entry.Error = &togetherv1.JobError{Message: msg, Step: step}
		patcher.afterWrite(func() {
			fineTuneFailures.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, corev1.EventTypeWarning, ReasonJobFailed, "Follow",
				"Fine-tune job %s (attempt %d of %d) failed at step %d: %s", jobID, attempt, maxAttempts, step, msg)
		})
	case togetherv1.FineTuneCancelled:
		patcher.afterWrite(func() {
			fineTuneFailures.WithLabelValues(ft.Namespace).Inc()
			r.Recorder.Eventf(ft, nil, corev1.EventTypeWarning, ReasonJobCancelled, "Follow",
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
