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
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FineTunePhase is where a fine-tune job is in its life.
// +kubebuilder:validation:Enum=Pending;Queued;Running;Succeeded;Failed;Cancelled
type FineTunePhase string

const (
	FineTunePending   FineTunePhase = "Pending"
	FineTuneQueued    FineTunePhase = "Queued"
	FineTuneRunning   FineTunePhase = "Running"
	FineTuneSucceeded FineTunePhase = "Succeeded"
	FineTuneFailed    FineTunePhase = "Failed"
	FineTuneCancelled FineTunePhase = "Cancelled"
)

// IsTerminal reports whether no further transition of the same job can follow.
func (p FineTunePhase) IsTerminal() bool {
	return p == FineTuneSucceeded || p == FineTuneFailed || p == FineTuneCancelled
}

// MaxCheckpoints bounds status.checkpoints once a job has reported its
// final step; the newest are kept. Until then the list may hold a few more
// (see internal/lattice), so that checkpoints the final step rules out do
// not push out ones it keeps.
const MaxCheckpoints = 20

// LoRASpec selects LoRA training and its parameters. Omit lora (or set
// enabled: false) for full fine-tuning.
type LoRASpec struct {
	// Enabled turns LoRA on.
	// +kubebuilder:default=true
	// +optional
	Enabled bool `json:"enabled"`
	// Rank (lora_r).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=8
	// +optional
	Rank int32 `json:"rank,omitempty"`
	// Alpha (lora_alpha).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=16
	// +optional
	Alpha int32 `json:"alpha,omitempty"`
	// Dropout (lora_dropout), between 0 and 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	// +optional
	Dropout *float64 `json:"dropout,omitempty"`
	// TrainableModules (lora_trainable_modules), e.g. all-linear.
	// +optional
	TrainableModules string `json:"trainableModules,omitempty"`
}

// TrainingSpec describes a fine-tune job to submit.
// +kubebuilder:validation:XValidation:rule="has(self.trainingFile) != has(self.trainingData)",message="set exactly one of spec.training.trainingFile (a Together file ID) or spec.training.trainingData (a ConfigMap key holding JSONL)"
// +kubebuilder:validation:XValidation:rule="!(has(self.validationFile) && has(self.validationData))",message="set at most one of spec.training.validationFile (a Together file ID) or spec.training.validationData (a ConfigMap key holding JSONL)"
type TrainingSpec struct {
	// Model is the base model to fine-tune.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model"`
	// TrainingFile is the ID of an uploaded Together file.
	// +kubebuilder:validation:MinLength=1
	// +optional
	TrainingFile string `json:"trainingFile,omitempty"`
	// TrainingData is a ConfigMap key holding JSONL training data, which the
	// operator validates and uploads.
	// +optional
	TrainingData *ConfigMapKeyRef `json:"trainingData,omitempty"`
	// ValidationFile is the ID of an uploaded Together file for evaluation.
	// Evaluation (and with it status.evalLoss) needs a validation set and
	// nEvals > 0.
	// +optional
	ValidationFile string `json:"validationFile,omitempty"`
	// ValidationData is a ConfigMap key holding JSONL evaluation data,
	// validated and uploaded like trainingData.
	// +optional
	ValidationData *ConfigMapKeyRef `json:"validationData,omitempty"`
	// NEpochs is the number of epochs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	NEpochs int32 `json:"nEpochs,omitempty"`
	// NCheckpoints is the number of checkpoints saved during training.
	// +kubebuilder:validation:Minimum=1
	// +optional
	NCheckpoints int32 `json:"nCheckpoints,omitempty"`
	// NEvals is the number of evaluations on the validation set.
	// +kubebuilder:validation:Minimum=0
	// +optional
	NEvals int32 `json:"nEvals,omitempty"`
	// LearningRate; Together's default is 1e-5.
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	// +optional
	LearningRate *float64 `json:"learningRate,omitempty"`
	// BatchSize; omitted means the largest the model allows ("max").
	// +kubebuilder:validation:Minimum=1
	// +optional
	BatchSize int32 `json:"batchSize,omitempty"`
	// WarmupRatio of the learning-rate schedule.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	// +optional
	WarmupRatio *float64 `json:"warmupRatio,omitempty"`
	// LoRA parameters; omitted means LoRA with Together's defaults.
	// +optional
	LoRA *LoRASpec `json:"lora,omitempty"`
	// Suffix is added to the output model's name. The operator appends a short
	// tag of its own so it can recognise the job after a crash.
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9-]*$`
	// +optional
	Suffix string `json:"suffix,omitempty"`
}

// DeploymentTarget names a Deployment whose container env var receives the
// output model.
type DeploymentTarget struct {
	// Name of the Deployment in the fine-tune's namespace.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Container to patch; empty means the first container.
	// +optional
	Container string `json:"container,omitempty"`
	// Env is the environment variable that holds the model name.
	// +kubebuilder:default=TOGETHER_MODEL
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +optional
	Env string `json:"env,omitempty"`
}

// DeployedByAnnotationPrefix starts the annotation a fine-tune sets on a
// Deployment when it deploys its model into one container's env var; the
// value is the fine-tune's name (same namespace). It records who holds that
// env var, so that a second fine-tune is refused (or takes over only with
// spec.deploy.takeOver) and a model migration leaves the env var alone.
const DeployedByAnnotationPrefix = "together.ai/deployed-by."

// DeployedByAnnotation is the key of the annotation that names the
// fine-tune holding env var env of container: <prefix><container>.<env>, or
// <prefix><hash> when that is not a valid annotation key.
func DeployedByAnnotation(container, env string) string {
	key := DeployedByAnnotationPrefix + container + "." + env
	if len(validation.IsQualifiedName(key)) == 0 {
		return key
	}
	h := sha256.Sum256([]byte(container + "/" + env))
	return DeployedByAnnotationPrefix + hex.EncodeToString(h[:])[:12]
}

// EndpointSpec asks for a Together dedicated endpoint serving the output
// model through the v2 Dedicated Model Inference API (v1 endpoint creation
// is retired): an endpoint, one deployment of the fine-tuned model on a
// config revision for the hardware asked for, with autoscaling bounds, and
// that deployment in the endpoint's traffic split.
// +kubebuilder:validation:XValidation:rule="self.maxReplicas >= self.minReplicas",message="spec.deploy.endpoint.maxReplicas must be at least minReplicas"
// +kubebuilder:validation:XValidation:rule="has(self.hardware) || has(self.config)",message="set spec.deploy.endpoint.hardware (an instance type such as 1xnvidia-h100-80gb) or spec.deploy.endpoint.config (a config revision cr_... or projects/{p}/configs/{cr})"
type EndpointSpec struct {
	// Hardware is the instance type to run on, <GPU count>x<accelerator
	// type>, e.g. 1xnvidia-h100-80gb or 2xnvidia-h100-80gb. The operator
	// picks the model's config revision whose accelerator_type and
	// accelerator_count selectors match. (v1 hardware IDs such as
	// 1x_nvidia_a100_80gb_sxm are not v2 instance types and are refused.)
	// +kubebuilder:validation:Pattern=`^[1-9][0-9]{0,2}x[a-z0-9]([a-z0-9-]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Hardware string `json:"hardware,omitempty"`
	// Optimization narrows the config choice to one serving profile; empty
	// prefers balanced when several configs match the hardware.
	// +kubebuilder:validation:Enum=balanced;throughput;latency
	// +optional
	Optimization string `json:"optimization,omitempty"`
	// Config pins a config revision instead of choosing one by hardware:
	// its ID (cr_...) or resource name (projects/{project}/configs/{cr}). It
	// must be one Together lists as compatible with the fine-tuned model.
	// +kubebuilder:validation:Pattern=`^(cr_[A-Za-z0-9_-]+|projects/[^/]+/configs/[^/]+)$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Config string `json:"config,omitempty"`
	// MinReplicas of the autoscaler; at least 1 (Together refuses 0 with a
	// positive maximum, and 0/0 means stopped).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	MinReplicas int32 `json:"minReplicas"`
	// MaxReplicas of the autoscaler.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	MaxReplicas int32 `json:"maxReplicas"`
	// NamePrefix starts the endpoint's name (default: the resource's name,
	// shortened). The operator appends a tag derived from the resource's
	// UID, so the endpoint it creates is recognisable as its own after a
	// crash; the inference name is <project slug>/<prefix>-<tag>.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	NamePrefix string `json:"namePrefix,omitempty"`
}

// Accelerator splits Hardware into its GPU count and accelerator type, the
// values of a config revision's accelerator_count and accelerator_type
// selectors; ok is false when Hardware is empty or malformed.
func (e *EndpointSpec) Accelerator() (count, acceleratorType string, ok bool) {
	count, acceleratorType, ok = strings.Cut(e.Hardware, "x")
	if !ok || count == "" || acceleratorType == "" {
		return "", "", false
	}
	for _, c := range count {
		if c < '0' || c > '9' {
			return "", "", false
		}
	}
	return count, acceleratorType, true
}

// TargetNotReadyPolicy says whether a fine-tune is submitted while a deploy
// target is not ready.
// +kubebuilder:validation:Enum=Wait;Submit
type TargetNotReadyPolicy string

const (
	// TargetNotReadyWait submits nothing until every deploy target is
	// ready: training is paid for only when its model has somewhere to go.
	TargetNotReadyWait TargetNotReadyPolicy = "Wait"
	// TargetNotReadySubmit trains anyway and reports the target; the model
	// is deployed once the target becomes ready.
	TargetNotReadySubmit TargetNotReadyPolicy = "Submit"
)

// DeploySpec says what to do with a successful fine-tune's model.
type DeploySpec struct {
	// TakeOver lets this fine-tune deploy into a Deployment env var that
	// another fine-tune holds (the together.ai/deployed-by.<container>.<env>
	// annotation on the Deployment names the holder). Without it the
	// fine-tune is refused with DeployTargetReady=False, reason
	// DeployTargetHeld, naming the holder, and nothing is submitted (see
	// onTargetNotReady). With it, this fine-tune's model replaces the
	// holder's once, when this attempt succeeds, and the holder reports
	// Deployed=False, reason DeployTargetLost. A model is deployed once per
	// attempt, so two fine-tunes that both set takeOver do not fight.
	// +optional
	TakeOver bool `json:"takeOver,omitempty"`
	// OnTargetNotReady says what happens when a deploy target is not ready
	// before a job is submitted (the first attempt or a retry): the
	// Deployment or container is missing,
	// the env var takes its value from a source, or another fine-tune holds
	// it. Wait (default) uploads and submits nothing, with
	// DeployTargetReady=False and a Warning Event, and submits as soon as
	// the target is ready; Submit trains anyway and deploys once the target
	// is ready. Adopted jobs (spec.jobID) are only reported.
	// +kubebuilder:default=Wait
	// +optional
	OnTargetNotReady TargetNotReadyPolicy `json:"onTargetNotReady,omitempty"`
	// MaxEvalLoss is a quality gate: the model is not deployed when its
	// evaluation loss is higher or unknown.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxEvalLoss *float64 `json:"maxEvalLoss,omitempty"`
	// Deployment to patch with the model name.
	// +optional
	Deployment *DeploymentTarget `json:"deployment,omitempty"`
	// Endpoint to create for the model.
	// +optional
	Endpoint *EndpointSpec `json:"endpoint,omitempty"`
}

// RetrySpec resubmits a failed fine-tune with adjusted parameters.
type RetrySpec struct {
	// MaxAttempts in all, the first included.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +kubebuilder:default=1
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// LearningRateFactor multiplies the learning rate for each new attempt.
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +optional
	LearningRateFactor *float64 `json:"learningRateFactor,omitempty"`
}

// TogetherFineTuneSpec is a fine-tune to submit or adopt, and what to do with
// its result.
// +kubebuilder:validation:XValidation:rule="has(self.jobID) != has(self.training)",message="set exactly one of spec.jobID (adopt an existing job) or spec.training (submit a new job)"
// +kubebuilder:validation:XValidation:rule="has(self.jobID) == has(oldSelf.jobID) && (!has(self.jobID) || self.jobID == oldSelf.jobID)",message="spec.jobID cannot be changed; create a new TogetherFineTune to follow another job"
// +kubebuilder:validation:XValidation:rule="!has(self.jobID) || !has(self.deletionPolicy) || self.deletionPolicy != 'Cancel' || (has(self.deploy) && has(self.deploy.endpoint))",message="spec.deletionPolicy Cancel cannot apply to an adopted job (spec.jobID): the operator never cancels a job it did not submit. Remove spec.deletionPolicy (adopted work is retained) or set Retain"
type TogetherFineTuneSpec struct {
	// JobID of an existing Together fine-tune job to follow.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	JobID string `json:"jobID,omitempty"`
	// Training describes a new job to submit.
	// +optional
	Training *TrainingSpec `json:"training,omitempty"`
	// Deploy says where the resulting model goes.
	// +optional
	Deploy *DeploySpec `json:"deploy,omitempty"`
	// Retry resubmits failed jobs with adjusted parameters.
	// +optional
	Retry *RetrySpec `json:"retry,omitempty"`
	// DeletionPolicy says what deleting the resource does on Together.
	// Cancel cancels a running job this resource submitted and deletes the
	// dedicated endpoint it created; Retain leaves them. Unset means Cancel
	// for a job this resource submits (spec.training) and Retain for an
	// adopted one (spec.jobID): status.deletionPolicy shows which applies.
	// An adopted job is never cancelled, so Cancel with spec.jobID is
	// refused unless spec.deploy.endpoint is set (the endpoint is this
	// resource's own, and Cancel then deletes it).
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// PollInterval overrides the manager's poll interval for this job.
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

// Checkpoint is one saved checkpoint of a training run.
type Checkpoint struct {
	// Step at which it was saved.
	Step int64 `json:"step"`
	// Loss at that step.
	// +optional
	Loss *float64 `json:"loss,omitempty"`
	// Time it was recorded.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// JobError is what Together reported about a failed job.
type JobError struct {
	// Message from Together.
	Message string `json:"message"`
	// Step at which the job failed.
	// +optional
	Step int64 `json:"step,omitempty"`
}

// FineTuneAttempt records one submitted job, for the history of retries.
type FineTuneAttempt struct {
	// Attempt number (1-based).
	Attempt int32 `json:"attempt"`
	// JobID of the attempt's job.
	JobID string `json:"jobID"`
	// LearningRate the attempt used, if set.
	// +optional
	LearningRate *float64 `json:"learningRate,omitempty"`
	// Phase the attempt ended in.
	// +optional
	Phase FineTunePhase `json:"phase,omitempty"`
	// Error of a failed attempt.
	// +optional
	Error *JobError `json:"error,omitempty"`
}

// DeploymentStatus reports the Deployment that received the model.
type DeploymentStatus struct {
	// Name of the Deployment.
	Name string `json:"name"`
	// Container patched.
	Container string `json:"container"`
	// Generation of the Deployment after the patch.
	Generation int64 `json:"generation"`
	// PreviousValue the env var held before.
	// +optional
	PreviousValue string `json:"previousValue,omitempty"`
}

// EndpointStatus reports the dedicated endpoint (v2) serving the model:
// what the operator created or adopted and where its deployment stands.
type EndpointStatus struct {
	// ID of the endpoint (ep_...).
	ID string `json:"id"`
	// Name is the endpoint's inference name, <project slug>/<endpoint
	// name>: the model value clients send to Together's inference API.
	// +optional
	Name string `json:"name,omitempty"`
	// ProjectID is the Together project the endpoint belongs to, resolved
	// from the API key (GET /v1/whoami). Empty on a status recorded by a
	// v1 endpoint before v2.
	// +optional
	ProjectID string `json:"projectID,omitempty"`
	// DeploymentID of the deployment serving the model (dep_...).
	// +optional
	DeploymentID string `json:"deploymentID,omitempty"`
	// DeploymentName is the deployment's qualified name,
	// <project slug>/<endpoint name>/<deployment name>.
	// +optional
	DeploymentName string `json:"deploymentName,omitempty"`
	// Model is the registry model deployed,
	// projects/{project}/models/{ml}/revisions/{rv}.
	// +optional
	Model string `json:"model,omitempty"`
	// Config is the config revision the deployment runs,
	// projects/{project}/configs/{cr}.
	// +optional
	Config string `json:"config,omitempty"`
	// Hardware the deployment runs on, as Together reports it.
	// +optional
	Hardware string `json:"hardware,omitempty"`
	// Routed is true once the deployment is in the endpoint's traffic split
	// with a positive weight (a deployment outside it gets no traffic).
	// +optional
	Routed bool `json:"routed,omitempty"`
	// State of the deployment as Together reports it
	// (DEPLOYMENT_STATE_PROVISIONING, ..._READY, ...). For a v1 endpoint
	// recorded before v2, the v1 state.
	// +optional
	State string `json:"state,omitempty"`
}

// IsV1 reports a status recorded for a v1 endpoint, before the operator
// moved to v2: it has an ID but no project.
func (e *EndpointStatus) IsV1() bool { return e != nil && e.ID != "" && e.ProjectID == "" }

// TogetherFineTuneStatus is what the operator knows about the job.
type TogetherFineTuneStatus struct {
	// DeletionPolicy is the policy that applies when the resource is
	// deleted: spec.deletionPolicy, or the default for how the job came to
	// be (Cancel when submitted, Retain when adopted).
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// CleanupAttempts counts failed attempts at the remote cleanup that
	// deletion runs; after MaxCleanupAttempts the finalizer lets go.
	// +optional
	CleanupAttempts int32 `json:"cleanupAttempts,omitempty"`
	// JobID of the current attempt's job.
	// +optional
	JobID string `json:"jobID,omitempty"`
	// Phase of the current job.
	// +optional
	Phase FineTunePhase `json:"phase,omitempty"`
	// RemoteStatus is Together's own status word for the job.
	// +optional
	RemoteStatus string `json:"remoteStatus,omitempty"`
	// Step is the newest training step read (train/global_step of the
	// job's metrics, or a pushed checkpoint's step).
	// +optional
	Step int64 `json:"step,omitempty"`
	// Loss at that step (train/loss).
	// +optional
	Loss *float64 `json:"loss,omitempty"`
	// FinalStep is the step the job ended at, as its terminal event reported
	// it (0 when it did not say). Checkpoints beyond it are not the job's
	// result: they are dropped, whenever they arrive.
	// +optional
	FinalStep int64 `json:"finalStep,omitempty"`
	// EvalLoss is the newest evaluation loss (the job's eval/loss metrics,
	// logged only for a job with a validation file and nEvals > 0); once
	// the job has succeeded, the finished model's.
	// +optional
	EvalLoss *float64 `json:"evalLoss,omitempty"`
	// SecondsRemaining is Together's estimate of the time the job still
	// needs (its progress.seconds_remaining), while it works and an
	// estimate is available.
	// +optional
	SecondsRemaining *int64 `json:"secondsRemaining,omitempty"`
	// OutputModel is the name of the fine-tuned model.
	// +optional
	OutputModel string `json:"outputModel,omitempty"`
	// Checkpoints, bounded, newest last.
	// +optional
	Checkpoints []Checkpoint `json:"checkpoints,omitempty"`
	// Error of a failed job.
	// +optional
	Error *JobError `json:"error,omitempty"`
	// DeployedModel is the model name last deployed.
	// +optional
	DeployedModel string `json:"deployedModel,omitempty"`
	// DeployedAttempt is the attempt whose model was deployed.
	// +optional
	DeployedAttempt int32 `json:"deployedAttempt,omitempty"`
	// Deployment that received the model.
	// +optional
	Deployment *DeploymentStatus `json:"deployment,omitempty"`
	// Endpoint created for the model.
	// +optional
	Endpoint *EndpointStatus `json:"endpoint,omitempty"`
	// TrainingFileID is the file uploaded from spec.training.trainingData.
	// +optional
	TrainingFileID string `json:"trainingFileID,omitempty"`
	// ValidationFileID is the file uploaded from
	// spec.training.validationData.
	// +optional
	ValidationFileID string `json:"validationFileID,omitempty"`
	// Attempt is the current attempt number (1-based).
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// Attempts is the history of submitted jobs.
	// +optional
	Attempts []FineTuneAttempt `json:"attempts,omitempty"`
	// Submission is set while a job creation may be in flight.
	// +optional
	Submission *SubmissionMarker `json:"submission,omitempty"`
	// ProcessedEvents holds the IDs of the newest applied events (bounded);
	// a delivery whose ID is here is a duplicate.
	// +optional
	ProcessedEvents []string `json:"processedEvents,omitempty"`
	// LastEvent is the event that last changed this status.
	// +optional
	LastEvent *EventRecord `json:"lastEvent,omitempty"`
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Deployed, DeployTargetReady, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TogetherFineTune follows a Together fine-tune job to its end and deploys
// the result.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tft,categories=together
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.status.jobID`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Loss",type=number,JSONPath=`.status.loss`
// +kubebuilder:printcolumn:name="Left (s)",type=integer,JSONPath=`.status.secondsRemaining`,description="Together's estimate of the seconds the job still needs (progress.seconds_remaining)."
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.status.outputModel`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Attempt",type=integer,JSONPath=`.status.attempt`,priority=1,description="Current attempt (1-based); retries add one."
// +kubebuilder:printcolumn:name="Eval Loss",type=number,JSONPath=`.status.evalLoss`,priority=1,description="Newest eval/loss while training; the finished model's, which spec.deploy.maxEvalLoss gates."
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.deploy.deployment.name`,priority=1,description="Deployment that receives the model."
// +kubebuilder:printcolumn:name="Deployed",type=string,JSONPath=`.status.conditions[?(@.type=="Deployed")].reason`,priority=1,description="Reason of the Deployed condition."
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why Ready says what it says."
// +kubebuilder:printcolumn:name="On Delete",type=string,JSONPath=`.status.deletionPolicy`,priority=1,description="What deleting the resource does: Cancel (submitted jobs) or Retain (adopted ones, or as set)."
type TogetherFineTune struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TogetherFineTuneSpec   `json:"spec,omitempty"`
	Status TogetherFineTuneStatus `json:"status,omitempty"`
}

// TogetherFineTuneList is a list of TogetherFineTune.
// +kubebuilder:object:root=true
type TogetherFineTuneList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TogetherFineTune `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TogetherFineTune{}, &TogetherFineTuneList{})
}
