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

// MigrationStrategy says when workloads are moved to the replacement model.
// +kubebuilder:validation:Enum=Immediate;BeforeSunset;Manual
type MigrationStrategy string

const (
	// MigrationImmediate migrates as soon as the resource exists.
	MigrationImmediate MigrationStrategy = "Immediate"
	// MigrationBeforeSunset migrates at sunsetDate minus leadTime.
	MigrationBeforeSunset MigrationStrategy = "BeforeSunset"
	// MigrationManual waits for the approval annotation.
	MigrationManual MigrationStrategy = "Manual"
)

// ApproveMigrationAnnotation, set to "true" on a Manual migration, approves it.
const ApproveMigrationAnnotation = "together.ai/approve-migration"

// ModelAnnotation on a workload names the model it uses, for applications
// that read the model from somewhere other than env or args.
const ModelAnnotation = "together.ai/model"

// MigrationPhase is where a migration is.
// +kubebuilder:validation:Enum=Pending;Scheduled;Migrating;Completed;Failed
type MigrationPhase string

const (
	MigrationPending   MigrationPhase = "Pending"
	MigrationScheduled MigrationPhase = "Scheduled"
	MigrationMigrating MigrationPhase = "Migrating"
	MigrationCompleted MigrationPhase = "Completed"
	MigrationFailed    MigrationPhase = "Failed"
)

// TogetherModelMigrationSpec names a deprecated model and its replacement.
// +kubebuilder:validation:XValidation:rule="self.strategy != 'BeforeSunset' || has(self.sunsetDate)",message="spec.sunsetDate is required when spec.strategy is BeforeSunset"
// +kubebuilder:validation:XValidation:rule="self.modelID != self.replacementModel",message="spec.replacementModel must differ from spec.modelID"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || (has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || (has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)",message="spec.selector must select something (matchLabels or matchExpressions); to migrate workloads without a selector, label them together.ai/migrate=true and leave spec.selector out"
type TogetherModelMigrationSpec struct {
	// ModelID is the deprecated model, a Together model ID (org/name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$`
	ModelID string `json:"modelID"`
	// ReplacementModel is the model workloads move to, a Together model ID
	// (org/name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._@+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$`
	ReplacementModel string `json:"replacementModel"`
	// EnvNames are the environment variables that may hold the model; only
	// they are rewritten. Empty means TOGETHER_MODEL, MODEL, MODEL_ID,
	// MODEL_NAME and LLM_MODEL. Besides env, a migration rewrites only
	// --model arguments (--model=ID, --model ID) and the together.ai/model
	// annotation; never a command.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +listType=set
	// +optional
	EnvNames []string `json:"envNames,omitempty"`
	// SunsetDate is the day (YYYY-MM-DD, UTC) after which the model stops serving.
	// +kubebuilder:validation:Format=date
	// +optional
	SunsetDate string `json:"sunsetDate,omitempty"`
	// Strategy: Immediate, BeforeSunset (at sunsetDate - leadTime), or Manual
	// (after the together.ai/approve-migration=true annotation).
	// +kubebuilder:default=Immediate
	// +optional
	Strategy MigrationStrategy `json:"strategy,omitempty"`
	// LeadTime before the sunset date at which BeforeSunset migrates.
	// +kubebuilder:default="168h"
	// +optional
	LeadTime *metav1.Duration `json:"leadTime,omitempty"`
	// DryRun lists what would change and changes nothing.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// Selector picks the Deployments and StatefulSets considered. Without
	// it, only workloads labelled together.ai/migrate=true are considered.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// SkipCatalogCheck turns off the check that replacementModel is in
	// Together's model list (GET /v1/models, under the namespace's
	// credentials) before anything is patched. That list is documented as
	// Together's open-source models: set this for a fine-tuned, uploaded or
	// dedicated-endpoint model that is not in it. Without the check the
	// namespace needs no Together credentials.
	// +optional
	SkipCatalogCheck bool `json:"skipCatalogCheck,omitempty"`
	// APIKeySecretRef names the Secret in this migration's namespace whose
	// key is the Together API key of the account whose model list
	// replacementModel is checked against (see APIKeySecretRef). Unset, the
	// namespace's default Secret together-api-key is used, or the
	// operator-wide key where an administrator allowed the namespace. Not
	// read when skipCatalogCheck is set.
	// +optional
	APIKeySecretRef *APIKeySecretRef `json:"apiKeySecretRef,omitempty"`
}

// MigrationTarget is one field of one workload that used the old model.
type MigrationTarget struct {
	// Kind of workload: Deployment or StatefulSet.
	Kind string `json:"kind"`
	// Name of the workload.
	Name string `json:"name"`
	// Container holding the field, empty for the workload annotation.
	// +optional
	Container string `json:"container,omitempty"`
	// Field path, e.g. spec.template.spec.containers[app].env[MODEL].
	Field string `json:"field"`
	// From is the value before.
	From string `json:"from"`
	// To is the value after.
	To string `json:"to"`
	// PatchedAt is when the change was written; empty in a dry run or when
	// the patch failed.
	// +optional
	PatchedAt *metav1.Time `json:"patchedAt,omitempty"`
	// Error says why the workload could not be patched.
	// +optional
	Error string `json:"error,omitempty"`
	// HeldBy names the TogetherFineTune that deployed its model into this
	// env var (the workload's together.ai/deployed-by annotation). A
	// migration leaves such a field alone: the fine-tune's model takes
	// precedence. It is listed so that nobody believes it moved.
	// +optional
	HeldBy string `json:"heldBy,omitempty"`
}

// TogetherModelMigrationStatus reports what was found and changed.
type TogetherModelMigrationStatus struct {
	// Phase of the migration.
	// +optional
	Phase MigrationPhase `json:"phase,omitempty"`
	// ScheduledTime is when a BeforeSunset migration runs.
	// +optional
	ScheduledTime *metav1.Time `json:"scheduledTime,omitempty"`
	// Targets found, with what was (or would be) changed.
	// +optional
	Targets []MigrationTarget `json:"targets,omitempty"`
	// Migrated counts targets patched.
	// +optional
	Migrated int32 `json:"migrated,omitempty"`
	// AtRisk counts workloads still on the old model after the sunset date.
	// +optional
	AtRisk int32 `json:"atRisk,omitempty"`
	// LastScanTime is when workloads were last scanned.
	// +optional
	LastScanTime *metav1.Time `json:"lastScanTime,omitempty"`
	// ProcessedEvents holds the IDs of the newest applied events (bounded).
	// +optional
	ProcessedEvents []string `json:"processedEvents,omitempty"`
	// LastEvent is the event that last changed this resource.
	// +optional
	LastEvent *EventRecord `json:"lastEvent,omitempty"`
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TogetherModelMigration moves workloads off a deprecated model.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tmm,categories=together
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.modelID`
// +kubebuilder:printcolumn:name="Replacement",type=string,JSONPath=`.spec.replacementModel`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Targets Moved",type=integer,JSONPath=`.status.migrated`,description="Model fields (env vars, --model args, annotations) patched, across all workloads."
// +kubebuilder:printcolumn:name="Sunset",type=string,JSONPath=`.spec.sunsetDate`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy`,priority=1
// +kubebuilder:printcolumn:name="At Risk",type=integer,JSONPath=`.status.atRisk`,priority=1,description="Workloads still on the old model after the sunset date."
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why Ready says what it says (AwaitingApproval: annotate together.ai/approve-migration=true)."
type TogetherModelMigration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TogetherModelMigrationSpec   `json:"spec,omitempty"`
	Status TogetherModelMigrationStatus `json:"status,omitempty"`
}

// TogetherModelMigrationList is a list of TogetherModelMigration.
// +kubebuilder:object:root=true
type TogetherModelMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TogetherModelMigration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TogetherModelMigration{}, &TogetherModelMigrationList{})
}
