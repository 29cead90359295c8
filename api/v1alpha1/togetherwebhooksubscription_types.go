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

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EventType names one kind of event of the push contract this project defines.
// Together's public API does not push events today; the poller synthesizes the
// same types from API state.
// +kubebuilder:validation:Enum=fine_tune.completed;fine_tune.failed;fine_tune.checkpoint;batch.done;model.deprecated
type EventType string

const (
	// EventFineTuneCompleted reports a fine-tune that finished and produced a model.
	EventFineTuneCompleted EventType = "fine_tune.completed"
	// EventFineTuneFailed reports a fine-tune that ended in an error.
	EventFineTuneFailed EventType = "fine_tune.failed"
	// EventFineTuneCheckpoint reports a checkpoint saved during training.
	EventFineTuneCheckpoint EventType = "fine_tune.checkpoint"
	// EventBatchDone reports a batch that reached a terminal state.
	EventBatchDone EventType = "batch.done"
	// EventModelDeprecated reports a model scheduled for removal.
	EventModelDeprecated EventType = "model.deprecated"
)

// AllEventTypes lists every event type in the push contract.
var AllEventTypes = []EventType{
	EventFineTuneCompleted, EventFineTuneFailed, EventFineTuneCheckpoint, EventBatchDone, EventModelDeprecated,
}

// WebhookSecretRef points at the Secret holding the HMAC signing secret.
// To rotate without dropping deliveries, copy the current value to
// previousKey, write the new value to key, update the sender, then remove
// previousKey: both are accepted while both exist.
type WebhookSecretRef struct {
	// Name of the Secret in the subscription's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key holding the current secret.
	// +kubebuilder:default=secret
	// +optional
	Key string `json:"key,omitempty"`
	// PreviousKey holds the secret being rotated out, if present.
	// +kubebuilder:default=previousSecret
	// +optional
	PreviousKey string `json:"previousKey,omitempty"`
}

// SignatureScheme names one way a push may be signed. Both are part of the
// push contract this project defines (pkg/push), not Together's.
// +kubebuilder:validation:Enum=StandardWebhooks;HexHMAC
type SignatureScheme string

const (
	// SignatureStandardWebhooks is the Standard Webhooks form: webhook-id,
	// webhook-timestamp and webhook-signature, an HMAC over id, timestamp and
	// body. The timestamp bounds how long a captured delivery can be replayed,
	// and the receiver remembers each id for that long.
	SignatureStandardWebhooks SignatureScheme = "StandardWebhooks"
	// SignatureHexHMAC is X-Together-Signature, a hex HMAC of the body alone.
	// It carries no timestamp, so a captured delivery can be replayed at any
	// time: accept it only for a sender that cannot sign the Standard way.
	SignatureHexHMAC SignatureScheme = "HexHMAC"
)

// ModelReplacement declares which model replaces a deprecated one, for
// deprecations that arrive without a replacement (the model catalogue marks a
// model deprecated but does not name its successor).
type ModelReplacement struct {
	// ModelID is the deprecated model, a Together model ID (org/name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$`
	ModelID string `json:"modelID"`
	// ReplacementModel is the model workloads move to, a Together model ID.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$`
	ReplacementModel string `json:"replacementModel"`
	// SunsetDate (YYYY-MM-DD) is when the deprecated model stops serving,
	// as Together announced it: the catalogue's deprecation status names no
	// date, so a migration with strategy BeforeSunset needs this one.
	// +kubebuilder:validation:Format=date
	// +optional
	SunsetDate string `json:"sunsetDate,omitempty"`
	// SkipCatalogCheck is given to the migration created for this model
	// while its replacement is this entry's replacementModel: set it when
	// the replacement is a fine-tuned or private model that Together's
	// public model list does not include (see TogetherModelMigration
	// spec.skipCatalogCheck).
	// +optional
	SkipCatalogCheck bool `json:"skipCatalogCheck,omitempty"`
}

// MigrationTemplate holds the settings given to TogetherModelMigrations that
// this subscription creates from model.deprecated events.
type MigrationTemplate struct {
	// Strategy for created migrations. Manual by default: a signed
	// deprecation moves workloads only after a person approves, unless the
	// subscription's owner chose otherwise here.
	// +kubebuilder:default=Manual
	// +optional
	Strategy MigrationStrategy `json:"strategy,omitempty"`
	// LeadTime before the sunset date at which BeforeSunset migrations run.
	// +optional
	LeadTime *metav1.Duration `json:"leadTime,omitempty"`
	// DryRun makes created migrations report without changing workloads.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// TogetherWebhookSubscriptionSpec defines which events are accepted and how
// they are verified.
// +kubebuilder:validation:XValidation:rule="!has(self.register) || !self.register || (has(self.url) && size(self.url) > 0)",message="spec.url is required when spec.register is true: the remote API needs to know where to deliver"
type TogetherWebhookSubscriptionSpec struct {
	// Events this subscription accepts. Empty accepts all five types.
	// +listType=set
	// +optional
	Events []EventType `json:"events,omitempty"`
	// SecretRef names the Secret holding the HMAC signing secret.
	SecretRef WebhookSecretRef `json:"secretRef"`
	// AcceptedSignatures lists the signature schemes this subscription
	// accepts. The default, and the only replay-safe choice, is
	// StandardWebhooks; add HexHMAC only for a sender that cannot send the
	// timestamped form. A delivery that carries Standard Webhooks headers is
	// verified only that way, whatever else it carries.
	// +kubebuilder:default={StandardWebhooks}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	AcceptedSignatures []SignatureScheme `json:"acceptedSignatures,omitempty"`
	// URL is the public address a sender (Together, or a relay) posts to; it
	// should route to this subscription's status.webhookPath on the manager.
	// +kubebuilder:validation:Pattern=`^https?://`
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`
	// Register asks the remote API to create the subscription. Together's
	// public API has no webhooks endpoint today; the operator then reports
	// Registered=False with reason NotSupported and relies on polling.
	// +optional
	Register bool `json:"register,omitempty"`
	// AdoptUnmatched creates a resource for an event whose job or batch no
	// resource tracks yet, instead of acknowledging and ignoring it — only
	// when the work, read with this subscription's account, carries this
	// namespace's ownership tag (the operator created it for a resource of
	// this namespace; see NamespaceTagIn). Other work is answered unmatched.
	// The check costs one or two Together reads per unmatched delivery.
	// +optional
	AdoptUnmatched bool `json:"adoptUnmatched,omitempty"`
	// ModelReplacements maps deprecated models to their replacements, used
	// when a deprecation does not name one (as Together's catalogue does not).
	// +listType=map
	// +listMapKey=modelID
	// +optional
	ModelReplacements []ModelReplacement `json:"modelReplacements,omitempty"`
	// Migration is the template for migrations created from deprecations.
	// +optional
	Migration *MigrationTemplate `json:"migration,omitempty"`
	// APIKeySecretRef names the Secret in this subscription's namespace
	// whose key is the Together API key it acts with (see APIKeySecretRef):
	// the account a registration is made on, whose pushes it expects. Only
	// resources on the same account take events pushed through it, and a
	// resource adoptUnmatched creates names the same Secret. Unset, the
	// namespace's default Secret together-api-key is used, or the
	// operator-wide key where an administrator allowed the namespace.
	// (SecretRef, beside it, is the signing secret of pushes.)
	// +optional
	APIKeySecretRef *APIKeySecretRef `json:"apiKeySecretRef,omitempty"`
}

// Accepts reports whether the subscription accepts signature scheme s. An
// empty list (an object that bypassed defaulting) accepts StandardWebhooks
// only.
func (s *TogetherWebhookSubscriptionSpec) Accepts(scheme SignatureScheme) bool {
	if len(s.AcceptedSignatures) == 0 {
		return scheme == SignatureStandardWebhooks
	}
	for _, a := range s.AcceptedSignatures {
		if a == scheme {
			return true
		}
	}
	return false
}

// TogetherWebhookSubscriptionStatus reports where the subscription is served
// and what it has received.
type TogetherWebhookSubscriptionStatus struct {
	// CleanupAttempts counts failed attempts at the remote cleanup that
	// deletion runs; after MaxCleanupAttempts the finalizer lets go.
	// +optional
	CleanupAttempts int32 `json:"cleanupAttempts,omitempty"`
	// WebhookPath is the path on the manager's events endpoint that serves
	// this subscription.
	// +optional
	WebhookPath string `json:"webhookPath,omitempty"`
	// RemoteID is the ID of the registration on the remote API, if any.
	// +optional
	RemoteID string `json:"remoteID,omitempty"`
	// RegistrationHash identifies what was last registered remotely (URL,
	// events and the Secret's resourceVersion), so that a change of any of
	// them registers again. It is not derived from the secret's value.
	// +optional
	RegistrationHash string `json:"registrationHash,omitempty"`
	// LastEventTime is when an event was last accepted for this subscription.
	// +optional
	LastEventTime *metav1.Time `json:"lastEventTime,omitempty"`
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Registered, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TogetherWebhookSubscription accepts signed event pushes at a path of the
// manager's events endpoint.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tws,categories=together
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.status.webhookPath`
// +kubebuilder:printcolumn:name="Registered",type=string,JSONPath=`.status.conditions[?(@.type=="Registered")].reason`
// +kubebuilder:printcolumn:name="Last Push",type=date,JSONPath=`.status.lastEventTime`,description="How long ago a pushed event was last accepted (empty: none yet; polled events do not count)."
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why Ready says what it says."
// +kubebuilder:printcolumn:name="Adopt Unmatched",type=boolean,JSONPath=`.spec.adoptUnmatched`,priority=1,description="Whether an event about a job no resource tracks creates one (otherwise it is answered 202 unmatched)."
type TogetherWebhookSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TogetherWebhookSubscriptionSpec   `json:"spec,omitempty"`
	Status TogetherWebhookSubscriptionStatus `json:"status,omitempty"`
}

// TogetherWebhookSubscriptionList is a list of TogetherWebhookSubscription.
// +kubebuilder:object:root=true
type TogetherWebhookSubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TogetherWebhookSubscription `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TogetherWebhookSubscription{}, &TogetherWebhookSubscriptionList{})
}
