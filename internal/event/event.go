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

// Package event holds the one value both sources (signed pushes and the
// poller) produce, and the decoder that turns a push of the contract in
// pkg/push into it.
package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// Event types that only the poller produces. They carry API state that the
// push contract has no event for (a job being queued, a batch's progress), and
// they go through the same apply step as pushed events. A push of these types
// is treated as an unknown type.
const (
	// TypeFineTuneStatus reports a fine-tune's remote status word.
	TypeFineTuneStatus togetherv1.EventType = "fine_tune.status"
	// TypeBatchProgress reports a running batch's status and progress.
	TypeBatchProgress togetherv1.EventType = "batch.progress"
)

// Event is the one value both sources produce. Fields that a type does not use
// stay zero.
type Event struct {
	// ID is the delivery's idempotency key: the envelope id of a push, or a
	// deterministic id (poll:<job>:<what>) from the poller.
	ID   string
	Type togetherv1.EventType
	// Time the event happened, as the sender says.
	Time time.Time

	// JobID is the fine-tune ID or batch ID the event is about.
	JobID string

	ModelName    string
	EvalLoss     *float64
	ErrorMessage string
	Step         int64
	Loss         *float64
	RemoteStatus string
	Progress     int32
	// SecondsRemaining is a running fine-tune's remaining-time estimate
	// (the poller reads it from the job's progress); nil leaves it as is.
	SecondsRemaining *int64

	OutputURL    string
	OutputFileID string
	ErrorFileID  string
	TotalTokens  int64

	Deprecation *push.ModelDeprecated
}

// DecodeError says what is wrong with a payload, naming the field. It holds
// nothing secret and is safe to return to the sender.
type DecodeError struct{ Msg string }

func (e *DecodeError) Error() string { return e.Msg }

// ErrUnknownType is returned by Decode for a well-formed envelope whose type
// this receiver does not handle; the sender should get a 2xx and stop retrying.
var ErrUnknownType = errors.New("unknown event type")

const maxIDLength = 256

// wireEnvelope is the push payload decoded in one pass: data is a union of
// every event type's fields, checked per type afterwards. It is decoded with
// the JSON v2 decoder (github.com/go-json-experiment/json), which validates
// and decodes in the same pass where encoding/json scans the body twice;
// that is most of what the endpoint spends per event before its write. Its
// stricter defaults suit a signed contract: member names match exactly,
// duplicate names and invalid UTF-8 are malformed input, unknown members are
// ignored so that senders can add fields.
type wireEnvelope struct {
	ID        *string    `json:"id"`
	Type      *string    `json:"type"`
	CreatedAt *time.Time `json:"created_at"`
	Data      *wireData  `json:"data"`
}

type wireData struct {
	FineTuneID       string   `json:"fine_tune_id"`
	ModelName        string   `json:"model_name"`
	EvalLoss         *float64 `json:"eval_loss"`
	ErrorMessage     string   `json:"error_message"`
	Step             *int64   `json:"step"`
	Loss             *float64 `json:"loss"`
	BatchID          string   `json:"batch_id"`
	OutputURL        string   `json:"output_url"`
	TotalTokens      int64    `json:"total_tokens"`
	Status           string   `json:"status"`
	OutputFileID     string   `json:"output_file_id"`
	ErrorFileID      string   `json:"error_file_id"`
	Error            string   `json:"error"`
	ModelID          string   `json:"model_id"`
	ReplacementModel string   `json:"replacement_model"`
	SunsetDate       string   `json:"sunset_date"`
}

// Decode parses a pushed payload. It rejects (with a *DecodeError) malformed
// JSON, a missing id or type, a data object missing its required fields, and
// fields of the wrong type; it returns ErrUnknownType for a type outside the
// push contract.
func Decode(body []byte) (Event, error) {
	var env wireEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, decodeFailure(body, err)
	}
	switch {
	case env.ID == nil || *env.ID == "":
		return Event{}, &DecodeError{Msg: "id is required"}
	case len(*env.ID) > maxIDLength:
		return Event{}, &DecodeError{Msg: fmt.Sprintf("id is longer than %d characters", maxIDLength)}
	case env.Type == nil || *env.Type == "":
		return Event{}, &DecodeError{Msg: "type is required"}
	}
	ev := Event{ID: *env.ID, Type: togetherv1.EventType(*env.Type)}
	if env.CreatedAt != nil {
		ev.Time = *env.CreatedAt
	}
	if !isPushType(ev.Type) {
		return ev, ErrUnknownType
	}
	if env.Data == nil {
		return Event{}, &DecodeError{Msg: "data must be a JSON object"}
	}
	if err := fromWire(&ev, env.Data); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// decodeFailure explains why a body did not decode. A type mismatch inside
// data of a type this receiver does not know is not the sender's error: such
// an event is acknowledged as unknown, as if its data had not been read.
func decodeFailure(body []byte, err error) error {
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return &DecodeError{Msg: "malformed JSON envelope: " + describeSyntax(err)}
	}
	field := fieldName(se.JSONPointer)
	switch {
	case field == "":
		return &DecodeError{Msg: "malformed JSON envelope: the payload must be a JSON object"}
	case field == "data" || strings.HasPrefix(field, "data."):
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &head) == nil && head.Type != "" && !isPushType(togetherv1.EventType(head.Type)) {
			return ErrUnknownType
		}
		if field == "data" {
			return &DecodeError{Msg: "data must be a JSON object"}
		}
	}
	return &DecodeError{Msg: describeType(field, se)}
}

// fieldName turns a JSON pointer (/data/step) into the dotted name the
// messages use (data.step).
func fieldName(p jsontext.Pointer) string {
	return strings.ReplaceAll(strings.TrimPrefix(string(p), "/"), "/", ".")
}

// describeType names the field whose value has the wrong type or range.
// When the JSON kind was right (a number too large, a string that is not a
// timestamp), it says what the value must be; otherwise also what it was.
func describeType(field string, se *json.SemanticError) string {
	want, kind := expected(se.GoType)
	switch {
	case se.JSONKind == '0' && kind == '0':
		return fmt.Sprintf("field %s must be %s in range", field, want)
	case se.JSONKind != 0 && se.JSONKind == kind:
		return fmt.Sprintf("field %s must be %s", field, want)
	}
	return fmt.Sprintf("field %s must be %s, not a JSON %s", field, want, kindName(se.JSONKind))
}

// expected says in words what a field of Go type t accepts, and the JSON
// kind that carries it.
func expected(t reflect.Type) (string, jsontext.Kind) {
	if t == nil {
		return "of another type", 0
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "an RFC 3339 timestamp", '"'
	case t.Kind() == reflect.String:
		return "a string", '"'
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number", '0'
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number", '0'
	case t.Kind() == reflect.Struct:
		return "a JSON object", '{'
	}
	return "a " + t.String(), 0
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}

// describeSyntax says where a body stops being JSON, without echoing it.
func describeSyntax(err error) string {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && se.Err != nil {
		return fmt.Sprintf("%v at byte %d", se.Err, se.ByteOffset)
	}
	return err.Error()
}

func isPushType(t togetherv1.EventType) bool {
	for _, k := range togetherv1.AllEventTypes {
		if k == t {
			return true
		}
	}
	return false
}

// fromWire checks the fields each type requires and fills the event.
func fromWire(ev *Event, d *wireData) error {
	switch ev.Type {
	case togetherv1.EventFineTuneCompleted:
		if err := require("data.fine_tune_id", d.FineTuneID, "data.model_name", d.ModelName); err != nil {
			return err
		}
		if d.Step != nil && *d.Step < 0 {
			return &DecodeError{Msg: "data.step must not be negative"}
		}
		ev.JobID, ev.ModelName, ev.EvalLoss, ev.RemoteStatus = d.FineTuneID, d.ModelName, d.EvalLoss, "completed"
		if d.Step != nil {
			ev.Step = *d.Step
		}
	case togetherv1.EventFineTuneFailed:
		if err := require("data.fine_tune_id", d.FineTuneID, "data.error_message", d.ErrorMessage); err != nil {
			return err
		}
		if d.Step != nil && *d.Step < 0 {
			return &DecodeError{Msg: "data.step must not be negative"}
		}
		ev.JobID, ev.ErrorMessage, ev.RemoteStatus = d.FineTuneID, d.ErrorMessage, "error"
		if d.Step != nil {
			ev.Step = *d.Step
		}
	case togetherv1.EventFineTuneCheckpoint:
		if err := require("data.fine_tune_id", d.FineTuneID); err != nil {
			return err
		}
		if d.Step == nil || *d.Step < 0 {
			return &DecodeError{Msg: "data.step is required and must not be negative"}
		}
		ev.JobID, ev.Step, ev.Loss = d.FineTuneID, *d.Step, d.Loss
	case togetherv1.EventBatchDone:
		if err := require("data.batch_id", d.BatchID); err != nil {
			return err
		}
		if d.TotalTokens < 0 {
			return &DecodeError{Msg: "data.total_tokens must not be negative"}
		}
		status := d.Status
		if status == "" {
			status = "COMPLETED"
		}
		if !batchTerminalStatus[status] {
			return &DecodeError{Msg: "data.status must be one of COMPLETED, FAILED, EXPIRED, CANCELLED"}
		}
		ev.JobID, ev.OutputURL, ev.TotalTokens, ev.RemoteStatus = d.BatchID, d.OutputURL, d.TotalTokens, status
		ev.OutputFileID, ev.ErrorFileID, ev.ErrorMessage = d.OutputFileID, d.ErrorFileID, d.Error
	case togetherv1.EventModelDeprecated:
		if err := require("data.model_id", d.ModelID, "data.sunset_date", d.SunsetDate); err != nil {
			return err
		}
		if _, err := time.Parse(time.DateOnly, d.SunsetDate); err != nil {
			return &DecodeError{Msg: "data.sunset_date must be a date in the form YYYY-MM-DD"}
		}
		ev.JobID = d.ModelID
		ev.Deprecation = &push.ModelDeprecated{ModelID: d.ModelID, ReplacementModel: d.ReplacementModel, SunsetDate: d.SunsetDate}
	}
	return nil
}

// batchTerminalStatus lists the terminal batch statuses batch.done may carry.
var batchTerminalStatus = map[string]bool{"COMPLETED": true, "FAILED": true, "EXPIRED": true, "CANCELLED": true}

// require checks pairs of (field name, value) for non-empty values.
func require(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return &DecodeError{Msg: pairs[i] + " is required"}
		}
	}
	return nil
}
