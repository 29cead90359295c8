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

// This file is the one list of the condition types, condition reasons and
// Event reasons the operator writes, so that the API documentation, the
// reconcilers and anyone scripting against the resources read the same names.
// Each reason names a situation a person can act on; the condition message
// says what to do.

// Condition types shared by every resource of this group. They follow kstatus:
// Ready is always present once an object has been reconciled; Reconciling and
// Stalled are present only while they are True.
const (
	// ReadyCondition says whether the object has reached the state its spec asks for.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while the operator is still working towards
	// the desired state (a job is running, a migration is scheduled, ...).
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when progress stopped and needs a person's help.
	StalledCondition = "Stalled"
)

// Condition types of one kind each.
const (
	// DeployedCondition (TogetherFineTune) reports whether the current
	// attempt's model reached the deploy targets of spec.deploy. It is absent
	// when nothing is to be deployed; when present, Ready needs it True.
	DeployedCondition = "Deployed"
	// DeployTargetReadyCondition (TogetherFineTune) reports, before the
	// model exists, whether spec.deploy.deployment can take it: the
	// Deployment and container exist, the env var holds a plain value, and
	// no other fine-tune holds it (unless spec.deploy.takeOver). It is
	// checked before anything is submitted and again before deploying;
	// Ready does not depend on it (Deployed says what happened).
	DeployTargetReadyCondition = "DeployTargetReady"
	// OutputReadyCondition (TogetherBatch) reports whether the results were
	// written where spec.output asks. It is absent when no output is
	// requested; when present, Ready needs it True.
	OutputReadyCondition = "OutputReady"
	// RegisteredCondition (TogetherWebhookSubscription) says whether the
	// subscription is registered with the remote API. It is informational:
	// Ready does not depend on it, because the poller covers an API that
	// cannot push.
	RegisteredCondition = "Registered"
)

// Event types of Kubernetes Events (the two the API server accepts).
const (
	// EventTypeNormal is an Event about expected progress.
	EventTypeNormal = "Normal"
	// EventTypeWarning is an Event a person may need to act on.
	EventTypeWarning = "Warning"
)

// Reasons shared by every kind.
const (
	// ReasonSucceeded means the resource reached the state its spec asks for.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing means the operator is working towards the desired state.
	ReasonProgressing = "Progressing"
	// ReasonUnauthorized means Together rejected the API key (401).
	ReasonUnauthorized = "Unauthorized"
	// ReasonNoCredentials means the resource's namespace has no Together API
	// key of its own (the Secret together-api-key) and is not allowed the
	// operator-wide one.
	ReasonNoCredentials = "NoCredentials"
	// ReasonQuotaExceeded means the account's spending limit was reached (402).
	ReasonQuotaExceeded = "QuotaExceeded"
	// ReasonAPIError means Together answered with an error the operator retries.
	ReasonAPIError = "APIError"
	// ReasonSecretNotFound means a referenced Secret or key is missing.
	ReasonSecretNotFound = "SecretNotFound"
)

// Reasons of TogetherFineTune conditions and Events.
const (
	// ReasonJobPending means the job was submitted and waits for Together.
	ReasonJobPending = "JobPending"
	// ReasonJobRunning means the job is training.
	ReasonJobRunning = "JobRunning"
	// ReasonJobFailed means the job failed and no retry attempt is left.
	ReasonJobFailed = "JobFailed"
	// ReasonJobCancelled means the job was cancelled outside the operator.
	ReasonJobCancelled = "JobCancelled"
	// ReasonJobNotFound means spec.jobID names a job Together does not know.
	ReasonJobNotFound = "JobNotFound"
	// ReasonInvalidTrainingData means the ConfigMap's JSONL is not in an
	// accepted format; nothing was uploaded.
	ReasonInvalidTrainingData = "InvalidTrainingData"
	// ReasonTrainingDataNotFound means the ConfigMap or key is missing.
	ReasonTrainingDataNotFound = "TrainingDataNotFound"
	// ReasonSubmissionRejected means Together refused the job's parameters.
	ReasonSubmissionRejected = "SubmissionRejected"
	// ReasonTrainingFileValidating means Together is still validating a
	// training or evaluation file; the job is created once it is COMPLETED.
	ReasonTrainingFileValidating = "TrainingFileValidating"
	// ReasonTrainingFileRejected means Together's validation rejected a
	// training or evaluation file (INVALID_FORMAT or FAILED); nothing was
	// submitted.
	ReasonTrainingFileRejected = "TrainingFileRejected"
	// ReasonQualityGateFailed means the model's eval loss is above
	// spec.deploy.maxEvalLoss, or unknown while a gate is set.
	ReasonQualityGateFailed = "QualityGateFailed"
	// ReasonDeploymentNotFound means spec.deploy.deployment names a
	// Deployment that does not exist in the namespace.
	ReasonDeploymentNotFound = "DeploymentNotFound"
	// ReasonContainerNotFound means the Deployment has no such container.
	ReasonContainerNotFound = "ContainerNotFound"
	// ReasonEnvVarFromSource means the target env var takes its value from a
	// ConfigMap, Secret or field, which the operator will not overwrite.
	ReasonEnvVarFromSource = "EnvVarFromSource"
	// ReasonDeployTargetReady means the Deployment env var can take the model.
	ReasonDeployTargetReady = "DeployTargetReady"
	// ReasonDeployTargetHeld means another fine-tune holds the Deployment
	// env var (its name is in the message and in the Deployment's
	// together.ai/deployed-by annotation) and spec.deploy.takeOver is not set.
	ReasonDeployTargetHeld = "DeployTargetHeld"
	// ReasonDeployTargetLost means this fine-tune's model was deployed but
	// the env var no longer holds it: another fine-tune took it over (named
	// in the message), or it was changed outside the operator.
	ReasonDeployTargetLost = "DeployTargetLost"
	// ReasonEndpointFailed means Together refused the dedicated endpoint's
	// parameters, or its deployment ended FAILED or was stopped.
	ReasonEndpointFailed = "EndpointFailed"
	// ReasonWaitingForDeploymentReady means the dedicated endpoint's
	// deployment is provisioning or scaling; the operator reads it again.
	ReasonWaitingForDeploymentReady = "WaitingForDeploymentReady"
	// ReasonWaitingForModelObject means the completed job names no registry
	// model (model_object_id / adapter_object_id) yet.
	ReasonWaitingForModelObject = "WaitingForModelObject"
	// ReasonNoMatchingConfig means no config revision Together lists for the
	// model matches spec.deploy.endpoint.hardware or config.
	ReasonNoMatchingConfig = "NoMatchingConfig"
	// ReasonEndpointForbidden means Together answered 403 to endpoint work:
	// the API key's project may not do it. Not a mistake in the spec.
	ReasonEndpointForbidden = "EndpointForbidden"
	// ReasonDeletingEndpoint means deletion waits for the endpoint's
	// deployment to stop before deleting it, then the endpoint.
	ReasonDeletingEndpoint = "DeletingEndpoint"
	// ReasonDeployed means every deploy target holds the model.
	ReasonDeployed = "Deployed"

	// EventReasonAdopted: the resource follows an existing job (spec.jobID).
	EventReasonAdopted = "Adopted"
	// EventReasonUploaded: training data was uploaded as a Together file.
	EventReasonUploaded = "Uploaded"
	// EventReasonSubmitted: a job was created for an attempt (or found after
	// an interrupted submission).
	EventReasonSubmitted = "Submitted"
	// EventReasonCompleted: an attempt's job completed.
	EventReasonCompleted = "Completed"
	// EventReasonDeploymentPatched: the target Deployment's env var was set.
	EventReasonDeploymentPatched = "DeploymentPatched"
	// EventReasonDeployTargetTakenOver: this fine-tune took a Deployment
	// env var over from the fine-tune that held it (spec.deploy.takeOver).
	EventReasonDeployTargetTakenOver = "DeployTargetTakenOver"
	// EventReasonEndpointCreated: a dedicated endpoint was created.
	EventReasonEndpointCreated = "EndpointCreated"
	// EventReasonEndpointAdopted: the endpoint named after the resource was
	// found (created before a lost status write) and adopted.
	EventReasonEndpointAdopted = "EndpointAdopted"
	// EventReasonEndpointDeleted: the dedicated endpoint was deleted with the resource.
	EventReasonEndpointDeleted = "EndpointDeleted"
	// EventReasonEndpointDeploymentCreated: a deployment of the model was
	// created under the endpoint.
	EventReasonEndpointDeploymentCreated = "EndpointDeploymentCreated"
	// EventReasonEndpointDeploymentAdopted: the deployment named after the
	// resource and attempt was found and adopted.
	EventReasonEndpointDeploymentAdopted = "EndpointDeploymentAdopted"
	// EventReasonEndpointRouted: the deployment was put in the endpoint's
	// traffic split.
	EventReasonEndpointRouted = "EndpointRouted"
	// EventReasonEndpointDeploymentDeleted: a deployment the resource
	// created was deleted with it.
	EventReasonEndpointDeploymentDeleted = "EndpointDeploymentDeleted"
	// EventReasonEndpointKept: the endpoint was kept at deletion because it
	// holds deployments the operator did not create.
	EventReasonEndpointKept = "EndpointKept"
	// EventReasonCancelled: remote work was cancelled because the resource was deleted.
	EventReasonCancelled = "Cancelled"
)

// Reasons of TogetherBatch conditions.
const (
	// ReasonInvalidInput means a line of the input is not a valid batch
	// request; nothing was uploaded.
	ReasonInvalidInput = "InvalidInput"
	// ReasonInputNotFound means the input ConfigMap or its key is missing.
	ReasonInputNotFound = "InputNotFound"
	// ReasonInputChanged means the input changed while a split batch was
	// being submitted, after some of its parts were created.
	ReasonInputChanged = "InputChanged"
	// ReasonBatchNotFound means spec.batchID names a batch Together does not know.
	ReasonBatchNotFound = "BatchNotFound"
	// ReasonBatchRejected means Together refused to create the batch.
	ReasonBatchRejected = "BatchRejected"
	// ReasonBatchInProgress means Together is validating or running the batch.
	ReasonBatchInProgress = "BatchInProgress"
	// ReasonBatchFailed means Together reported the batch (or a part) failed.
	ReasonBatchFailed = "BatchFailed"
	// ReasonBatchExpired means the batch did not finish within its window.
	ReasonBatchExpired = "BatchExpired"
	// ReasonBatchCancelled means the batch was cancelled.
	ReasonBatchCancelled = "BatchCancelled"
	// ReasonFetching means the output is being downloaded.
	ReasonFetching = "Fetching"
	// ReasonFetchFailed means downloading the output failed and no attempt is left.
	ReasonFetchFailed = "FetchFailed"
	// ReasonAPIKeySecretNotFound means a Secret a resource names for its
	// Together API key (spec.apiKeySecretRef), or its key, is
	// missing: nothing is done on Together until it exists.
	ReasonAPIKeySecretNotFound = "APIKeySecretNotFound"
	// ReasonOutputNeedsNamespaceKey means a PVC output cannot be fetched:
	// the batch acts on the operator-wide key, which is never handed to a
	// Job in a tenant's namespace, so the fetch Job needs a key Secret of
	// the namespace (together-api-key, or one spec.apiKeySecretRef names).
	ReasonOutputNeedsNamespaceKey = "OutputNeedsNamespaceKey"
	// ReasonOutputKeyMismatch means the deprecated
	// spec.output.persistentVolumeClaim.apiKeySecretRef names another
	// Secret than the one the batch acts with; the fetch Job uses the
	// batch's own.
	ReasonOutputKeyMismatch = "OutputKeyMismatch"
	// ReasonOutputTooLarge means the output does not fit a ConfigMap.
	ReasonOutputTooLarge = "OutputTooLarge"
	// ReasonOutputConflict means the output ConfigMap exists and was not
	// created for this batch, so the operator will not overwrite it.
	ReasonOutputConflict = "OutputConflict"
	// ReasonClaimNotOptedIn means the PVC named for the output has not opted
	// in with together.ai/batch-output=true, so no fetch Job mounts it.
	ReasonClaimNotOptedIn = "ClaimNotOptedIn"
	// ReasonOutputWritten means the output was written and verified.
	ReasonOutputWritten = "OutputWritten"
)

// Reasons of TogetherModelMigration conditions and Events.
const (
	// ReasonScheduled means a BeforeSunset migration waits for its time.
	ReasonScheduled = "Scheduled"
	// ReasonAwaitingApproval means a Manual migration waits for a person to
	// set the approval annotation.
	ReasonAwaitingApproval = "AwaitingApproval"
	// ReasonDryRun means the would-be changes are listed and nothing changed.
	ReasonDryRun = "DryRun"
	// ReasonMigrated means workloads were moved to the replacement model.
	ReasonMigrated = "Migrated"
	// ReasonPartiallyMigrated means some workloads could not be patched while
	// others were; status.targets[].error says why.
	ReasonPartiallyMigrated = "PartiallyMigrated"
	// ReasonMigrationFailed means no workload could be patched.
	ReasonMigrationFailed = "MigrationFailed"
	// ReasonPatchFailed is the Warning Event for workloads that could not be patched.
	ReasonPatchFailed = "PatchFailed"
	// ReasonInvalidSpec means spec.sunsetDate or spec.selector cannot be used.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonReplacementNotInCatalogue means spec.replacementModel is not in
	// the model list (GET /v1/models) of the namespace's Together account,
	// so nothing is patched: a typo would point workloads at a model that
	// does not answer.
	ReasonReplacementNotInCatalogue = "ReplacementNotInCatalogue"
	// ReasonWorkloadsAtRisk means workloads still use the model after its
	// sunset date, so their requests will fail.
	ReasonWorkloadsAtRisk = "WorkloadsAtRisk"
	// ReasonNoWorkloadsAtRisk means the last workloads at risk moved off the model.
	ReasonNoWorkloadsAtRisk = "NoWorkloadsAtRisk"
	// ReasonDeprecated is the Event on a migration a model.deprecated event
	// created.
	ReasonDeprecated = "Deprecated"
	// ReasonDeprecationUpdated is the Event on a migration a newer
	// model.deprecated event changed (replacement or sunset date).
	ReasonDeprecationUpdated = "DeprecationUpdated"
)

// Reasons of TogetherWebhookSubscription conditions and Events.
const (
	// ReasonServing means the endpoint serves this subscription.
	ReasonServing = "Serving"
	// ReasonRegistered means the remote API delivers to this subscription.
	ReasonRegistered = "Registered"
	// ReasonNotRequested means spec.register is false.
	ReasonNotRequested = "NotRequested"
	// ReasonNotSupported means the remote API has no webhooks endpoint
	// (Together's public API today); polling covers it.
	ReasonNotSupported = "NotSupported"
	// ReasonRegistrationFailed means the remote API refused or failed the
	// registration; it is retried.
	ReasonRegistrationFailed = "RegistrationFailed"
	// ReasonNoAPI means registration was asked for but the manager has no
	// Together API client configured.
	ReasonNoAPI = "NoAPIConfigured"
	// ReasonUnmatchedEvent is the Warning Event on a subscription that
	// received an event about a job no resource tracks (once an hour).
	ReasonUnmatchedEvent = "UnmatchedEvent"
	// ReasonEventForOtherAccount is the Warning Event on a subscription that
	// received an event about a job a resource follows on another Together
	// account than the subscription's (spec.apiKeySecretRef): the event was
	// not applied (once an hour).
	ReasonEventForOtherAccount = "EventForOtherAccount"
	// ReasonNoReplacementKnown is the Warning Event on a subscription that
	// received a model.deprecated event naming no replacement, with none in
	// its spec.modelReplacements (once an hour).
	ReasonNoReplacementKnown = "NoReplacementKnown"
)

// StatusConditions returns the conditions for the reconcilers' one summary.
func (in *TogetherFineTune) StatusConditions() *[]metav1.Condition { return &in.Status.Conditions }

// StatusConditions returns the conditions for the reconcilers' one summary.
func (in *TogetherBatch) StatusConditions() *[]metav1.Condition { return &in.Status.Conditions }

// StatusConditions returns the conditions for the reconcilers' one summary.
func (in *TogetherModelMigration) StatusConditions() *[]metav1.Condition {
	return &in.Status.Conditions
}

// StatusConditions returns the conditions for the reconcilers' one summary.
func (in *TogetherWebhookSubscription) StatusConditions() *[]metav1.Condition {
	return &in.Status.Conditions
}

// SetObservedGeneration records the generation the status reflects.
func (in *TogetherFineTune) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// SetObservedGeneration records the generation the status reflects.
func (in *TogetherBatch) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// SetObservedGeneration records the generation the status reflects.
func (in *TogetherModelMigration) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// SetObservedGeneration records the generation the status reflects.
func (in *TogetherWebhookSubscription) SetObservedGeneration(g int64) {
	in.Status.ObservedGeneration = g
}

// Event reasons of the poller, on the resources whose jobs it reads.
const (
	// ReasonPollFailed means reading a job's state from Together failed (a
	// 401, a 5xx, an answer that did not decode) or its effect could not
	// be written; the poller retries every cycle.
	ReasonPollFailed = "PollFailed"
	// ReasonPollRecovered means a resource that had a PollFailed is read
	// again.
	ReasonPollRecovered = "PollRecovered"
	// ReasonDeprecatedModelInUse is the Warning Event on a subscription whose
	// namespace runs workloads on a deprecated model with no replacement
	// declared.
	ReasonDeprecatedModelInUse = "DeprecatedModelInUse"
)
