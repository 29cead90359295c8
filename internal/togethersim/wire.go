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

package togethersim

import (
	"encoding/json"
	"time"
)

// The JSON shapes the simulator reads and writes, each written field by
// field from Together's published sources and NOT from the operator's
// client (this package must not import internal/together, so that a test
// decoding the simulator's answers with the client can fail when either
// side is wrong). Sources, by the abbreviations used below:
//
//	GO  togethercomputer/together-go       @862b8ae56b0760256f1bc14569e951cce7351225 (2026-07-20)
//	TS  togethercomputer/together-typescript @5d7f323d5a9dbc4d2b2342f5330b1c1dceacdb63 (2026-08-19)
//	OAS togethercomputer/openapi openapi.yaml @090263aa0fde006d9cd958bef52719958079bbc4 (2026-04-28)
//	SK  togethercomputer/skills             @644d38225bbdef0318462fe222f6f9883c8addcd (2026-08-18)
//
// Optional fields the simulator has no value for are omitted, as the real
// API may omit them.

// ftCreateRequest is the body of POST /fine-tunes: GO finetuning.go
// FineTuningNewParams (the fields the simulator acts on; others are
// accepted and ignored, as the real API accepts them).
type ftCreateRequest struct {
	Model          string          `json:"model"`
	TrainingFile   string          `json:"training_file"`
	ValidationFile string          `json:"validation_file"`
	Suffix         string          `json:"suffix"`
	NEpochs        int64           `json:"n_epochs"`
	NCheckpoints   int64           `json:"n_checkpoints"`
	NEvals         int64           `json:"n_evals"`
	BatchSize      json.RawMessage `json:"batch_size"` // int or "max"
	LearningRate   *float64        `json:"learning_rate"`
	WarmupRatio    *float64        `json:"warmup_ratio"`
	TrainingType   *trainingType   `json:"training_type"`
}

// trainingType: GO finetuning.go FinetuneResponseTrainingTypeFullTrainingType
// ({"type":"Full"}) and ...LoRaTrainingType ({"type":"Lora", lora_r,
// lora_alpha, lora_dropout, lora_trainable_modules}).
type trainingType struct {
	Type                 string   `json:"type"`
	LoraR                int64    `json:"lora_r,omitempty"`
	LoraAlpha            int64    `json:"lora_alpha,omitempty"`
	LoraDropout          *float64 `json:"lora_dropout,omitempty"`
	LoraTrainableModules string   `json:"lora_trainable_modules,omitempty"`
}

// ftProgress: GO finetuning.go FinetuneResponseProgress and
// FineTuningListResponseDataProgress (both fields required).
type ftProgress struct {
	EstimateAvailable bool  `json:"estimate_available"`
	SecondsRemaining  int64 `json:"seconds_remaining"`
}

// ftJob is the full job of GET /fine-tunes/{id}: GO finetuning.go
// FinetuneResponse (required: id, status, user_id). The full form has no
// suffix; list items do.
type ftJob struct {
	ID              string `json:"id"`
	Status          string `json:"status"`
	UserID          string `json:"user_id"`
	Model           string `json:"model,omitempty"`
	ModelOutputName string `json:"model_output_name,omitempty"`
	ModelOutputPath string `json:"model_output_path,omitempty"`
	// Registry ids of the trained weights, with their revisions; the
	// adapter only for LoRA jobs.
	ModelObjectID           string        `json:"model_object_id,omitempty"`
	ModelObjectRevisionID   string        `json:"model_object_revision_id,omitempty"`
	AdapterObjectID         string        `json:"adapter_object_id,omitempty"`
	AdapterObjectRevisionID string        `json:"adapter_object_revision_id,omitempty"`
	TrainingFile            string        `json:"training_file,omitempty"`
	ValidationFile          string        `json:"validation_file,omitempty"`
	NEpochs                 int64         `json:"n_epochs,omitempty"`
	NCheckpoints            int64         `json:"n_checkpoints,omitempty"`
	NEvals                  int64         `json:"n_evals,omitempty"`
	BatchSize               any           `json:"batch_size,omitempty"` // int64 or "max" (FinetuneResponseBatchSizeUnion)
	LearningRate            float64       `json:"learning_rate,omitempty"`
	WarmupRatio             float64       `json:"warmup_ratio"`
	TrainingType            *trainingType `json:"training_type,omitempty"`
	TokenCount              int64         `json:"token_count,omitempty"`
	EpochsCompleted         int64         `json:"epochs_completed,omitempty"`
	Events                  []ftEvent     `json:"events"`
	CreatedAt               time.Time     `json:"created_at"`
	UpdatedAt               time.Time     `json:"updated_at"`
	StartedAt               *time.Time    `json:"started_at,omitempty"`
	Progress                *ftProgress   `json:"progress,omitempty"`
}

// ftListItem is the truncated job of GET /fine-tunes (inside {"data":[…]}),
// POST /fine-tunes and POST /fine-tunes/{id}/cancel: GO finetuning.go
// FineTuningListResponseData, FineTuningNewResponse and
// FineTuningCancelResponse (required: id, created_at, status, updated_at,
// user_id; batch_size is an int only).
type ftListItem struct {
	ID              string        `json:"id"`
	CreatedAt       time.Time     `json:"created_at"`
	Status          string        `json:"status"`
	UpdatedAt       time.Time     `json:"updated_at"`
	UserID          string        `json:"user_id"`
	Model           string        `json:"model,omitempty"`
	ModelOutputName string        `json:"model_output_name,omitempty"`
	TrainingFile    string        `json:"training_file,omitempty"`
	ValidationFile  string        `json:"validation_file,omitempty"`
	Suffix          string        `json:"suffix,omitempty"`
	NEpochs         int64         `json:"n_epochs,omitempty"`
	NCheckpoints    int64         `json:"n_checkpoints,omitempty"`
	NEvals          int64         `json:"n_evals,omitempty"`
	BatchSize       int64         `json:"batch_size,omitempty"`
	LearningRate    float64       `json:"learning_rate,omitempty"`
	WarmupRatio     float64       `json:"warmup_ratio"`
	TrainingType    *trainingType `json:"training_type,omitempty"`
	TokenCount      int64         `json:"token_count,omitempty"`
	StartedAt       *time.Time    `json:"started_at,omitempty"`
	Progress        *ftProgress   `json:"progress,omitempty"`
}

// ftEvent: GO finetuning.go FinetuneEvent (required: created_at, message,
// object "fine-tune-event", type). It has no loss field in any source.
type ftEvent struct {
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
}

// ftCheckpoint: GO finetuning.go FineTuningListCheckpointsResponseData
// (required: checkpoint_type, created_at, path, step), inside {"data":[…]}.
type ftCheckpoint struct {
	CheckpointType string `json:"checkpoint_type"`
	CreatedAt      string `json:"created_at"`
	Path           string `json:"path"`
	Step           int64  `json:"step"`
	Checkpoint     string `json:"checkpoint,omitempty"`
	ObjectID       string `json:"object_id,omitempty"`
}

// Metric row keys of GET /fine-tunes/{id}/metrics ({"metrics":[{name:
// number}]}: GO finetuning.go FineTuningListMetricsResponse). Training rows
// hold train/* keys (OAS example: train/loss, train/learning_rate,
// train/global_step); evaluation rows are separate objects with eval/* keys
// (SK together-fine-tuning references/deployment.md). That an eval row also
// carries train/global_step is an assumption (the sources do not show one);
// the global_step filters apply to it here.
const (
	keyTrainLoss = "train/loss"
	keyTrainStep = "train/global_step"
	keyTrainLR   = "train/learning_rate"
	keyEvalLoss  = "eval/loss"
)

// batchCreateRequest: GO batch.go BatchNewParams (endpoint, input_file_id
// required; completion_window, priority, model_id optional).
type batchCreateRequest struct {
	InputFileID      string `json:"input_file_id"`
	Endpoint         string `json:"endpoint"`
	CompletionWindow string `json:"completion_window"`
	Priority         int64  `json:"priority"`
	ModelID          string `json:"model_id"`
}

// batchJob: GO batch.go BatchJob (nothing required). It carries no token
// counts; usage is only in the output file.
type batchJob struct {
	ID            string     `json:"id"`
	UserID        string     `json:"user_id,omitempty"`
	InputFileID   string     `json:"input_file_id,omitempty"`
	FileSizeBytes int64      `json:"file_size_bytes,omitempty"`
	Status        string     `json:"status"`
	JobDeadline   *time.Time `json:"job_deadline,omitempty"`
	CreatedAt     *time.Time `json:"created_at,omitempty"`
	CompletedAt   *time.Time `json:"completed_at,omitempty"`
	Endpoint      string     `json:"endpoint,omitempty"`
	Progress      float64    `json:"progress"`
	ModelID       string     `json:"model_id,omitempty"`
	OutputFileID  string     `json:"output_file_id,omitempty"`
	ErrorFileID   string     `json:"error_file_id,omitempty"`
	Error         string     `json:"error,omitempty"`
}

// batchCreateResponse: GO batch.go BatchNewResponse ({job, warning}), 201.
type batchCreateResponse struct {
	Job     batchJob `json:"job"`
	Warning string   `json:"warning"`
}

// Batch output and error file lines (SK together-batch-inference
// references/api-reference.md): {"custom_id", "response": {"status_code",
// "body": <endpoint response with usage>}} and {"custom_id", "error":
// {"message", "code"}}.
type batchOutputLine struct {
	CustomID string              `json:"custom_id"`
	Response batchOutputResponse `json:"response"`
}

type batchOutputResponse struct {
	StatusCode int            `json:"status_code"`
	Body       chatCompletion `json:"body"`
}

// chatCompletion is the part of a chat completion the simulator writes:
// GO chatcompletion.go ChatCompletion (id, choices, created, model, object)
// and ChatCompletionUsage (prompt_tokens, completion_tokens, total_tokens).
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	FinishReason string      `json:"finish_reason"`
	Message      chatMessage `json:"message"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

type batchErrorLine struct {
	CustomID string         `json:"custom_id"`
	Error    batchLineError `json:"error"`
}

type batchLineError struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

// fileObject: GO file.go FileResponse (required: id, bytes, created_at (Unix
// seconds), filename, FileType, Processed, purpose; object is "file";
// processing_status and validation_report optional).
type fileObject struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	CreatedAt        int64             `json:"created_at"`
	Filename         string            `json:"filename"`
	Bytes            int64             `json:"bytes"`
	Purpose          string            `json:"purpose"`
	FileType         string            `json:"FileType"`
	Processed        bool              `json:"Processed"`
	ProcessingStatus string            `json:"processing_status,omitempty"`
	ValidationReport *validationReport `json:"validation_report,omitempty"`
}

// validationReport: GO file.go FileResponseValidationReport (valid
// required; error and error_type only on user-correctable failures).
type validationReport struct {
	Valid         bool   `json:"valid"`
	DatasetFormat string `json:"dataset_format,omitempty"`
	Error         string `json:"error,omitempty"`
	ErrorType     string `json:"error_type,omitempty"`
	FileID        string `json:"file_id,omitempty"`
	Nlines        int64  `json:"nlines,omitempty"`
}

// autoscaling: GO endpoint.go Autoscaling (both required).
type autoscaling struct {
	MinReplicas int64 `json:"min_replicas"`
	MaxReplicas int64 `json:"max_replicas"`
}

// endpointCreateRequest: GO endpoint.go EndpointNewParams.
type endpointCreateRequest struct {
	Model       string      `json:"model"`
	Hardware    string      `json:"hardware"`
	DisplayName string      `json:"display_name"`
	Autoscaling autoscaling `json:"autoscaling"`
	State       string      `json:"state"`
}

// endpointUpdateRequest: GO endpoint.go EndpointUpdateParams.
type endpointUpdateRequest struct {
	DisplayName string       `json:"display_name"`
	Autoscaling *autoscaling `json:"autoscaling"`
	State       string       `json:"state"`
}

// dedicatedEndpoint: GO endpoint.go DedicatedEndpoint (all required).
type dedicatedEndpoint struct {
	ID          string      `json:"id"`
	Object      string      `json:"object"`
	Name        string      `json:"name"`
	DisplayName string      `json:"display_name"`
	Model       string      `json:"model"`
	Hardware    string      `json:"hardware"`
	Type        string      `json:"type"`
	Owner       string      `json:"owner"`
	State       string      `json:"state"`
	Autoscaling autoscaling `json:"autoscaling"`
	CreatedAt   time.Time   `json:"created_at"`
}

// endpointListItem: GO endpoint.go EndpointListResponseData (all
// required), inside EndpointListResponse {"object":"list","data":[…]}.
type endpointListItem struct {
	Object    string    `json:"object"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Model     string    `json:"model"`
	Type      string    `json:"type"`
	Owner     string    `json:"owner"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// modelObject: GO model.go ModelObject (required: id, created, object
// "model", type), in the bare array of GET /models. v1 has no deprecation
// field.
type modelObject struct {
	ID            string        `json:"id"`
	Object        string        `json:"object"`
	Created       int64         `json:"created"`
	Type          string        `json:"type"`
	DisplayName   string        `json:"display_name,omitempty"`
	Organization  string        `json:"organization,omitempty"`
	ContextLength int64         `json:"context_length,omitempty"`
	Pricing       *modelPricing `json:"pricing,omitempty"`
}

// modelPricing: GO model.go ModelObjectPricing (base, finetune, hourly,
// input, output required).
type modelPricing struct {
	Base     float64 `json:"base"`
	Finetune float64 `json:"finetune"`
	Hourly   float64 `json:"hourly"`
	Input    float64 `json:"input"`
	Output   float64 `json:"output"`
}

// supportedModel: GO betamodel.go SupportedModel (the required fields,
// camelCase), in GO packages/pagination CursorPagination {"data":[…],
// "next_cursor"} at GET https://api.together.ai/v2/supported-models.
type supportedModel struct {
	ID                 string            `json:"id"`
	BaseModel          string            `json:"baseModel"`
	BaseModelID        string            `json:"baseModelId"`
	Capabilities       []string          `json:"capabilities"`
	CreatedAt          time.Time         `json:"createdAt"`
	DeploymentProfiles []json.RawMessage `json:"deploymentProfiles"`
	DisplayName        string            `json:"displayName"`
	DisplayType        string            `json:"displayType"`
	InputModalities    []string          `json:"inputModalities"`
	Name               string            `json:"name"`
	OutputModalities   []string          `json:"outputModalities"`
	Products           []string          `json:"products"`
	Publisher          string            `json:"publisher"`
	Status             string            `json:"status"`
	UpdatedAt          time.Time         `json:"updatedAt"`
}

// supportedModelPage: GO packages/pagination CursorPagination.
type supportedModelPage struct {
	Data       []supportedModel `json:"data"`
	NextCursor string           `json:"next_cursor"`
}

// Supported-model statuses: GO betamodel.go SupportedModelStatus.
const (
	statusSupported  = "SUPPORTED_MODEL_STATUS_SUPPORTED"
	statusDeprecated = "SUPPORTED_MODEL_STATUS_DEPRECATED"
)

// errorData: OAS ErrorData ({"error": {message, type, param, code}}); batch
// routes answer {"error": "<string>"} instead (OAS batch responses).
type errorData struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}
