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

// Package push is the push contract this project defines for relays you run
// and for the day Together offers pushes (Together's public API pushes
// nothing today): the envelope, the five event types and their data, and the
// two signature forms. It imports nothing else from the project, so a relay
// can import it alone; the operator's receiver and the simulator use the same
// code, so sender and receiver cannot drift apart.
package push

import (
	"encoding/json"
	"time"
)

// The event types of the contract. The subscription API lists the same
// names (api/v1alpha1 AllEventTypes); a test keeps the two equal.
const (
	TypeFineTuneCompleted  = "fine_tune.completed"
	TypeFineTuneFailed     = "fine_tune.failed"
	TypeFineTuneCheckpoint = "fine_tune.checkpoint"
	TypeBatchDone          = "batch.done"
	TypeModelDeprecated    = "model.deprecated"
)

// Types lists every event type of the contract.
var Types = []string{TypeFineTuneCompleted, TypeFineTuneFailed, TypeFineTuneCheckpoint, TypeBatchDone, TypeModelDeprecated}

// Envelope is the wire form of a pushed event: {id, type, created_at, data}.
// It and the data types below are what senders (a relay, the
// simulator, together-sim send, tests) encode; the operator's decoder reads
// the same fields.
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
	// Step is the step the job ended at. A receiver ignores checkpoints
	// beyond it, so that a stray or replayed checkpoint cannot change a
	// finished job's result. Optional: 0 says nothing.
	Step int64 `json:"step,omitempty"`
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
