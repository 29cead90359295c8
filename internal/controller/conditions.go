package controller

import (
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Condition reasons shared by the reconcilers. Each names a situation a person
// can act on; the condition's message says what to do.
const (
	// ReasonSucceeded means the resource reached the state its spec asks for.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing means the operator is working towards the desired state.
	ReasonProgressing = "Progressing"
	// ReasonUnauthorized means Together rejected the API key.
	ReasonUnauthorized = "Unauthorized"
	// ReasonAPIError means Together answered with an error the operator retries.
	ReasonAPIError = "APIError"
	// ReasonSecretNotFound means a referenced Secret or key is missing.
	ReasonSecretNotFound = "SecretNotFound"
)

// setReady records Ready together with the kstatus companions: Reconciling and
// Stalled exist only while True, so they are removed whenever Ready is True.
func setReady(conds *[]metav1.Condition, generation int64, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: togetherv1.ReadyCondition, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
	if status == metav1.ConditionTrue {
		apimeta.RemoveStatusCondition(conds, togetherv1.ReconcilingCondition)
		apimeta.RemoveStatusCondition(conds, togetherv1.StalledCondition)
	}
}

// markReconciling sets Reconciling=True and Ready=False (Unknown would hide
// that work is in progress from kubectl wait), and clears Stalled.
func markReconciling(conds *[]metav1.Condition, generation int64, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: togetherv1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: generation,
	})
	apimeta.RemoveStatusCondition(conds, togetherv1.StalledCondition)
	setReady(conds, generation, metav1.ConditionFalse, reason, message)
}

// markStalled sets Stalled=True and Ready=False and clears Reconciling: the
// operator will not make progress until a person changes something.
func markStalled(conds *[]metav1.Condition, generation int64, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: togetherv1.StalledCondition, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: generation,
	})
	apimeta.RemoveStatusCondition(conds, togetherv1.ReconcilingCondition)
	setReady(conds, generation, metav1.ConditionFalse, reason, message)
}

// setCondition records a condition other than the kstatus three.
func setCondition(conds *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// EventRecorder is the events.k8s.io recorder the reconcilers emit Kubernetes
// Events through.
type EventRecorder = events.EventRecorder
