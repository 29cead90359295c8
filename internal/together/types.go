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
	// Loss is not in Together's documented event schema; it is decoded when
	// a server (such as the project's simulator) includes it.
	Loss *float64 `json:"loss,omitempty"`
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

// FineTuneMetrics is the latest training and evaluation loss a job
// reported; either is nil when the server has no such value yet.
type FineTuneMetrics struct {
	TrainLoss *float64
	EvalLoss  *float64
	// Raw holds every metrics row as the server sent it.
	Raw []map[string]any
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
	// TotalTokens is not in Together's documented schema; the simulator
	// reports it and the real service may leave it zero.
	TotalTokens int64 `json:"total_tokens,omitempty"`
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
	// Deprecated is the project's own extension: Together's v1 /models has
	// no deprecation field, so this is nil against the real service. The
	// simulator fills it in for models marked deprecated.
	Deprecated *ModelDeprecation `json:"deprecated,omitempty"`
}

// ModelPricing is a model's price list.
type ModelPricing struct {
	Input    float64 `json:"input"`
	Output   float64 `json:"output"`
	Hourly   float64 `json:"hourly"`
	Base     float64 `json:"base"`
	Finetune float64 `json:"finetune"`
}

// ModelDeprecation says which model replaces a deprecated one and when the
// old one goes away (a date, YYYY-MM-DD).
type ModelDeprecation struct {
	ReplacementModel string `json:"replacement_model"`
	SunsetDate       string `json:"sunset_date"`
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
