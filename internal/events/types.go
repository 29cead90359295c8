// Package events holds the event values that both sources (signed pushes and
// the poller) produce, and the one apply step that records an event's effect
// in the status of the right resource.
package events

import (
	"encoding/json"
	"time"
)

// Envelope is the wire form of a pushed event: {id, type, created_at, data}.
// It and the data types below are what senders (the simulator, the
// together-events CLI, tests) encode; Decode reads the same fields.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// FineTuneCompleted is the data of fine_tune.completed.
type FineTuneCompleted struct {
	FineTuneID string   `json:"fine_tune_id"`
	ModelName  string   `json:"model_name"`
	EvalLoss   *float64 `json:"eval_loss,omitempty"`
}

// FineTuneFailed is the data of fine_tune.failed.
type FineTuneFailed struct {
	FineTuneID   string `json:"fine_tune_id"`
	ErrorMessage string `json:"error_message"`
	Step         int64  `json:"step"`
}

// FineTuneCheckpoint is the data of fine_tune.checkpoint.
type FineTuneCheckpoint struct {
	FineTuneID string   `json:"fine_tune_id"`
	Step       int64    `json:"step"`
	Loss       *float64 `json:"loss,omitempty"`
}

// BatchDone is the data of batch.done.
type BatchDone struct {
	BatchID     string `json:"batch_id"`
	OutputURL   string `json:"output_url,omitempty"`
	TotalTokens int64  `json:"total_tokens"`
	// Status is the batch's terminal status (COMPLETED, FAILED, EXPIRED,
	// CANCELLED); absent means COMPLETED.
	Status string `json:"status,omitempty"`
	// OutputFileID and ErrorFileID name the result files; a sender may omit
	// them, and the batch reconciler then reads them from the API.
	OutputFileID string `json:"output_file_id,omitempty"`
	ErrorFileID  string `json:"error_file_id,omitempty"`
	Error        string `json:"error,omitempty"`
}

// ModelDeprecated is the data of model.deprecated.
type ModelDeprecated struct {
	ModelID          string `json:"model_id"`
	ReplacementModel string `json:"replacement_model"`
	SunsetDate       string `json:"sunset_date"`
}
