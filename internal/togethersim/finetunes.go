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
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// simUser is the account every simulated job belongs to.
const simUser = "sim-user"

// Fine-tune statuses (GO finetuning.go FinetuneResponseStatus).
const (
	ftPending         = "pending"
	ftQueued          = "queued"
	ftRunning         = "running"
	ftCompressing     = "compressing"
	ftUploading       = "uploading"
	ftCancelRequested = "cancel_requested"
	ftCancelled       = "cancelled"
	ftError           = "error"
	ftCompleted       = "completed"
)

func ftTerminal(s string) bool { return s == ftCancelled || s == ftError || s == ftCompleted }

// FineTuneRequest is what a fine-tune script matches on: the create
// request's fields as the simulator read them from the wire.
type FineTuneRequest struct {
	Model          string
	TrainingFile   string
	ValidationFile string
	Suffix         string
	NEvals         int64
	LearningRate   *float64
}

// FineTuneOutcome scripts how a fine-tune ends.
type FineTuneOutcome struct {
	// FailAtStep, if positive, makes the job go to "error" at that
	// training step with FailMessage.
	FailAtStep  int
	FailMessage string
	// EvalLoss is the final evaluation loss (default 0.42). Evaluation rows
	// exist only for jobs with a validation file and n_evals > 0, as on
	// the real service.
	EvalLoss float64
	// Stall keeps the job running forever, for timeout tests.
	Stall bool
}

type ftScript struct {
	match   func(FineTuneRequest) bool
	outcome FineTuneOutcome
}

// FineTune preloads a job with AddFineTune, as if created earlier.
type FineTune struct {
	ID           string
	Status       string
	Model        string
	Suffix       string
	LearningRate float64
	StartedAt    *time.Time
	// ValidationFile and NEvals make the job log evaluation rows;
	// NCheckpoints is how many checkpoint_save events it writes (default 1).
	ValidationFile string
	NEvals         int64
	NCheckpoints   int64
	// Outcome scripts how it ends (default: completes, eval loss 0.42).
	Outcome *FineTuneOutcome
	// CheckpointSteps are steps at which checkpoint_save events were
	// logged before it was preloaded.
	CheckpointSteps []int64
	// ModelOutputName is the output model of a job preloaded as completed
	// (it then names no registry model, as an older job would not).
	ModelOutputName string
	// Account is the key of the account (AddAccount) the job belongs to;
	// empty for the default account.
	Account string
}

// fineTune is a job's state; its wire forms are built by full and truncated.
type fineTune struct {
	id, status, model, trainingFile, validationFile, suffix string
	outputName, outputPath                                  string
	modelObjectID, modelObjectRevisionID                    string
	adapterObjectID, adapterObjectRevisionID                string
	nEpochs, nCheckpoints, nEvals, epochsCompleted          int64
	batchSize                                               any
	learningRate, warmupRatio                               float64
	trainingType                                            *trainingType
	tokenCount                                              int64
	createdAt, updatedAt                                    time.Time
	startedAt                                               *time.Time
	events                                                  []ftEvent
	metrics                                                 []map[string]float64
	outcome                                                 FineTuneOutcome
	step                                                    int
	// account owns the job (see AddAccount).
	account string
}

// SetFineTuneScript makes jobs whose create request matches end as outcome.
// Later scripts win over earlier ones; unmatched jobs complete.
func (s *Server) SetFineTuneScript(match func(FineTuneRequest) bool, outcome FineTuneOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ftScripts = append(s.ftScripts, ftScript{match: match, outcome: outcome})
}

// AddFineTune preloads a job as if created earlier, e.g. for adoption
// tests, and returns its ID. A job that is not terminal keeps moving from
// its status.
func (s *Server) AddFineTune(ft FineTune) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ft.ID == "" {
		ft.ID = newID("ft-")
	}
	if ft.Status == "" {
		ft.Status = ftPending
	}
	now := s.now()
	j := &fineTune{id: ft.ID, status: ft.Status, model: ft.Model, suffix: ft.Suffix, learningRate: ft.LearningRate,
		nEpochs: 1, nCheckpoints: orDefault(ft.NCheckpoints, 1), nEvals: ft.NEvals, validationFile: ft.ValidationFile,
		batchSize: "max", createdAt: now, updatedAt: now, startedAt: ft.StartedAt, outcome: FineTuneOutcome{EvalLoss: 0.42}}
	j.outputName = ft.ModelOutputName
	j.account = ft.Account
	for _, st := range ft.CheckpointSteps {
		ev := s.addFTEvent(j, "checkpoint_save", "info", fmt.Sprintf("Checkpoint saved at step %d", st))
		ev.Step = st
		j.step = max(j.step, int(st))
	}
	if ft.Outcome != nil {
		j.outcome = *ft.Outcome
		if j.outcome.EvalLoss == 0 {
			j.outcome.EvalLoss = 0.42
		}
	}
	if j.learningRate == 0 {
		j.learningRate = 1e-5
	}
	s.fineTunes[j.id] = j
	return j.id
}

func (s *Server) createFineTune(w http.ResponseWriter, r *http.Request) {
	var req ftCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := validateFineTune(req); msg != "" {
		writeError(w, r, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[req.TrainingFile]; !ok {
		writeError(w, r, http.StatusBadRequest, "file_not_found", fmt.Sprintf("training_file %q does not exist", req.TrainingFile))
		return
	}
	j := s.newFineTune(req)
	j.account = s.accountOfLocked(bearer(r))
	s.fineTunes[j.id] = j
	writeJSON(w, http.StatusOK, j.truncated())
}

func validateFineTune(req ftCreateRequest) string {
	switch {
	case req.Model == "":
		return "model is required"
	case req.TrainingFile == "":
		return "training_file is required"
	case len(req.Suffix) > 64:
		return "suffix must be at most 64 characters"
	case req.TrainingType != nil && req.TrainingType.Type != "Full" && req.TrainingType.Type != "Lora":
		return "training_type.type must be Full or Lora"
	}
	if len(req.BatchSize) > 0 && !bytes.Equal(req.BatchSize, []byte(`"max"`)) && !bytes.Equal(req.BatchSize, []byte("null")) {
		if _, err := strconv.ParseInt(string(req.BatchSize), 10, 64); err != nil {
			return `batch_size must be an integer or "max"`
		}
	}
	return ""
}

// newFineTune builds a pending job with the API's defaults (OAS: n_epochs 1,
// n_checkpoints 1, n_evals 0, batch_size "max", learning_rate 1e-5);
// callers hold s.mu.
func (s *Server) newFineTune(req ftCreateRequest) *fineTune {
	now := s.now()
	j := &fineTune{
		id: newID("ft-"), status: ftPending, model: req.Model, trainingFile: req.TrainingFile,
		validationFile: req.ValidationFile, suffix: req.Suffix,
		nEpochs: orDefault(req.NEpochs, 1), nCheckpoints: orDefault(req.NCheckpoints, 1), nEvals: req.NEvals,
		batchSize: "max", learningRate: 1e-5, trainingType: req.TrainingType, createdAt: now, updatedAt: now,
	}
	if n, err := strconv.ParseInt(string(req.BatchSize), 10, 64); err == nil {
		j.batchSize = n
	}
	if req.LearningRate != nil {
		j.learningRate = *req.LearningRate
	}
	if req.WarmupRatio != nil {
		j.warmupRatio = *req.WarmupRatio
	}
	fr := FineTuneRequest{Model: req.Model, TrainingFile: req.TrainingFile, ValidationFile: req.ValidationFile,
		Suffix: req.Suffix, NEvals: req.NEvals, LearningRate: req.LearningRate}
	out := FineTuneOutcome{EvalLoss: 0.42}
	for _, sc := range s.ftScripts {
		if sc.match(fr) {
			out = sc.outcome
		}
	}
	if out.EvalLoss == 0 {
		out.EvalLoss = 0.42
	}
	j.outcome = out
	// The output model's name is known from the start: the create answer
	// and list items carry model_output_name (together-go finetuning.go
	// FineTuningNewResponse.ModelOutputName; openapi.yaml FinetuneTruncated,
	// whose example names it for a job with no events yet), built from the
	// suffix.
	j.outputName = outputName(j)
	s.addFTEvent(j, "job_pending", "info", "Fine-tune job created")
	return j
}

func orDefault[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// progress is the remaining-time estimate a job reports while it trains.
func (s *Server) progress(j *fineTune) *ftProgress {
	switch j.status {
	case ftPending, ftQueued:
		return &ftProgress{}
	case ftRunning:
		left := int64(s.opts.TotalSteps - j.step)
		per := int64(s.opts.StepInterval / time.Second)
		return &ftProgress{EstimateAvailable: true, SecondsRemaining: max(left, 0)*max(per, 1) + 2*max(per, 1)}
	case ftCompressing, ftUploading:
		return &ftProgress{EstimateAvailable: true, SecondsRemaining: max(int64(s.opts.StepInterval/time.Second), 1)}
	}
	return &ftProgress{EstimateAvailable: true}
}

// full is GET /fine-tunes/{id}; callers hold s.mu.
func (s *Server) full(j *fineTune) ftJob {
	evs := append([]ftEvent{}, j.events...)
	return ftJob{
		ID: j.id, Status: j.status, UserID: simUser, Model: j.model, ModelOutputName: j.outputName,
		ModelOutputPath: j.outputPath, ModelObjectID: j.modelObjectID, ModelObjectRevisionID: j.modelObjectRevisionID,
		AdapterObjectID: j.adapterObjectID, AdapterObjectRevisionID: j.adapterObjectRevisionID, TrainingFile: j.trainingFile,
		ValidationFile: j.validationFile, NEpochs: j.nEpochs, NCheckpoints: j.nCheckpoints, NEvals: j.nEvals,
		BatchSize: j.batchSize, LearningRate: j.learningRate, WarmupRatio: j.warmupRatio, TrainingType: j.trainingType,
		TokenCount: j.tokenCount, EpochsCompleted: j.epochsCompleted, Events: evs, CreatedAt: j.createdAt,
		UpdatedAt: j.updatedAt, StartedAt: j.startedAt, Progress: s.progress(j),
	}
}

// truncated is the list/create/cancel form; callers hold s.mu.
func (j *fineTune) truncated() ftListItem {
	return j.listItem(nil)
}

func (j *fineTune) listItem(p *ftProgress) ftListItem {
	bs, _ := j.batchSize.(int64) // the truncated form has batch_size as int only
	return ftListItem{
		ID: j.id, CreatedAt: j.createdAt, Status: j.status, UpdatedAt: j.updatedAt, UserID: simUser,
		Model: j.model, ModelOutputName: j.outputName, TrainingFile: j.trainingFile, ValidationFile: j.validationFile,
		Suffix: j.suffix, NEpochs: j.nEpochs, NCheckpoints: j.nCheckpoints, NEvals: j.nEvals, BatchSize: bs,
		LearningRate: j.learningRate, WarmupRatio: j.warmupRatio, TrainingType: j.trainingType,
		TokenCount: j.tokenCount, StartedAt: j.startedAt, Progress: p,
	}
}

// stepFineTune advances one job one step; callers hold s.mu.
func (s *Server) stepFineTune(j *fineTune) {
	switch j.status {
	case ftPending:
		s.setFTStatus(j, ftQueued, "job_pending", "Job queued")
	case ftQueued:
		t := s.now()
		j.startedAt = &t
		s.setFTStatus(j, ftRunning, "training_start", "Training started")
	case ftRunning:
		s.trainStep(j)
	case ftCompressing:
		s.setFTStatus(j, ftUploading, "model_uploading", "Uploading model")
	case ftUploading:
		s.completeFineTune(j)
	case ftCancelRequested:
		s.setFTStatus(j, ftCancelled, "job_stopped", "Job cancelled")
	}
}

// trainStep runs one training step: a metrics row per step, an evaluation
// row at each of n_evals evenly spaced steps when there is a validation
// file, and a checkpoint_save event (with no loss) only at n_checkpoints
// evenly spaced steps, the last at the final step. The job's updated_at
// moves with each step, as the remaining-time estimate does.
func (s *Server) trainStep(j *fineTune) {
	if j.outcome.Stall {
		return
	}
	j.step++
	total := int64(s.opts.TotalSteps)
	step := int64(j.step)
	if j.outcome.FailAtStep > 0 && j.step >= j.outcome.FailAtStep {
		s.failFineTune(j)
		return
	}
	j.updatedAt = s.now()
	j.tokenCount += 2048
	j.metrics = append(j.metrics, map[string]float64{keyTrainLoss: lossAt(j.step), keyTrainStep: float64(step), keyTrainLR: j.learningRate})
	if j.validationFile != "" && j.nEvals > 0 && atFraction(step, total, j.nEvals) {
		j.metrics = append(j.metrics, map[string]float64{keyEvalLoss: s.evalLossAt(j, step, total), keyTrainStep: float64(step)})
	}
	if atFraction(step, total, j.nCheckpoints) {
		ev := s.addFTEvent(j, "checkpoint_save", "info", fmt.Sprintf("Checkpoint saved at step %d", step))
		ev.Step, ev.TotalSteps = step, total
		ev.CheckpointPath = fmt.Sprintf("s3://together-sim/%s/checkpoint-%d", j.id, step)
	}
	// The push contract (ours, not Together's) carries the loss itself.
	loss := lossAt(j.step)
	s.emit(togetherv1.EventFineTuneCheckpoint, push.FineTuneCheckpoint{FineTuneID: j.id, Step: step, Loss: &loss})
	if step >= total {
		j.epochsCompleted = j.nEpochs
		s.setFTStatus(j, ftCompressing, "training_complete", "Training completed")
	}
}

// atFraction reports whether step is one of n evenly spaced steps of total,
// the last of which is total.
func atFraction(step, total, n int64) bool {
	if n <= 0 || total <= 0 {
		return false
	}
	n = min(n, total)
	for k := int64(1); k <= n; k++ {
		if step == k*total/n {
			return true
		}
	}
	return false
}

// lossAt is a smooth decreasing training loss.
func lossAt(step int) float64 {
	return math.Round((0.5+2.0*math.Pow(0.8, float64(step)))*10000) / 10000
}

// evalLossAt falls towards the scripted final eval loss, reaching it at the
// last step.
func (s *Server) evalLossAt(j *fineTune, step, total int64) float64 {
	left := float64(total-step) / float64(max(total, 1))
	return math.Round((j.outcome.EvalLoss+0.5*left)*10000) / 10000
}

func (s *Server) failFineTune(j *fineTune) {
	msg := j.outcome.FailMessage
	if msg == "" {
		msg = "training failed"
	}
	ev := s.addFTEvent(j, "job_error", "error", msg)
	ev.Step = int64(j.step)
	j.status = ftError
	j.updatedAt = s.now()
	s.emit(togetherv1.EventFineTuneFailed, push.FineTuneFailed{FineTuneID: j.id, ErrorMessage: msg, Step: int64(j.step)})
}

func (s *Server) completeFineTune(j *fineTune) {
	j.outputName = outputName(j)
	j.outputPath = "s3://together-sim/" + j.id + "/final"
	lora := j.trainingType == nil || j.trainingType.Type != "Full" // an absent training_type is LoRA
	j.modelObjectID, j.modelObjectRevisionID, j.adapterObjectID, j.adapterObjectRevisionID = s.registerFineTunedModel(j.id, lora)
	ev := s.addFTEvent(j, "job_complete", "info", "Job completed")
	ev.ModelPath = j.outputPath
	j.status = ftCompleted
	j.updatedAt = s.now()
	done := push.FineTuneCompleted{FineTuneID: j.id, ModelName: j.outputName, Step: int64(j.step)}
	if j.validationFile != "" && j.nEvals > 0 {
		eval := j.outcome.EvalLoss
		done.EvalLoss = &eval
	}
	s.emit(togetherv1.EventFineTuneCompleted, done)
}

// outputName is <user>/<model>-<suffix>-<hash>, as Together names outputs,
// so that the suffix identifies the job's model.
func outputName(j *fineTune) string {
	sum := sha256.Sum256([]byte(j.id))
	parts := []string{path.Base(j.model)}
	if j.suffix != "" {
		parts = append(parts, j.suffix)
	}
	parts = append(parts, hex.EncodeToString(sum[:3]))
	return simUser + "/" + strings.Join(parts, "-")
}

func (s *Server) setFTStatus(j *fineTune, st, evType, msg string) {
	j.status = st
	j.updatedAt = s.now()
	s.addFTEvent(j, evType, "info", msg)
}

func (s *Server) addFTEvent(j *fineTune, typ, level, msg string) *ftEvent {
	j.events = append(j.events, ftEvent{
		Object: "fine-tune-event", CreatedAt: s.now().Format(time.RFC3339), Message: msg, Type: typ, Level: level,
	})
	return &j.events[len(j.events)-1]
}

func (s *Server) lookupFT(w http.ResponseWriter, r *http.Request) *fineTune {
	j, ok := s.fineTunes[r.PathValue("id")]
	if ok && j.account != s.accountOfLocked(bearer(r)) {
		ok, j = false, nil // another account's job is as unknown as a missing one
	}
	if !ok {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("fine-tune job %q not found", r.PathValue("id")))
	}
	return j
}

func (s *Server) getFineTune(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.lookupFT(w, r); j != nil {
		writeJSON(w, http.StatusOK, s.full(j))
	}
}

func (s *Server) listFineTunes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ftListItem, 0, len(s.fineTunes))
	account := s.accountOfLocked(bearer(r))
	for _, id := range sortedKeys(s.fineTunes) {
		j := s.fineTunes[id]
		if j.account != account {
			continue
		}
		out = append(out, j.listItem(s.progress(j)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (s *Server) cancelFineTune(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.lookupFT(w, r)
	if j == nil {
		return
	}
	if ftTerminal(j.status) {
		writeError(w, r, http.StatusBadRequest, "invalid_state", fmt.Sprintf("job is %s and cannot be cancelled", j.status))
		return
	}
	if j.status != ftCancelRequested {
		s.setFTStatus(j, ftCancelRequested, "cancel_requested", "Cancel requested")
	}
	writeJSON(w, http.StatusOK, j.truncated())
}

func (s *Server) fineTuneEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.lookupFT(w, r); j != nil {
		writeJSON(w, http.StatusOK, map[string]any{"data": append([]ftEvent{}, j.events...)})
	}
}

func (s *Server) fineTuneCheckpoints(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.lookupFT(w, r)
	if j == nil {
		return
	}
	cps := []ftCheckpoint{}
	for _, e := range j.events {
		if e.Type == "checkpoint_save" {
			sum := sha256.Sum256([]byte(e.CheckpointPath))
			cps = append(cps, ftCheckpoint{CheckpointType: "Intermediate", CreatedAt: e.CreatedAt, Path: e.CheckpointPath, Step: e.Step,
				Checkpoint: "adapter", ObjectID: "ml_" + hex.EncodeToString(sum[:10])})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": cps})
}

// fineTuneMetrics answers the job's rows in chronological order, filtered
// by the query parameters GO and TS send (global_step_from, global_step_to,
// resolution: a cap on uniformly sampled training rows, eval rows always in
// full; GO finetuning.go FineTuningListMetricsParams, SK deployment.md).
func (s *Server) fineTuneMetrics(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, errFrom := optInt(q.Get("global_step_from"))
	to, errTo := optInt(q.Get("global_step_to"))
	res, errRes := optInt(q.Get("resolution"))
	if errFrom != nil || errTo != nil || errRes != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_request", "global_step_from, global_step_to and resolution must be integers")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.lookupFT(w, r)
	if j == nil {
		return
	}
	var rows []map[string]float64
	var trainIdx []int
	for _, row := range j.metrics {
		st := int64(row[keyTrainStep])
		if (from != nil && st < *from) || (to != nil && st > *to) {
			continue
		}
		if _, eval := row[keyEvalLoss]; !eval {
			trainIdx = append(trainIdx, len(rows))
		}
		rows = append(rows, row)
	}
	if res != nil && *res > 0 && int64(len(trainIdx)) > *res {
		keep := map[int]bool{}
		n := int64(len(trainIdx))
		for k := int64(0); k < *res; k++ {
			keep[trainIdx[(k+1)*n / *res - 1]] = true // evenly spaced, newest kept
		}
		var sampled []map[string]float64
		for i, row := range rows {
			if _, eval := row[keyEvalLoss]; eval || keep[i] {
				sampled = append(sampled, row)
			}
		}
		rows = sampled
	}
	if rows == nil {
		rows = []map[string]float64{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"metrics": rows})
}

func optInt(v string) (*int64, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, err
	}
	return &n, nil
}
