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

package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxCustomIDLength is the longest custom_id Together accepts on a batch
// input line.
const MaxCustomIDLength = 64

// Batch endpoints whose request bodies the validator knows how to check:
// those TogetherBatch's spec.endpoint allows (Together's SDKs list no
// /v1/completions for a batch).
const (
	EndpointChatCompletions     = "/v1/chat/completions"
	EndpointAudioTranscriptions = "/v1/audio/transcriptions"
	EndpointAudioTranslations   = "/v1/audio/translations"
)

// BatchRequest is one valid line of a batch input file. Line keeps the bytes
// exactly as the user wrote them, so that a split part uploads the same
// requests the user reviewed.
type BatchRequest struct {
	// CustomID identifies the request in the output and error files.
	CustomID string
	// Line is the JSON object, without its trailing newline.
	Line []byte
}

// batchLine is the shape of an input line; Body stays raw so that its
// endpoint-specific check sees exactly what was sent.
type batchLine struct {
	CustomID json.RawMessage `json:"custom_id"`
	Body     json.RawMessage `json:"body"`
}

// CheckBatchLine checks one batch input line for endpoint and returns its
// custom_id, or a reason a person can act on. It does not check uniqueness,
// which needs the whole file; ParseBatchInput does that.
func CheckBatchLine(line []byte, endpoint string) (string, error) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 {
		return "", errors.New("the line is empty; remove blank lines from the file")
	}
	if trimmed[0] != '{' {
		return "", errors.New("not a JSON object; each line must be {\"custom_id\": ..., \"body\": {...}}")
	}
	var l batchLine
	if err := json.Unmarshal(trimmed, &l); err != nil {
		return "", fmt.Errorf("not valid JSON: %v", err)
	}
	if len(l.CustomID) == 0 || bytes.Equal(l.CustomID, []byte("null")) {
		return "", errors.New("custom_id is missing; give every request a unique custom_id")
	}
	var id string
	if err := json.Unmarshal(l.CustomID, &id); err != nil {
		return "", errors.New("custom_id must be a string")
	}
	if id == "" {
		return "", errors.New("custom_id is empty; give every request a unique custom_id")
	}
	if n := utf8.RuneCountInString(id); n > MaxCustomIDLength {
		return "", fmt.Errorf("custom_id is %d characters long; Together accepts at most %d", n, MaxCustomIDLength)
	}
	if len(l.Body) == 0 || bytes.Equal(l.Body, []byte("null")) {
		return "", errors.New("body is missing; put the request for the endpoint under \"body\"")
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(l.Body, &body); err != nil {
		return "", errors.New("body must be a JSON object holding the request for the endpoint")
	}
	if reason := checkBatchBody(body, endpoint); reason != "" {
		return "", errors.New(reason)
	}
	return id, nil
}

// checkBatchBody checks the fields an endpoint cannot do without; everything
// else is left to Together, which knows its models' parameters better.
func checkBatchBody(body map[string]json.RawMessage, endpoint string) string {
	switch endpoint {
	case EndpointChatCompletions, "":
		raw, ok := body["messages"]
		if !ok {
			return "body has no messages; requests for /v1/chat/completions need a non-empty messages list"
		}
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return "body.messages must be a list of objects with role and content"
		}
		if len(msgs) == 0 {
			return "body.messages is empty; requests for /v1/chat/completions need at least one message"
		}
		for i, m := range msgs {
			if m == nil {
				return fmt.Sprintf("body.messages[%d] must be an object with role and content", i)
			}
			var role string
			if err := json.Unmarshal(m["role"], &role); err != nil || role == "" {
				return fmt.Sprintf("body.messages[%d] has no role; set role to system, user or assistant", i)
			}
		}
	case EndpointAudioTranscriptions, EndpointAudioTranslations:
		if _, ok := body["file"]; !ok {
			return fmt.Sprintf("body has no file; requests for %s need the audio file", endpoint)
		}
	default:
		return fmt.Sprintf("endpoint %q is not one the operator can validate requests for", endpoint)
	}
	return ""
}

// ParseBatchInput reads JSONL batch requests from r, checks every line for
// endpoint and that custom_ids are unique, and returns the requests in input
// order. It stops at the first bad line and returns a *LineError naming it
// (1-based); other errors come from reading r. A final newline is allowed.
// The requests are held in memory: callers use it for inputs they already
// hold (a ConfigMap is at most about 1 MiB).
func ParseBatchInput(r io.Reader, endpoint string) ([]BatchRequest, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	seen := map[string]int{}
	var out []BatchRequest
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimRight(sc.Bytes(), "\r")
		id, err := CheckBatchLine(line, endpoint)
		if err != nil {
			return nil, &LineError{Line: n, Reason: err.Error()}
		}
		if first, dup := seen[id]; dup {
			return nil, &LineError{Line: n, Reason: fmt.Sprintf("custom_id %q is already used on line %d; custom_ids must be unique in the file", id, first)}
		}
		seen[id] = n
		out = append(out, BatchRequest{CustomID: id, Line: bytes.Clone(bytes.TrimSpace(line))})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Reason: fmt.Sprintf("longer than %d bytes", MaxLineBytes)}
		}
		return nil, fmt.Errorf("reading batch input: %w", err)
	}
	if len(out) == 0 {
		return nil, &LineError{Line: 1, Reason: "the file holds no requests"}
	}
	return out, nil
}

// SplitBatchRequests cuts requests into consecutive parts of at most max
// requests each, keeping input order; max <= 0 means one part.
func SplitBatchRequests(reqs []BatchRequest, max int) [][]BatchRequest {
	if max <= 0 || len(reqs) <= max {
		return [][]BatchRequest{reqs}
	}
	var parts [][]BatchRequest
	for start := 0; start < len(reqs); start += max {
		end := min(start+max, len(reqs))
		parts = append(parts, reqs[start:end])
	}
	return parts
}

// EncodeBatchRequests writes requests as JSONL, one line each, ending with a
// newline.
func EncodeBatchRequests(reqs []BatchRequest) []byte {
	var b bytes.Buffer
	for _, r := range reqs {
		b.Write(r.Line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
