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
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// Batch statuses (GO batch.go BatchJobStatus).
const (
	batchValidating = "VALIDATING"
	batchInProgress = "IN_PROGRESS"
	batchCompleted  = "COMPLETED"
	batchFailed     = "FAILED"
	batchExpired    = "EXPIRED"
	batchCancelled  = "CANCELLED"
)

func batchTerminal(s string) bool {
	return s == batchCompleted || s == batchFailed || s == batchExpired || s == batchCancelled
}

// BatchRequest is what a batch script matches on.
type BatchRequest struct {
	InputFileID string
	Endpoint    string
	ModelID     string
}

// Batch preloads a batch with AddBatch, as if created earlier.
type Batch struct {
	ID           string
	InputFileID  string
	Status       string
	Progress     float64
	Endpoint     string
	ModelID      string
	OutputFileID string
	// Account is the key of the account (AddAccount) the batch belongs
	// to; empty for the default account.
	Account string
	// Outcome scripts how it ends (default: completes).
	Outcome *BatchOutcome
}

// batchEndpoints are the endpoints a batch may target (GO batch.go
// BatchNewParamsEndpoint, TS batches.ts): /v1/completions is not one.
var batchEndpoints = []string{"/v1/chat/completions", "/v1/audio/transcriptions", "/v1/audio/translations"}

// BatchOutcome scripts how a batch ends.
type BatchOutcome struct {
	// Fail, if set, makes validation fail with this error (status FAILED).
	Fail string
	// Expire makes the batch pass its deadline while in progress (EXPIRED).
	Expire bool
	// Stall keeps the batch in progress forever, for tests that need one
	// still running.
	Stall bool
}

type batchScript struct {
	match   func(BatchRequest) bool
	outcome BatchOutcome
}

type batch struct {
	batchJob
	outcome BatchOutcome
	// tokens is what the output file's usage lines add up to, for the
	// simulator's own push (the batch object carries none).
	tokens int64
	// account owns the batch (see AddAccount).
	account string
}

// batchProgressStep is how far IN_PROGRESS moves per step.
const batchProgressStep = 25

// SetBatchScript makes batches whose create request matches end as outcome.
func (s *Server) SetBatchScript(match func(BatchRequest) bool, outcome BatchOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bScripts = append(s.bScripts, batchScript{match: match, outcome: outcome})
}

// AddBatch preloads a batch, e.g. for adoption tests, and returns its ID.
func (s *Server) AddBatch(b Batch) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.ID == "" {
		b.ID = newID("")
	}
	if b.Status == "" {
		b.Status = batchValidating
	}
	t := s.now()
	j := batchJob{ID: b.ID, UserID: simUser, InputFileID: b.InputFileID, Status: b.Status, CreatedAt: &t,
		Endpoint: b.Endpoint, Progress: b.Progress, ModelID: b.ModelID, OutputFileID: b.OutputFileID}
	if batchTerminal(b.Status) {
		j.CompletedAt = &t
	}
	nb := &batch{batchJob: j, account: b.Account}
	if b.Outcome != nil {
		nb.outcome = *b.Outcome
	}
	s.batches[b.ID] = nb
	return b.ID
}

func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	var req batchCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.InputFileID == "" || req.Endpoint == "" {
		writeError(w, r, http.StatusBadRequest, "", "input_file_id and endpoint are required")
		return
	}
	if !slices.Contains(batchEndpoints, req.Endpoint) {
		writeError(w, r, http.StatusBadRequest, "", fmt.Sprintf("endpoint %s is not one of %v", req.Endpoint, batchEndpoints))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[req.InputFileID]
	if !ok {
		writeError(w, r, http.StatusBadRequest, "", fmt.Sprintf("input file %s not found", req.InputFileID))
		return
	}
	b := s.newBatch(req, f.Bytes)
	b.account = s.accountOfLocked(bearer(r))
	s.batches[b.ID] = b
	writeJSON(w, http.StatusCreated, batchCreateResponse{Job: b.batchJob, Warning: ""})
}

// newBatch builds a validating batch; its ID is a bare UUID (GO batch.go
// BatchJob id format uuid).
func (s *Server) newBatch(req batchCreateRequest, size int64) *batch {
	now := s.now()
	deadline := now.Add(24 * time.Hour)
	b := &batch{batchJob: batchJob{
		ID: newID(""), UserID: simUser, InputFileID: req.InputFileID, FileSizeBytes: size,
		Status: batchValidating, JobDeadline: &deadline, CreatedAt: &now,
		Endpoint: req.Endpoint, ModelID: req.ModelID,
	}}
	br := BatchRequest{InputFileID: req.InputFileID, Endpoint: req.Endpoint, ModelID: req.ModelID}
	for _, sc := range s.bScripts {
		if sc.match(br) {
			b.outcome = sc.outcome
		}
	}
	return b
}

// stepBatch advances one batch; callers hold s.mu.
func (s *Server) stepBatch(b *batch) {
	switch b.Status {
	case batchValidating:
		if b.outcome.Fail != "" {
			b.Error = b.outcome.Fail
			s.finishBatch(b, batchFailed)
			return
		}
		b.Status = batchInProgress
	case batchInProgress:
		if b.outcome.Stall {
			return
		}
		b.Progress += batchProgressStep
		if b.outcome.Expire && b.Progress >= 50 {
			b.Error = "batch did not complete within its completion window"
			s.finishBatch(b, batchExpired)
			return
		}
		if b.Progress >= 100 {
			b.Progress = 100
			s.runBatch(b)
		}
	}
}

// runBatch answers every input line: an output line per success and an
// error line per failure, both shuffled as the real service does not keep
// input order. A line fails when it is not JSON, has no custom_id, or its
// body contains the text "fail" (the simulator's documented test rule).
func (s *Server) runBatch(b *batch) {
	var out, errs [][]byte
	sc := bufio.NewScanner(bytes.NewReader(s.content(b.InputFileID)))
	sc.Buffer(make([]byte, 64<<10), 10<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		o, e, tokens := s.answerLine(b, line)
		b.tokens += tokens
		if o != nil {
			out = append(out, o)
		}
		if e != nil {
			errs = append(errs, e)
		}
	}
	s.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	b.OutputFileID = s.storeFile(b.ID+"-output.jsonl", "batch-generated", joinLines(out)).ID
	if len(errs) > 0 {
		b.ErrorFileID = s.storeFile(b.ID+"-error.jsonl", "batch-generated", joinLines(errs)).ID
	}
	s.finishBatch(b, batchCompleted)
}

type batchLine struct {
	CustomID string          `json:"custom_id"`
	Body     json.RawMessage `json:"body"`
}

// answerLine writes one output line (a chat completion with usage) or
// one error line, in the shapes of SK together-batch-inference
// api-reference.md.
func (s *Server) answerLine(b *batch, line []byte) (out, errLine []byte, tokens int64) {
	var in batchLine
	if err := json.Unmarshal(line, &in); err != nil || in.CustomID == "" {
		e, _ := json.Marshal(batchErrorLine{CustomID: in.CustomID, Error: batchLineError{Message: "line is not a valid batch request", Code: "invalid_request"}})
		return nil, e, 0
	}
	if bytes.Contains(in.Body, []byte("fail")) {
		e, _ := json.Marshal(batchErrorLine{CustomID: in.CustomID, Error: batchLineError{Message: "the model could not answer this request", Code: "request_failed"}})
		return nil, e, 0
	}
	prompt := int64(len(in.Body)/4 + 1)
	const completion = 16
	o, _ := json.Marshal(batchOutputLine{CustomID: in.CustomID, Response: batchOutputResponse{
		StatusCode: 200,
		Body: chatCompletion{
			ID: "cmpl-" + newID(""), Object: "chat.completion", Created: s.now().Unix(), Model: b.ModelID,
			Choices: []chatChoice{{Index: 0, FinishReason: "stop", Message: chatMessage{Role: "assistant", Content: "Simulated answer to " + in.CustomID}}},
			Usage:   chatUsage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
		},
	}})
	return o, nil, prompt + completion
}

func joinLines(lines [][]byte) []byte {
	if len(lines) == 0 {
		return []byte{}
	}
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

func (s *Server) finishBatch(b *batch, st string) {
	now := s.now()
	b.Status, b.CompletedAt = st, &now
	done := push.BatchDone{BatchID: b.ID, TotalTokens: b.tokens, Status: st,
		OutputFileID: b.OutputFileID, ErrorFileID: b.ErrorFileID, Error: b.Error}
	if b.OutputFileID != "" {
		done.OutputURL = "/v1/files/" + b.OutputFileID + "/content"
	}
	s.emit(togetherv1.EventBatchDone, done)
}

func (s *Server) lookupBatch(w http.ResponseWriter, r *http.Request) *batch {
	b, ok := s.batches[r.PathValue("id")]
	if ok && b.account != s.accountOfLocked(bearer(r)) {
		ok, b = false, nil // another account's batch is as unknown as a missing one
	}
	if !ok {
		writeError(w, r, http.StatusNotFound, "", fmt.Sprintf("batch %s not found", r.PathValue("id")))
	}
	return b
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.lookupBatch(w, r); b != nil {
		writeJSON(w, http.StatusOK, b.batchJob)
	}
}

// listBatches answers a bare array, like the real route.
func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]batchJob, 0, len(s.batches))
	account := s.accountOfLocked(bearer(r))
	for _, id := range sortedKeys(s.batches) {
		if s.batches[id].account != account {
			continue
		}
		out = append(out, s.batches[id].batchJob)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.lookupBatch(w, r)
	if b == nil {
		return
	}
	if batchTerminal(b.Status) {
		writeError(w, r, http.StatusBadRequest, "", fmt.Sprintf("batch is %s and cannot be cancelled", b.Status))
		return
	}
	s.finishBatch(b, batchCancelled)
	writeJSON(w, http.StatusOK, b.batchJob)
}
