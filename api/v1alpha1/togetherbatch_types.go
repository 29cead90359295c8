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

// BatchPhase is where a batch is in its life.
// +kubebuilder:validation:Enum=Pending;Validating;InProgress;Succeeded;Failed;Expired;Cancelled
type BatchPhase string

const (
	BatchPending    BatchPhase = "Pending"
	BatchValidating BatchPhase = "Validating"
	BatchInProgress BatchPhase = "InProgress"
	BatchSucceeded  BatchPhase = "Succeeded"
	BatchFailed     BatchPhase = "Failed"
	BatchExpired    BatchPhase = "Expired"
	BatchCancelled  BatchPhase = "Cancelled"
)

// IsTerminal reports whether no further transition of the same batch can follow.
func (p BatchPhase) IsTerminal() bool {
	return p == BatchSucceeded || p == BatchFailed || p == BatchExpired || p == BatchCancelled
}

// BatchInput is the requests of a batch: an uploaded file or a ConfigMap key.
// +kubebuilder:validation:XValidation:rule="has(self.fileID) != has(self.configMapRef)",message="set exactly one of spec.input.fileID or spec.input.configMapRef"
type BatchInput struct {
	// FileID of an uploaded Together file (purpose batch-api).
	// +kubebuilder:validation:MinLength=1
	// +optional
	FileID string `json:"fileID,omitempty"`
	// ConfigMapRef is a ConfigMap key holding JSONL requests, which the
	// operator validates and uploads.
	// +optional
	ConfigMapRef *ConfigMapKeyRef `json:"configMapRef,omitempty"`
}

// ConfigMapOutput writes the output to a ConfigMap (up to about 1 MiB).
type ConfigMapOutput struct {
	// Name of the ConfigMap to create.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// PVCOutput writes the output to a file on a PersistentVolumeClaim, through a
// Job that runs the operator's image in fetch mode.
type PVCOutput struct {
	// ClaimName of the PersistentVolumeClaim.
	// +kubebuilder:validation:MinLength=1
	ClaimName string `json:"claimName"`
	// Path of the file within the volume.
	// +kubebuilder:default=output.jsonl
	// +kubebuilder:validation:Pattern=`^[^/].*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..')",message="spec.output.persistentVolumeClaim.path must stay inside the volume (no '..')"
	// +optional
	Path string `json:"path,omitempty"`
	// Deprecated: the fetch Job reads the key of the batch's own account,
	// the Secret spec.apiKeySecretRef names or the namespace's
	// together-api-key (the operator only references it, never copies it).
	// When set, it must name that same Secret and key, or the output stalls
	// with reason OutputKeyMismatch; remove it, or move it to
	// spec.apiKeySecretRef.
	// +optional
	APIKeySecretRef *APIKeySecretRef `json:"apiKeySecretRef,omitempty"`
}

// BatchOutput says where the results go.
// +kubebuilder:validation:XValidation:rule="has(self.configMap) != has(self.persistentVolumeClaim)",message="set exactly one of spec.output.configMap or spec.output.persistentVolumeClaim"
type BatchOutput struct {
	// ConfigMap output for small results.
	// +optional
	ConfigMap *ConfigMapOutput `json:"configMap,omitempty"`
	// PersistentVolumeClaim output for results of any size.
	// +optional
	PersistentVolumeClaim *PVCOutput `json:"persistentVolumeClaim,omitempty"`
}

// TogetherBatchSpec is a batch to submit or adopt and where its output goes.
// +kubebuilder:validation:XValidation:rule="has(self.batchID) != has(self.input)",message="set exactly one of spec.batchID (adopt an existing batch) or spec.input (submit a new batch)"
// +kubebuilder:validation:XValidation:rule="!has(self.input) || has(self.model)",message="spec.model is required when submitting a batch from spec.input"
// +kubebuilder:validation:XValidation:rule="has(self.batchID) == has(oldSelf.batchID) && (!has(self.batchID) || self.batchID == oldSelf.batchID)",message="spec.batchID cannot be changed; create a new TogetherBatch to follow another batch"
// +kubebuilder:validation:XValidation:rule="!has(self.batchID) || !has(self.deletionPolicy) || self.deletionPolicy != 'Cancel'",message="spec.deletionPolicy Cancel cannot apply to an adopted batch (spec.batchID): the operator never cancels a batch it did not submit. Remove spec.deletionPolicy (adopted work is retained) or set Retain"
type TogetherBatchSpec struct {
	// BatchID of an existing Together batch to follow.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	BatchID string `json:"batchID,omitempty"`
	// Input requests of a new batch.
	// +optional
	Input *BatchInput `json:"input,omitempty"`
	// Model to run the requests on.
	// +optional
	Model string `json:"model,omitempty"`
	// Endpoint the requests are for: the endpoints Together's SDKs accept
	// for a batch (together-go BatchNewParamsEndpoint); /v1/completions is
	// not one of them.
	// +kubebuilder:default=/v1/chat/completions
	// +kubebuilder:validation:Enum=/v1/chat/completions;/v1/audio/transcriptions;/v1/audio/translations
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// CompletionWindow of the batch; Together accepts 24h.
	// +kubebuilder:default="24h"
	// +optional
	CompletionWindow string `json:"completionWindow,omitempty"`
	// MaxRequestsPerBatch splits a large input into several batches, each
	// with at most this many requests; their outputs are merged in input order.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50000
	// +optional
	MaxRequestsPerBatch int32 `json:"maxRequestsPerBatch,omitempty"`
	// Output says where to write the results.
	// +optional
	Output *BatchOutput `json:"output,omitempty"`
	// DeletionPolicy says what deleting the resource does. Cancel cancels
	// running batches this resource submitted and lets its output ConfigMap
	// be garbage-collected with it; Retain keeps both. Unset means Cancel
	// for a batch this resource submits (spec.input) and Retain for an
	// adopted one (spec.batchID): status.deletionPolicy shows which
	// applies. An adopted batch is never cancelled, so Cancel with
	// spec.batchID is refused.
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// PollInterval overrides the manager's poll interval for this batch.
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`
	// APIKeySecretRef names the Secret in this resource's namespace whose
	// key is the Together API key the resource acts with (see
	// APIKeySecretRef). Unset, the namespace's default Secret
	// together-api-key is used, or the operator-wide key where an
	// administrator allowed the namespace. Pointing it at another account's
	// key while work runs loses sight of that work: Together answers an
	// account's IDs as unknown to every other account.
	// +optional
	APIKeySecretRef *APIKeySecretRef `json:"apiKeySecretRef,omitempty"`
}

// BatchPart is one Together batch of a split input.
type BatchPart struct {
	// Index of the part, in input order.
	Index int32 `json:"index"`
	// BatchID of the part.
	// +optional
	BatchID string `json:"batchID,omitempty"`
	// InputFileID uploaded for the part.
	// +optional
	InputFileID string `json:"inputFileID,omitempty"`
	// Requests in the part.
	Requests int32 `json:"requests"`
	// Phase of the part.
	// +optional
	Phase BatchPhase `json:"phase,omitempty"`
	// Progress of the part, 0 to 100.
	// +optional
	Progress int32 `json:"progress,omitempty"`
	// OutputFileID of the part.
	// +optional
	OutputFileID string `json:"outputFileID,omitempty"`
	// ErrorFileID of the part.
	// +optional
	ErrorFileID string `json:"errorFileID,omitempty"`
	// TotalTokens of the part.
	// +optional
	TotalTokens int64 `json:"totalTokens,omitempty"`
}

// BatchUsage is a sum of the response.body.usage objects of a batch's
// output lines.
type BatchUsage struct {
	// PromptTokens is the sum of prompt_tokens.
	PromptTokens int64 `json:"promptTokens"`
	// CompletionTokens is the sum of completion_tokens.
	CompletionTokens int64 `json:"completionTokens"`
	// TotalTokens is the sum of total_tokens.
	TotalTokens int64 `json:"totalTokens"`
	// UncountedLines is the number of output lines over 1 MiB, whose usage
	// the operator did not read: the sums miss their tokens.
	// +optional
	UncountedLines int64 `json:"uncountedLines,omitempty"`
}

// OutputStatus reports what was written and lets a person verify it.
type OutputStatus struct {
	// Location written, e.g. configmap/NAME or pvc/CLAIM/PATH.
	Location string `json:"location"`
	// Bytes written.
	Bytes int64 `json:"bytes"`
	// SHA256 of what was written, hex.
	SHA256 string `json:"sha256"`
	// Records is the number of output lines (successful requests).
	Records int64 `json:"records"`
	// FailedRecords is the number of lines in the error file.
	// +optional
	FailedRecords int64 `json:"failedRecords,omitempty"`
}

// TogetherBatchStatus is what the operator knows about the batch.
type TogetherBatchStatus struct {
	// DeletionPolicy is the policy that applies when the resource is
	// deleted: spec.deletionPolicy, or the default for how the batch came
	// to be (Cancel when submitted, Retain when adopted).
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// CleanupAttempts counts failed attempts at the remote cleanup that
	// deletion runs; after MaxCleanupAttempts the finalizer lets go.
	// +optional
	CleanupAttempts int32 `json:"cleanupAttempts,omitempty"`
	// BatchID of the batch (the first part's, when split).
	// +optional
	BatchID string `json:"batchID,omitempty"`
	// Phase of the batch.
	// +optional
	Phase BatchPhase `json:"phase,omitempty"`
	// Progress, 0 to 100.
	// +optional
	Progress int32 `json:"progress,omitempty"`
	// TotalTokens is the total a pushed batch.done reported (the project's
	// own push contract). Together's batch objects carry no token counts:
	// usage holds what the output file says.
	// +optional
	TotalTokens int64 `json:"totalTokens,omitempty"`
	// Usage is the batch's token use, added up once from the usage of
	// every line of its output file(s) when the output is read.
	// +optional
	Usage *BatchUsage `json:"usage,omitempty"`
	// OutputFileID of the results.
	// +optional
	OutputFileID string `json:"outputFileID,omitempty"`
	// ErrorFileID of the failed requests.
	// +optional
	ErrorFileID string `json:"errorFileID,omitempty"`
	// OutputURL from a batch.done event, if given.
	// +optional
	OutputURL string `json:"outputURL,omitempty"`
	// Error reported by Together for a failed batch.
	// +optional
	Error string `json:"error,omitempty"`
	// Parts of a split batch.
	// +optional
	Parts []BatchPart `json:"parts,omitempty"`
	// Output written.
	// +optional
	Output *OutputStatus `json:"output,omitempty"`
	// AccountedTokens is how many of totalTokens have been added to the
	// billing metric. Tokens that arrive after the batch ended (a later
	// event for the same ending) add only the difference, so each token is
	// counted once.
	// +optional
	AccountedTokens int64 `json:"accountedTokens,omitempty"`
	// TokensAccounted was set by operator versions that recorded no amount,
	// once totalTokens had been added to the billing metric; such a batch
	// is taken as fully counted. This version no longer sets it.
	// +optional
	TokensAccounted bool `json:"tokensAccounted,omitempty"`
	// FetchAttempts counts fetch Jobs started for a PVC output.
	// +optional
	FetchAttempts int32 `json:"fetchAttempts,omitempty"`
	// Submission is set while a batch creation may be in flight.
	// +optional
	Submission *SubmissionMarker `json:"submission,omitempty"`
	// ProcessedEvents holds the IDs of the newest applied events (bounded).
	// +optional
	ProcessedEvents []string `json:"processedEvents,omitempty"`
	// LastEvent is the event that last changed this status.
	// +optional
	LastEvent *EventRecord `json:"lastEvent,omitempty"`
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, OutputReady, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TogetherBatch follows a Together batch inference job and fetches its output.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tbatch,categories=together
// +kubebuilder:printcolumn:name="Batch",type=string,JSONPath=`.status.batchID`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Progress %",type=integer,JSONPath=`.status.progress`,description="Percent of requests done, 0 to 100."
// +kubebuilder:printcolumn:name="Tokens",type=integer,JSONPath=`.status.usage.totalTokens`,description="Tokens used, summed from the usage of the output lines."
// +kubebuilder:printcolumn:name="Output",type=string,JSONPath=`.status.output.location`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`,priority=1
// +kubebuilder:printcolumn:name="Records",type=integer,JSONPath=`.status.output.records`,priority=1,description="Output lines written (successful requests)."
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.output.failedRecords`,priority=1,description="Lines of the error file (failed requests)."
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why Ready says what it says."
// +kubebuilder:printcolumn:name="On Delete",type=string,JSONPath=`.status.deletionPolicy`,priority=1,description="What deleting the resource does: Cancel (submitted batches) or Retain (adopted ones, or as set)."
type TogetherBatch struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TogetherBatchSpec   `json:"spec,omitempty"`
	Status TogetherBatchStatus `json:"status,omitempty"`
}

// TogetherBatchList is a list of TogetherBatch.
// +kubebuilder:object:root=true
type TogetherBatchList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TogetherBatch `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TogetherBatch{}, &TogetherBatchList{})
}
