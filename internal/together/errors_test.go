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
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseAPIErrorShapes reads the message from each of the API's three
// error body shapes, kept as golden fixtures.
func TestParseAPIErrorShapes(t *testing.T) {
	cases := []struct {
		file, msg, typ, code string
	}{
		{"error_data.json", "Invalid API key provided.", "invalid_request_error", "invalid_api_key"},
		{"error_batch.json", "batch b-404 not found", "", ""},
		{"error_message.json", "model not found", "", ""},
	}
	for _, tc := range cases {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		e := parseAPIError("Op", 404, http.Header{}, b, "")
		if e.Message != tc.msg || e.Type != tc.typ || e.Code != tc.code {
			t.Errorf("%s: got %+v", tc.file, e)
		}
	}
}

func TestParseAPIErrorRedactsKeyAndReadsRetryAfter(t *testing.T) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "key sk-abc is invalid", "code": 7}})
	e := parseAPIError("Op", 429, http.Header{"Retry-After": {"3"}}, body, "sk-abc")
	if strings.Contains(e.Error(), "sk-abc") || e.Code != "7" || e.RetryAfter.Seconds() != 3 {
		t.Errorf("got %+v / %q", e, e.Error())
	}
	if !IsRateLimited(e) || IsServerError(e) || outcome(e) != "rate_limited" {
		t.Errorf("classification of 429 wrong: %+v", e)
	}
}

func TestBatchSizeJSON(t *testing.T) {
	for in, want := range map[string]BatchSize{`"max"`: BatchSizeMax, `32`: 32, `null`: 0} {
		var b BatchSize
		if err := json.Unmarshal([]byte(in), &b); err != nil || b != want {
			t.Errorf("%s → %v, %v", in, b, err)
		}
	}
	var b BatchSize
	if err := json.Unmarshal([]byte(`"huge"`), &b); err == nil {
		t.Error(`"huge" decoded without error`)
	}
	if out, _ := json.Marshal(BatchSizeMax); string(out) != `"max"` {
		t.Errorf("BatchSizeMax marshals to %s", out)
	}
}

func TestCheckRetryOnlyRetriesCreatesOn429(t *testing.T) {
	ctx := withIdempotency(t.Context(), false)
	for status, want := range map[int]bool{429: true, 500: false, 503: false} {
		if got, _ := checkRetry(ctx, &http.Response{StatusCode: status}, nil); got != want {
			t.Errorf("non-idempotent %d: retry = %v, want %v", status, got, want)
		}
	}
	idem := withIdempotency(t.Context(), true)
	for status, want := range map[int]bool{429: true, 500: true, 503: true, 404: false, 400: false} {
		if got, _ := checkRetry(idem, &http.Response{StatusCode: status}, nil); got != want {
			t.Errorf("idempotent %d: retry = %v, want %v", status, got, want)
		}
	}
}
