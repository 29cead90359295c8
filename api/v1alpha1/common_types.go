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

package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// FinalizerName guards remote resources (jobs, endpoints, webhook
// registrations) so that deleting a custom resource also cleans them up.
const FinalizerName = "together.ai/finalizer"

// MaxProcessedEvents bounds status.processedEvents: enough to absorb the
// redelivery window of a sender, small enough to keep objects compact.
const MaxProcessedEvents = 64

// DeletionPolicy says what happens to remote work when its resource is deleted.
// +kubebuilder:validation:Enum=Cancel;Retain
type DeletionPolicy string

const (
	// DeletionPolicyCancel cancels remote work that is still running and
	// deletes what the operator created for the resource.
	DeletionPolicyCancel DeletionPolicy = "Cancel"
	// DeletionPolicyRetain leaves remote work and outputs in place.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// ConfigMapKeyRef selects one key of a ConfigMap in the resource's namespace.
type ConfigMapKeyRef struct {
	// Name of the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the ConfigMap's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// APIKeySecretRef names a key of a Secret in the resource's own namespace
// that holds a Together API key. A resource names one to act on a Together
// account of its choosing — teams sharing a namespace can each bring their
// own — and the operator reads the key when it needs it, never copying it.
// There is no namespace field on purpose: a resource can reach only keys of
// its own namespace, so whoever may create resources there cannot borrow
// another namespace's account. Anyone who may create the operator's
// resources in a namespace can name any Secret of it, even one they cannot
// read: keep keys that must not be shared in a namespace of their own.
type APIKeySecretRef struct {
	// Name of the Secret, in the resource's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key of the Secret's data holding the API key; api-key, as in the
	// namespace default Secret, unless set.
	// +kubebuilder:default=api-key
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// EventRecord names the last event that changed a resource, for people who
// want to know why status says what it says.
type EventRecord struct {
	// ID of the event (a pushed delivery's id or a poller's synthetic id).
	ID string `json:"id"`
	// Type of the event, such as fine_tune.checkpoint.
	Type string `json:"type"`
	// Time the event was applied.
	Time metav1.Time `json:"time"`
}

// SubmissionMarker is written to status before the operator asks Together to
// create paid work. If the process dies after the remote call succeeded but
// before the result was recorded, the marker's tag lets the next reconcile find
// the job it created instead of creating a second one.
type SubmissionMarker struct {
	// Attempt this submission belongs to (1-based).
	Attempt int32 `json:"attempt"`
	// Tag is derived from the resource's namespace, UID and attempt (see
	// SubmissionTag) and is carried by the remote job (in the fine-tune
	// suffix, or the batch input file name). A marker written by an earlier
	// version holds a tag without the namespace; it is still looked for.
	Tag string `json:"tag"`
	// StartedAt is when the submission began.
	StartedAt metav1.Time `json:"startedAt"`
}
