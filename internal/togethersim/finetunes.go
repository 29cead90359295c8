package togethersim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"path"
	"strings"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/together"
)

// simUser is the account every simulated job belongs to.
const simUser = "sim-user"

// FineTuneOutcome scripts how a fine-tune ends.
type FineTuneOutcome struct {
	// FailAtStep, if positive, makes the job go to "error" at that
	// training step with FailMessage.
	FailAtStep  int
	FailMessage string
	// EvalLoss is the eval loss reported on completion (default 0.42).
	EvalLoss float64
	// Stall keeps the job running forever, for timeout tests.
	Stall bool
}

type ftScript struct {
	match   func(together.CreateFineTuneRequest) bool
	outcome FineTuneOutcome
}

type fineTune struct {
	together.FineTune
	outcome FineTuneOutcome
	step    int
	losses  []float64
	evalSet bool
}

// SetFineTuneScript makes jobs whose create request matches end as outcome.
// Later scripts win over earlier ones; unmatched jobs complete.
func (s *Server) SetFineTuneScript(match func(together.CreateFineTuneRequest) bool, outcome FineTuneOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ftScripts = append(s.ftScripts, ftScript{match: match, outcome: outcome})
}

// AddFineTune preloads a job as if created earlier, e.g. for adoption
// tests. A job that is not terminal keeps moving from its status.
func (s *Server) AddFineTune(ft together.FineTune) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ft.ID == "" {
		ft.ID = s.nextID("ft")
	}
	if ft.Status == "" {
		ft.Status = together.FineTunePending
	}
	if ft.CreatedAt.IsZero() {
		ft.CreatedAt = s.now()
	}
	ft.UpdatedAt = ft.CreatedAt
	s.fineTunes[ft.ID] = &fineTune{FineTune: ft, outcome: FineTuneOutcome{EvalLoss: 0.42}}
}

func (s *Server) createFineTune(w http.ResponseWriter, r *http.Request) {
	var req together.CreateFineTuneRequest
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
	ft := s.newFineTune(req)
	s.fineTunes[ft.ID] = ft
	writeJSON(w, http.StatusOK, truncated(ft.FineTune))
}

func validateFineTune(req together.CreateFineTuneRequest) string {
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
	return ""
}

// newFineTune builds a pending job with the API's defaults; callers hold s.mu.
func (s *Server) newFineTune(req together.CreateFineTuneRequest) *fineTune {
	now := s.now()
	ft := together.FineTune{
		ID: s.nextID("ft"), UserID: simUser, Status: together.FineTunePending,
		Model: req.Model, TrainingFile: req.TrainingFile, ValidationFile: req.ValidationFile,
		Suffix: req.Suffix, NEpochs: orDefault(req.NEpochs, 1), NCheckpoints: orDefault(req.NCheckpoints, 1),
		NEvals: req.NEvals, BatchSize: together.BatchSize(req.BatchSize), LearningRate: 1e-5,
		TrainingType: req.TrainingType, CreatedAt: now, UpdatedAt: now,
	}
	if req.BatchSize == 0 {
		ft.BatchSize = together.BatchSizeMax
	}
	if req.LearningRate != nil {
		ft.LearningRate = *req.LearningRate
	}
	out := FineTuneOutcome{EvalLoss: 0.42}
	for _, sc := range s.ftScripts {
		if sc.match(req) {
			out = sc.outcome
		}
	}
	if out.EvalLoss == 0 {
		out.EvalLoss = 0.42
	}
	j := &fineTune{FineTune: ft, outcome: out}
	s.addFTEvent(j, "job_pending", "info", "Fine-tune job created", nil)
	return j
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// truncated drops the fields the real create/list/cancel answers lack.
func truncated(ft together.FineTune) together.FineTune {
	ft.Events = nil
	ft.ModelOutputPath = ""
	ft.EpochsCompleted = 0
	// GO FineTuningNewResponse and the list item have no registry ids.
	ft.ModelObjectID, ft.ModelObjectRevisionID, ft.AdapterObjectID, ft.AdapterObjectRevisionID = "", "", "", ""
	if ft.BatchSize == together.BatchSizeMax {
		ft.BatchSize = 0 // the truncated form has batch_size as int only
	}
	return ft
}

// stepFineTune advances one job one step; callers hold s.mu.
func (s *Server) stepFineTune(j *fineTune) {
	switch j.Status {
	case together.FineTunePending:
		s.setFTStatus(j, together.FineTuneQueued, "job_pending", "Job queued")
	case together.FineTuneQueued:
		t := s.now()
		j.StartedAt = &t
		s.setFTStatus(j, together.FineTuneRunning, "training_start", "Training started")
	case together.FineTuneRunning:
		s.trainStep(j)
	case together.FineTuneCompressing:
		s.setFTStatus(j, together.FineTuneUploading, "model_uploading", "Uploading model")
	case together.FineTuneUploading:
		s.completeFineTune(j)
	case together.FineTuneCancelRequested:
		s.setFTStatus(j, together.FineTuneCancelled, "job_stopped", "Job cancelled")
	}
}

func (s *Server) trainStep(j *fineTune) {
	if j.outcome.Stall {
		return
	}
	j.step++
	total := s.opts.TotalSteps
	if j.outcome.FailAtStep > 0 && j.step >= j.outcome.FailAtStep {
		s.failFineTune(j)
		return
	}
	loss := lossAt(j.step)
	j.losses = append(j.losses, loss)
	j.TokenCount += 2048
	ev := s.addFTEvent(j, "checkpoint_save", "info", fmt.Sprintf("Checkpoint saved at step %d", j.step), &loss)
	ev.Step, ev.TotalSteps = int64(j.step), int64(total)
	ev.CheckpointPath = fmt.Sprintf("s3://together-sim/%s/checkpoint-%d", j.ID, j.step)
	s.emit(togetherv1.EventFineTuneCheckpoint, push.FineTuneCheckpoint{FineTuneID: j.ID, Step: int64(j.step), Loss: &loss})
	if j.step >= total {
		j.EpochsCompleted = j.NEpochs
		s.setFTStatus(j, together.FineTuneCompressing, "training_complete", "Training completed")
	}
}

// lossAt is a smooth decreasing training loss.
func lossAt(step int) float64 {
	return math.Round((0.5+2.0*math.Pow(0.8, float64(step)))*10000) / 10000
}

func (s *Server) failFineTune(j *fineTune) {
	msg := j.outcome.FailMessage
	if msg == "" {
		msg = "training failed"
	}
	ev := s.addFTEvent(j, "job_error", "error", msg, nil)
	ev.Step = int64(j.step)
	j.Status = together.FineTuneError
	j.UpdatedAt = s.now()
	s.emit(togetherv1.EventFineTuneFailed, push.FineTuneFailed{FineTuneID: j.ID, ErrorMessage: msg, Step: int64(j.step)})
}

func (s *Server) completeFineTune(j *fineTune) {
	j.ModelOutputName = outputName(j.FineTune)
	j.ModelOutputPath = "s3://together-sim/" + j.ID + "/final"
	lora := j.TrainingType == nil || j.TrainingType.Type != "Full" // an absent training_type is LoRA
	j.ModelObjectID, j.ModelObjectRevisionID, j.AdapterObjectID, j.AdapterObjectRevisionID = s.registerFineTunedModel(j.ID, lora)
	j.evalSet = true
	ev := s.addFTEvent(j, "job_complete", "info", "Job completed", nil)
	ev.ModelPath = j.ModelOutputPath
	j.Status = together.FineTuneCompleted
	j.UpdatedAt = s.now()
	eval := j.outcome.EvalLoss
	s.emit(togetherv1.EventFineTuneCompleted, push.FineTuneCompleted{FineTuneID: j.ID, ModelName: j.ModelOutputName, EvalLoss: &eval, Step: int64(j.step)})
}

// outputName is <user>/<model>-<suffix>-<hash>, as Together names outputs,
// so that the suffix identifies the job's model.
func outputName(ft together.FineTune) string {
	sum := sha256.Sum256([]byte(ft.ID))
	parts := []string{path.Base(ft.Model)}
	if ft.Suffix != "" {
		parts = append(parts, ft.Suffix)
	}
	parts = append(parts, hex.EncodeToString(sum[:3]))
	return simUser + "/" + strings.Join(parts, "-")
}

func (s *Server) setFTStatus(j *fineTune, st together.FineTuneStatus, evType, msg string) {
	j.Status = st
	j.UpdatedAt = s.now()
	s.addFTEvent(j, evType, "info", msg, nil)
}

func (s *Server) addFTEvent(j *fineTune, typ, level, msg string, loss *float64) *together.FineTuneEvent {
	j.Events = append(j.Events, together.FineTuneEvent{
		Object: "fine-tune-event", CreatedAt: s.now().Format(time.RFC3339), Message: msg,
		Type: typ, Level: level, Loss: loss,
	})
	return &j.Events[len(j.Events)-1]
}

func (s *Server) lookupFT(w http.ResponseWriter, r *http.Request) *fineTune {
	j, ok := s.fineTunes[r.PathValue("id")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("fine-tune job %q not found", r.PathValue("id")))
	}
	return j
}

func (s *Server) getFineTune(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.lookupFT(w, r); j != nil {
		writeJSON(w, http.StatusOK, j.FineTune)
	}
}

func (s *Server) listFineTunes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]together.FineTune, 0, len(s.fineTunes))
	for _, id := range sortedKeys(s.fineTunes) {
		out = append(out, truncated(s.fineTunes[id].FineTune))
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
	if j.Status.Terminal() {
		writeError(w, r, http.StatusBadRequest, "invalid_state", fmt.Sprintf("job is %s and cannot be cancelled", j.Status))
		return
	}
	if j.Status != together.FineTuneCancelRequested {
		s.setFTStatus(j, together.FineTuneCancelRequested, "cancel_requested", "Cancel requested")
	}
	writeJSON(w, http.StatusOK, truncated(j.FineTune))
}

func (s *Server) fineTuneEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.lookupFT(w, r); j != nil {
		writeJSON(w, http.StatusOK, map[string]any{"data": j.Events})
	}
}

func (s *Server) fineTuneCheckpoints(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.lookupFT(w, r)
	if j == nil {
		return
	}
	cps := []together.FineTuneCheckpoint{}
	for _, e := range j.Events {
		if e.Type == "checkpoint_save" {
			cps = append(cps, together.FineTuneCheckpoint{CheckpointType: "Intermediate", CreatedAt: e.CreatedAt, Path: e.CheckpointPath, Step: e.Step, Checkpoint: "adapter"})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": cps})
}

func (s *Server) fineTuneMetrics(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.lookupFT(w, r)
	if j == nil {
		return
	}
	rows := []map[string]float64{}
	for i, l := range j.losses {
		rows = append(rows, map[string]float64{"step": float64(i + 1), "train_loss": l})
	}
	if j.evalSet {
		rows = append(rows, map[string]float64{"step": float64(len(j.losses)), "eval_loss": j.outcome.EvalLoss})
	}
	writeJSON(w, http.StatusOK, map[string]any{"metrics": rows})
}
