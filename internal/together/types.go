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

package together

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// FineTuneStatus is a fine-tune job's status as the API reports it.
type FineTuneStatus string

// Fine-tune statuses, in the order a job normally passes through them.
const (
	FineTunePending         FineTuneStatus = "pending"
	FineTuneQueued          FineTuneStatus = "queued"
	FineTuneRunning         FineTuneStatus = "running"
	FineTuneCompressing     FineTuneStatus = "compressing"
	FineTuneUploading       FineTuneStatus = "uploading"
	FineTuneCancelRequested FineTuneStatus = "cancel_requested"
	FineTuneCancelled       FineTuneStatus = "cancelled"
	FineTuneError           FineTuneStatus = "error"
	FineTuneCompleted       FineTuneStatus = "completed"
)

// Terminal reports whether a job in this status will not change again, so
// pollers can stop watching it.
func (s FineTuneStatus) Terminal() bool {
	return s == FineTuneCancelled || s == FineTuneError || s == FineTuneCompleted
}

// BatchSizeMax is the BatchSize value of the API's "max" (the largest batch
// the model allows), which the API sends as a string instead of a number.
const BatchSizeMax BatchSize = -1

// BatchSize is a fine-tune batch size. The API sends either an integer or
// the string "max"; both decode here, "max" as BatchSizeMax.
type BatchSize int

// MarshalJSON writes BatchSizeMax as "max" and anything else as a number.
func (b BatchSize) MarshalJSON() ([]byte, error) {
	if b == BatchSizeMax {
		return []byte(`"max"`), nil
	}
	return []byte(strconv.Itoa(int(b))), nil
}

// UnmarshalJSON accepts a number, "max", or null.
func (b *BatchSize) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		return nil
	case bytes.Equal(data, []byte(`"max"`)):
		*b = BatchSizeMax
		return nil
	}
	var n int
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("batch_size: want an integer or \"max\", got %s", data)
	}
	*b = BatchSize(n)
	return nil
}

// TrainingType selects full training or LoRA; the API treats an absent
// training_type as LoRA.
type TrainingType struct {
	Type                 string   `json:"type"`
	LoraR                int      `json:"lora_r,omitempty"`
	LoraAlpha            int      `json:"lora_alpha,omitempty"`
	LoraDropout          *float64 `json:"lora_dropout,omitempty"`
	LoraTrainableModules string   `json:"lora_trainable_modules,omitempty"`
}

// FineTune is a fine-tune job: the full form from GET /fine-tunes/{id} or
// the truncated form from create, list and cancel (which lacks some fields).
type FineTune struct {
	ID              string          `json:"id"`
	UserID          string          `json:"user_id,omitempty"`
	Status          FineTuneStatus  `json:"status"`
	Model           string          `json:"model,omitempty"`
	ModelOutputName string          `json:"model_output_name,omitempty"`
	ModelOutputPath string          `json:"model_output_path,omitempty"`
	TrainingFile    string          `json:"training_file,omitempty"`
	ValidationFile  string          `json:"validation_file,omitempty"`
	Suffix          string          `json:"suffix,omitempty"`
	NEpochs         int             `json:"n_epochs,omitempty"`
	NCheckpoints    int             `json:"n_checkpoints,omitempty"`
	NEvals          int             `json:"n_evals,omitempty"`
	BatchSize       BatchSize       `json:"batch_size,omitempty"`
	LearningRate    float64         `json:"learning_rate,omitempty"`
	WarmupRatio     float64         `json:"warmup_ratio,omitempty"`
	TrainingType    *TrainingType   `json:"training_type,omitempty"`
	TokenCount      int64           `json:"token_count,omitempty"`
	EpochsCompleted int             `json:"epochs_completed,omitempty"`
	Events          []FineTuneEvent `json:"events,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	StartedAt       *time.Time      `json:"started_at,omitempty"`
	// ModelObjectID (ml_…) and AdapterObjectID name the job's final weights
	// in Together's model registry, with their revisions (rv_…): what a v2
	// dedicated deployment serves (GO finetuning.go FinetuneResponse
	// @862b8ae). AdapterObjectID is set on LoRA jobs only.
	ModelObjectID           string `json:"model_object_id,omitempty"`
	ModelObjectRevisionID   string `json:"model_object_revision_id,omitempty"`
	AdapterObjectID         string `json:"adapter_object_id,omitempty"`
	AdapterObjectRevisionID string `json:"adapter_object_revision_id,omitempty"`
	// Progress is the server's estimate of the time left; both the full
	// job and list items carry it (together-go finetuning.go
	// FinetuneResponseProgress, FineTuningListResponseDataProgress).
	Progress *FineTuneProgress `json:"progress,omitempty"`
}

// FineTuneProgress is a job's remaining-time estimate. SecondsRemaining is
// meaningful only when EstimateAvailable is true.
type FineTuneProgress struct {
	EstimateAvailable bool  `json:"estimate_available"`
	SecondsRemaining  int64 `json:"seconds_remaining"`
}

// FineTuneEvent is one entry of a job's event log. CreatedAt stays the
// string the API sends, since the spec only promises "a string".
type FineTuneEvent struct {
	Object         string `json:"object"`
	CreatedAt      string `json:"created_at"`
	Message        string `json:"message"`
	Type           string `json:"type"`
	Level          string `json:"level,omitempty"`
	Step           int64  `json:"step,omitempty"`
	TotalSteps     int64  `json:"total_steps,omitempty"`
	TokenCount     int64  `json:"token_count,omitempty"`
	CheckpointPath string `json:"checkpoint_path,omitempty"`
	ModelPath      string `json:"model_path,omitempty"`
	// An event carries no loss: losses live only in the job's metrics
	// (together-go finetuning.go FinetuneEvent has no loss field).
}

// FineTuneCheckpoint is one saved checkpoint of a job.
type FineTuneCheckpoint struct {
	CheckpointType string `json:"checkpoint_type"`
	CreatedAt      string `json:"created_at"`
	Path           string `json:"path"`
	Step           int64  `json:"step"`
	Checkpoint     string `json:"checkpoint,omitempty"`
	ObjectID       string `json:"object_id,omitempty"`
}

// Metric keys of GET /fine-tunes/{id}/metrics rows. Each row is a flat
// object of numbers; a training row holds train/* keys and an evaluation
// row, a separate object, eval/* keys (together-go finetuning.go
// FineTuningListMetricsResponse is map[string]float64; the key names come
// from the openapi example and skills together-fine-tuning deployment.md).
const (
	MetricTrainLoss       = "train/loss"
	MetricTrainGlobalStep = "train/global_step"
	MetricTrainLR         = "train/learning_rate"
	MetricEvalLoss        = "eval/loss"
)

// MetricRow is one training step's metrics.
type MetricRow struct {
	Step int64
	Loss *float64
}

// FineTuneMetrics is a job's metrics rows reduced to what the operator
// reads: training rows in chronological order and the newest evaluation
// loss. EvalLoss is nil until an evaluation row has been logged.
type FineTuneMetrics struct {
	Train    []MetricRow
	EvalLoss *float64
	// EvalStep is the global step of the newest evaluation row, when the
	// row names one.
	EvalStep int64
	// Skipped counts rows that were neither a training nor an evaluation
	// row, or whose step was not a whole number.
	Skipped int
}

// Last returns the newest training row, if any.
func (m *FineTuneMetrics) Last() (MetricRow, bool) {
	if m == nil || len(m.Train) == 0 {
		return MetricRow{}, false
	}
	return m.Train[len(m.Train)-1], true
}

// MetricsQuery narrows GET /fine-tunes/{id}/metrics with the API's own
// query parameters (together-go FineTuningListMetricsParams); zero values
// are not sent.
type MetricsQuery struct {
	// GlobalStepFrom returns only rows with global_step >= it.
	GlobalStepFrom int64
	// Resolution caps the number of (uniformly sampled) training rows;
	// evaluation rows are always returned in full.
	Resolution int
}

// CreateFineTuneRequest is the body of POST /fine-tunes. Zero values are
// omitted so that the server's documented defaults apply.
type CreateFineTuneRequest struct {
	Model          string        `json:"model"`
	TrainingFile   string        `json:"training_file"`
	ValidationFile string        `json:"validation_file,omitempty"`
	Suffix         string        `json:"suffix,omitempty"`
	NEpochs        int           `json:"n_epochs,omitempty"`
	NCheckpoints   int           `json:"n_checkpoints,omitempty"`
	NEvals         int           `json:"n_evals,omitempty"`
	BatchSize      int           `json:"batch_size,omitempty"`
	LearningRate   *float64      `json:"learning_rate,omitempty"`
	WarmupRatio    *float64      `json:"warmup_ratio,omitempty"`
	TrainingType   *TrainingType `json:"training_type,omitempty"`
}

// BatchStatus is a batch job's status; the API spells these in capitals.
type BatchStatus string

// Batch statuses.
const (
	BatchValidating BatchStatus = "VALIDATING"
	BatchInProgress BatchStatus = "IN_PROGRESS"
	BatchCompleted  BatchStatus = "COMPLETED"
	BatchFailed     BatchStatus = "FAILED"
	BatchExpired    BatchStatus = "EXPIRED"
	BatchCancelled  BatchStatus = "CANCELLED"
	// BatchCanceling is known to Together's Python SDK (not to together-go
	// or the openapi spec): a cancel was accepted and is taking effect.
	BatchCanceling BatchStatus = "CANCELING"
)

// Terminal reports whether a batch in this status will not change again.
func (s BatchStatus) Terminal() bool {
	return s == BatchCompleted || s == BatchFailed || s == BatchExpired || s == BatchCancelled
}

// Batch is a batch inference job.
type Batch struct {
	ID            string      `json:"id"`
	UserID        string      `json:"user_id,omitempty"`
	InputFileID   string      `json:"input_file_id,omitempty"`
	FileSizeBytes int64       `json:"file_size_bytes,omitempty"`
	Status        BatchStatus `json:"status"`
	JobDeadline   *time.Time  `json:"job_deadline,omitempty"`
	CreatedAt     *time.Time  `json:"created_at,omitempty"`
	CompletedAt   *time.Time  `json:"completed_at,omitempty"`
	Endpoint      string      `json:"endpoint,omitempty"`
	Progress      float64     `json:"progress"`
	ModelID       string      `json:"model_id,omitempty"`
	OutputFileID  string      `json:"output_file_id,omitempty"`
	ErrorFileID   string      `json:"error_file_id,omitempty"`
	Error         string      `json:"error,omitempty"`
	// A batch carries no token counts (together-go batch.go BatchJob):
	// usage is only in the output file, per line.
	// Warning is the create response's warning, if any; never on the wire
	// as part of the job.
	Warning string `json:"-"`
}

// CreateBatchRequest is the body of POST /batches.
type CreateBatchRequest struct {
	InputFileID      string `json:"input_file_id"`
	Endpoint         string `json:"endpoint"`
	CompletionWindow string `json:"completion_window,omitempty"`
	Priority         int    `json:"priority,omitempty"`
	ModelID          string `json:"model_id,omitempty"`
}

// FilePurpose says what an uploaded file is for.
type FilePurpose string

// File purposes the operator uploads.
const (
	FilePurposeFineTune FilePurpose = "fine-tune"
	FilePurposeBatch    FilePurpose = "batch-api"
)

// File is an uploaded or generated file. Note the API's capitalised
// FileType and Processed keys and its Unix-seconds created_at.
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	Filename  string `json:"filename"`
	Bytes     int64  `json:"bytes"`
	Purpose   string `json:"purpose"`
	FileType  string `json:"FileType"`
	Processed bool   `json:"Processed"`
	// ProcessingStatus is the server-side validation pipeline's state;
	// files of purposes other than fine-tune skip it (together-go file.go
	// FileResponseProcessingStatus).
	ProcessingStatus FileProcessingStatus `json:"processing_status,omitempty"`
	// ValidationReport is present once validation has run.
	ValidationReport *FileValidationReport `json:"validation_report,omitempty"`
}

// FileProcessingStatus is a file's validation state.
type FileProcessingStatus string

// File processing states: PENDING → QUEUED → RUNNING → COMPLETED, or
// FAILED / INVALID_FORMAT. A fine-tune file is usable only once COMPLETED
// (skills together-fine-tuning data-formats.md).
const (
	FilePending       FileProcessingStatus = "PENDING"
	FileQueued        FileProcessingStatus = "QUEUED"
	FileRunning       FileProcessingStatus = "RUNNING"
	FileCompleted     FileProcessingStatus = "COMPLETED"
	FileFailed        FileProcessingStatus = "FAILED"
	FileInvalidFormat FileProcessingStatus = "INVALID_FORMAT"
)

// Rejected reports a validation that ended without making the file usable.
func (s FileProcessingStatus) Rejected() bool {
	return s == FileFailed || s == FileInvalidFormat
}

// FileValidationReport is what server-side validation found
// (together-go file.go FileResponseValidationReport).
type FileValidationReport struct {
	Valid         bool   `json:"valid"`
	DatasetFormat string `json:"dataset_format,omitempty"`
	Error         string `json:"error,omitempty"`
	ErrorType     string `json:"error_type,omitempty"`
	FileID        string `json:"file_id,omitempty"`
	Nlines        int64  `json:"nlines,omitempty"`
}

// EndpointState is a dedicated endpoint's state.
type EndpointState string

// Endpoint states.
const (
	EndpointPending  EndpointState = "PENDING"
	EndpointStarting EndpointState = "STARTING"
	EndpointStarted  EndpointState = "STARTED"
	EndpointStopping EndpointState = "STOPPING"
	EndpointStopped  EndpointState = "STOPPED"
	EndpointError    EndpointState = "ERROR"
)

// Autoscaling bounds an endpoint's replica count.
type Autoscaling struct {
	MinReplicas int `json:"min_replicas"`
	MaxReplicas int `json:"max_replicas"`
}

// Endpoint types, as the list route reports and filters them.
const (
	EndpointTypeDedicated  = "dedicated"
	EndpointTypeServerless = "serverless"
)

// Endpoint is an inference endpoint: the full form from create, get and
// update (always dedicated), or a ListEndpoints item, which lacks
// DisplayName, Hardware and Autoscaling and may be serverless.
type Endpoint struct {
	ID          string        `json:"id"`
	Object      string        `json:"object"`
	Name        string        `json:"name"`
	DisplayName string        `json:"display_name"`
	Model       string        `json:"model"`
	Hardware    string        `json:"hardware"`
	Type        string        `json:"type"`
	Owner       string        `json:"owner"`
	State       EndpointState `json:"state"`
	Autoscaling Autoscaling   `json:"autoscaling"`
	CreatedAt   time.Time     `json:"created_at"`
}

// CreateEndpointRequest is the body of POST /endpoints.
type CreateEndpointRequest struct {
	Model       string      `json:"model"`
	Hardware    string      `json:"hardware"`
	DisplayName string      `json:"display_name,omitempty"`
	Autoscaling Autoscaling `json:"autoscaling"`
	State       string      `json:"state,omitempty"`
}

// UpdateEndpointRequest is the body of PATCH /endpoints/{id}; nil or empty
// fields are left unchanged.
type UpdateEndpointRequest struct {
	DisplayName string       `json:"display_name,omitempty"`
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`
	State       string       `json:"state,omitempty"`
}

// Model is one entry of GET /models.
type Model struct {
	ID            string        `json:"id"`
	Object        string        `json:"object"`
	Created       int64         `json:"created"`
	Type          string        `json:"type"`
	DisplayName   string        `json:"display_name,omitempty"`
	Organization  string        `json:"organization,omitempty"`
	Link          string        `json:"link,omitempty"`
	License       string        `json:"license,omitempty"`
	ContextLength int           `json:"context_length,omitempty"`
	Pricing       *ModelPricing `json:"pricing,omitempty"`
	// v1 /models carries no deprecation field (together-go model.go
	// ModelObject); deprecations come from SupportedModel.Status.
}

// ModelPricing is a model's price list.
type ModelPricing struct {
	Input    float64 `json:"input"`
	Output   float64 `json:"output"`
	Hourly   float64 `json:"hourly"`
	Base     float64 `json:"base"`
	Finetune float64 `json:"finetune"`
	// CachedInput is optional in together-go model.go ModelObjectPricing.
	CachedInput float64 `json:"cached_input,omitempty"`
}

// SupportedModelStatus is a catalogue entry's recommendation status
// (together-go betamodel.go SupportedModelStatus).
type SupportedModelStatus string

// Supported-model statuses.
const (
	SupportedModelRecommended SupportedModelStatus = "SUPPORTED_MODEL_STATUS_RECOMMENDED"
	SupportedModelSupported   SupportedModelStatus = "SUPPORTED_MODEL_STATUS_SUPPORTED"
	SupportedModelDeprecated  SupportedModelStatus = "SUPPORTED_MODEL_STATUS_DEPRECATED"
	SupportedModelHidden      SupportedModelStatus = "SUPPORTED_MODEL_STATUS_HIDDEN"
)

// SupportedModel is one entry of GET /v2/supported-models, the only
// machine-readable deprecation signal Together publishes. It names no
// replacement and no sunset date. Only the fields the operator reads are
// declared; the rest of the entry (deployment profiles, modalities, …) is
// ignored.
type SupportedModel struct {
	ID                 string               `json:"id"`
	Name               string               `json:"name"`
	DisplayName        string               `json:"displayName"`
	DisplayType        string               `json:"displayType"`
	Status             SupportedModelStatus `json:"status"`
	Products           []string             `json:"products"`
	Publisher          string               `json:"publisher"`
	BaseModel          string               `json:"baseModel"`
	BaseModelID        string               `json:"baseModelId"`
	Capabilities       []string             `json:"capabilities"`
	InputModalities    []string             `json:"inputModalities"`
	OutputModalities   []string             `json:"outputModalities"`
	CreatedAt          time.Time            `json:"createdAt"`
	UpdatedAt          time.Time            `json:"updatedAt"`
	ContextLength      string               `json:"contextLength,omitempty"`
	Architecture       string               `json:"architecture,omitempty"`
	Description        string               `json:"description,omitempty"`
	FamilyID           string               `json:"familyId,omitempty"`
	Features           []string             `json:"features,omitempty"`
	InputFormat        string               `json:"inputFormat,omitempty"`
	OutputFormat       string               `json:"outputFormat,omitempty"`
	ServerlessEndpoint string               `json:"serverlessEndpoint,omitempty"`
	Tags               []string             `json:"tags,omitempty"`
	// DeploymentProfiles is kept raw: the operator does not read it.
	DeploymentProfiles json.RawMessage `json:"deploymentProfiles,omitempty"`
}

// IsDeprecated reports the catalogue's deprecation status.
func (m SupportedModel) IsDeprecated() bool { return m.Status == SupportedModelDeprecated }

// ModelName is the name workloads use to call the model: the catalogue's
// HF-style name, or the ID when the name is empty.
func (m SupportedModel) ModelName() string {
	if m.Name != "" {
		return m.Name
	}
	return m.ID
}

// WebhookRequest registers or updates a webhook subscription in the
// project's own push contract. Secret signs deliveries and is never echoed.
type WebhookRequest struct {
	URL    string   `json:"url,omitempty"`
	Events []string `json:"events,omitempty"`
	Secret string   `json:"secret,omitempty"`
}

// Webhook is a registered subscription of the project's push contract.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
}
