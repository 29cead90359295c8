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

package event

import (
	"errors"
	"slices"
	"strings"
	"testing"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name, body string
		wantErr    string // substring of a *DecodeError; "unknown" for ErrUnknownType
	}{
		{"checkpoint", `{"id":"e1","type":"fine_tune.checkpoint","created_at":"2026-01-01T00:00:00Z","data":{"fine_tune_id":"ft-1","step":10,"loss":1.5}}`, ""},
		{"completed", `{"id":"e1","type":"fine_tune.completed","data":{"fine_tune_id":"ft-1","model_name":"m","eval_loss":0.2}}`, ""},
		{"failed", `{"id":"e1","type":"fine_tune.failed","data":{"fine_tune_id":"ft-1","error_message":"boom","step":3}}`, ""},
		{"batch", `{"id":"e1","type":"batch.done","data":{"batch_id":"b","output_url":"u","total_tokens":7}}`, ""},
		{"deprecated", `{"id":"e1","type":"model.deprecated","data":{"model_id":"a","replacement_model":"b","sunset_date":"2027-01-01"}}`, ""},
		{"truncated", `{"id":"e1","type":"fine_tune.checkpoint","data":{"fine_`, "malformed JSON"},
		{"not an object", `[]`, "malformed JSON"},
		{"trailing garbage", `{"id":"e1","type":"batch.done","data":{"batch_id":"b"}} {}`, "malformed JSON"},
		{"missing id", `{"type":"batch.done","data":{"batch_id":"b"}}`, "id is required"},
		{"empty id", `{"id":"","type":"batch.done","data":{"batch_id":"b"}}`, "id is required"},
		{"id wrong type", `{"id":5,"type":"batch.done","data":{"batch_id":"b"}}`, "field id must be a string"},
		{"missing type", `{"id":"e","data":{}}`, "type is required"},
		{"unknown type", `{"id":"e","type":"fine_tune.started","data":{}}`, "unknown"},
		{"poll-only type pushed", `{"id":"e","type":"fine_tune.status","data":{}}`, "unknown"},
		{"data missing", `{"id":"e","type":"batch.done"}`, "data must be a JSON object"},
		{"data null", `{"id":"e","type":"batch.done","data":null}`, "data must be a JSON object"},
		{"step wrong type", `{"id":"e","type":"fine_tune.checkpoint","data":{"fine_tune_id":"f","step":"ten"}}`, "step must be"},
		{"step missing", `{"id":"e","type":"fine_tune.checkpoint","data":{"fine_tune_id":"f"}}`, "data.step is required"},
		{"negative step", `{"id":"e","type":"fine_tune.checkpoint","data":{"fine_tune_id":"f","step":-1}}`, "data.step is required and must not be negative"},
		{"no job id", `{"id":"e","type":"fine_tune.completed","data":{"model_name":"m"}}`, "data.fine_tune_id is required"},
		{"no model name", `{"id":"e","type":"fine_tune.completed","data":{"fine_tune_id":"f"}}`, "data.model_name is required"},
		{"loss wrong type", `{"id":"e","type":"fine_tune.checkpoint","data":{"fine_tune_id":"f","step":1,"loss":"low"}}`, "loss must be"},
		{"bad sunset", `{"id":"e","type":"model.deprecated","data":{"model_id":"a","sunset_date":"soon"}}`, "data.sunset_date must be a date"},
		{"bad batch status", `{"id":"e","type":"batch.done","data":{"batch_id":"b","status":"DONE"}}`, "data.status must be one of"},
		{"negative tokens", `{"id":"e","type":"batch.done","data":{"batch_id":"b","total_tokens":-5}}`, "total_tokens must not be negative"},
		{"duplicate member", `{"id":"e1","type":"batch.done","id":"e2","data":{"batch_id":"b"}}`, "duplicate object member name"},
		{"invalid UTF-8", "{\"id\":\"e\xff\",\"type\":\"batch.done\",\"data\":{\"batch_id\":\"b\"}}", "invalid UTF-8"},
		{"bad created_at", `{"id":"e","type":"batch.done","created_at":"yesterday","data":{"batch_id":"b"}}`, "field created_at must be an RFC 3339 timestamp"},
		{"step too large", `{"id":"e","type":"fine_tune.checkpoint","data":{"fine_tune_id":"f","step":1e99}}`, "field data.step must be a whole number in range"},
		{"long id", `{"id":"` + strings.Repeat("x", 300) + `","type":"batch.done","data":{"batch_id":"b"}}`, "id is longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode([]byte(tc.body))
			switch {
			case tc.wantErr == "":
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if ev.ID == "" || ev.JobID == "" {
					t.Fatalf("decoded event lacks id or job: %+v", ev)
				}
			case tc.wantErr == "unknown":
				if !errors.Is(err, ErrUnknownType) {
					t.Fatalf("want ErrUnknownType, got %v", err)
				}
			default:
				var de *DecodeError
				if !errors.As(err, &de) || !strings.Contains(de.Msg, tc.wantErr) {
					t.Fatalf("want DecodeError containing %q, got %v", tc.wantErr, err)
				}
			}
		})
	}
}

// FuzzDecode checks that no input panics the decoder and that whatever it
// accepts carries the fields the apply step relies on. `make test` runs the
// seed corpus; `go test -fuzz=FuzzDecode ./internal/event` explores further.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"e1","type":"fine_tune.checkpoint","data":{"fine_tune_id":"ft-1","step":10,"loss":1.5}}`,
		`{"id":"e1","type":"fine_tune.completed","data":{"fine_tune_id":"ft-1","model_name":"m","eval_loss":0.2}}`,
		`{"id":"e1","type":"batch.done","data":{"batch_id":"b","total_tokens":7,"status":"FAILED"}}`,
		`{"id":"e1","type":"model.deprecated","data":{"model_id":"a","sunset_date":"2027-01-01"}}`,
		`{"id":"e1","type":"x"}`, `{`, `null`, `{"id":"e","type":"fine_tune.failed","data":{"fine_tune_id":"f","error_message":"m","step":1e99}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Decode(body)
		if err != nil {
			var de *DecodeError
			if !errors.Is(err, ErrUnknownType) && !errors.As(err, &de) {
				t.Fatalf("error of unexpected kind: %T %v", err, err)
			}
			return
		}
		if ev.ID == "" || ev.JobID == "" || len(ev.ID) > maxIDLength {
			t.Fatalf("accepted an event without id or job: %+v", ev)
		}
		if ev.Step < 0 || ev.TotalTokens < 0 {
			t.Fatalf("accepted negative counters: %+v", ev)
		}
	})
}

// TestContractTypesMatchTheAPI keeps the push contract's type names (which a
// relay imports from pkg/push) equal to those a subscription may list.
func TestContractTypesMatchTheAPI(t *testing.T) {
	var api []string
	for _, e := range togetherv1.AllEventTypes {
		api = append(api, string(e))
	}
	if !slices.Equal(api, push.Types) {
		t.Fatalf("pkg/push types %v differ from api/v1alpha1 AllEventTypes %v", push.Types, api)
	}
}
