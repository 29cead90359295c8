package togethersim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/together"
)

// BatchOutcome scripts how a batch ends.
type BatchOutcome struct {
	// Fail, if set, makes validation fail with this error (status FAILED).
	Fail string
	// Expire makes the batch pass its deadline while in progress (EXPIRED).
	Expire bool
}

type batchScript struct {
	match   func(together.CreateBatchRequest) bool
	outcome BatchOutcome
}

type batch struct {
	together.Batch
	outcome BatchOutcome
}

// batchProgressStep is how far IN_PROGRESS moves per step.
const batchProgressStep = 25

// SetBatchScript makes batches whose create request matches end as outcome.
func (s *Server) SetBatchScript(match func(together.CreateBatchRequest) bool, outcome BatchOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bScripts = append(s.bScripts, batchScript{match: match, outcome: outcome})
}

// AddBatch preloads a batch, e.g. for adoption tests.
func (s *Server) AddBatch(b together.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.ID == "" {
		b.ID = s.nextID("batch")
	}
	if b.Status == "" {
		b.Status = together.BatchValidating
	}
	if b.CreatedAt == nil {
		t := s.now()
		b.CreatedAt = &t
	}
	s.batches[b.ID] = &batch{Batch: b}
}

func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	var req together.CreateBatchRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.InputFileID == "" || req.Endpoint == "" {
		writeError(w, r, http.StatusBadRequest, "", "input_file_id and endpoint are required")
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
	s.batches[b.ID] = b
	writeJSON(w, http.StatusCreated, map[string]any{"job": b.Batch, "warning": ""})
}

func (s *Server) newBatch(req together.CreateBatchRequest, size int64) *batch {
	now := s.now()
	deadline := now.Add(24 * time.Hour)
	b := &batch{Batch: together.Batch{
		ID: s.nextID("batch"), UserID: simUser, InputFileID: req.InputFileID, FileSizeBytes: size,
		Status: together.BatchValidating, JobDeadline: &deadline, CreatedAt: &now,
		Endpoint: req.Endpoint, ModelID: req.ModelID,
	}}
	for _, sc := range s.bScripts {
		if sc.match(req) {
			b.outcome = sc.outcome
		}
	}
	return b
}

// stepBatch advances one batch; callers hold s.mu.
func (s *Server) stepBatch(b *batch) {
	switch b.Status {
	case together.BatchValidating:
		if b.outcome.Fail != "" {
			b.Error = b.outcome.Fail
			s.finishBatch(b, together.BatchFailed)
			return
		}
		b.Status = together.BatchInProgress
	case together.BatchInProgress:
		b.Progress += batchProgressStep
		if b.outcome.Expire && b.Progress >= 50 {
			b.Error = "batch did not complete within its completion window"
			s.finishBatch(b, together.BatchExpired)
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
		b.TotalTokens += tokens
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
	s.finishBatch(b, together.BatchCompleted)
}

type batchLine struct {
	CustomID string          `json:"custom_id"`
	Body     json.RawMessage `json:"body"`
}

func (s *Server) answerLine(b *batch, line []byte) (out, errLine []byte, tokens int64) {
	var in batchLine
	if err := json.Unmarshal(line, &in); err != nil || in.CustomID == "" {
		e, _ := json.Marshal(map[string]any{"custom_id": in.CustomID, "error": map[string]string{"message": "line is not a valid batch request", "code": "invalid_request"}})
		return nil, e, 0
	}
	if bytes.Contains(in.Body, []byte("fail")) {
		e, _ := json.Marshal(map[string]any{"custom_id": in.CustomID, "error": map[string]string{"message": "the model could not answer this request", "code": "request_failed"}})
		return nil, e, 0
	}
	prompt := int64(len(in.Body)/4 + 1)
	const completion = 16
	o, _ := json.Marshal(map[string]any{"custom_id": in.CustomID, "response": map[string]any{
		"status_code": 200,
		"body": map[string]any{
			"id": s.nextID("cmpl"), "object": "chat.completion", "model": b.ModelID,
			"choices": []map[string]any{{"index": 0, "finish_reason": "stop",
				"message": map[string]string{"role": "assistant", "content": "Simulated answer to " + in.CustomID}}},
			"usage": map[string]int64{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
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

func (s *Server) finishBatch(b *batch, st together.BatchStatus) {
	now := s.now()
	b.Status, b.CompletedAt = st, &now
	done := push.BatchDone{BatchID: b.ID, TotalTokens: b.TotalTokens, Status: string(st),
		OutputFileID: b.OutputFileID, ErrorFileID: b.ErrorFileID, Error: b.Error}
	if b.OutputFileID != "" {
		done.OutputURL = "/v1/files/" + b.OutputFileID + "/content"
	}
	s.emit(togetherv1.EventBatchDone, done)
}

func (s *Server) lookupBatch(w http.ResponseWriter, r *http.Request) *batch {
	b, ok := s.batches[r.PathValue("id")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "", fmt.Sprintf("batch %s not found", r.PathValue("id")))
	}
	return b
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.lookupBatch(w, r); b != nil {
		writeJSON(w, http.StatusOK, b.Batch)
	}
}

// listBatches answers a bare array, like the real route.
func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]together.Batch, 0, len(s.batches))
	for _, id := range sortedKeys(s.batches) {
		out = append(out, s.batches[id].Batch)
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
	if b.Status.Terminal() {
		writeError(w, r, http.StatusBadRequest, "", fmt.Sprintf("batch is %s and cannot be cancelled", b.Status))
		return
	}
	s.finishBatch(b, together.BatchCancelled)
	writeJSON(w, http.StatusOK, b.Batch)
}
