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

package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/dataset"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// reconcileJob makes sure the resource follows exactly one job: it finishes
// an interrupted submission, adopts spec.jobID, or submits the first attempt.
func (r *TogetherFineTuneReconciler) reconcileJob(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) (ctrl.Result, error) {
	st := &ft.Status
	switch {
	case st.Submission != nil:
		_, err := r.submit(ctx, ft, s, st.Submission.Attempt)
		return ctrl.Result{}, err
	case ft.Spec.JobID != "" && st.JobID == "":
		return ctrl.Result{}, r.adopt(ctx, ft)
	case ft.Spec.JobID != "" && st.Attempt == 0:
		// The intake followed spec.jobID before this reconciler first
		// looked (a job adopted from a push): the job is attempt 1.
		st.Attempt = 1
		if len(st.Attempts) == 0 {
			st.Attempts = []togetherv1.FineTuneAttempt{{Attempt: 1, JobID: st.JobID}}
		}
	case ft.Spec.Training != nil && st.JobID == "":
		_, err := r.submit(ctx, ft, s, 1)
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// adopt reads spec.jobID once and fills status from it; from then on the
// event intake keeps status current.
func (r *TogetherFineTuneReconciler) adopt(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	job, err := r.API.GetFineTune(ctx, ft.Spec.JobID)
	if together.IsNotFound(err) {
		return reconcile.Stalling(togetherv1.ReasonJobNotFound, fmt.Sprintf("Together has no fine-tune job %q; spec.jobID cannot be changed, so recreate the resource with the right ID.", ft.Spec.JobID)).After(ftRecheckInterval)
	}
	if err != nil {
		return r.apiFailure(err, "reading job "+ft.Spec.JobID)
	}
	st := &ft.Status
	fillFromJob(st, job)
	st.Attempt = 1
	var lr *float64
	if job.LearningRate > 0 {
		lr = &job.LearningRate
	}
	st.Attempts = []togetherv1.FineTuneAttempt{{Attempt: 1, JobID: job.ID, LearningRate: lr}}
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonAdopted, "Adopt", "Following existing fine-tune job %s (%s).", job.ID, job.Status)
	return nil
}

// fillFromJob copies what a job read says into status: phase, output model,
// and the newest step and error from its event log. Events carry no loss;
// the poller reads losses from the job's metrics.
func fillFromJob(st *togetherv1.TogetherFineTuneStatus, job *together.FineTune) {
	st.JobID = job.ID
	st.Phase = ftPhaseOf(job.Status)
	st.RemoteStatus = string(job.Status)
	st.OutputModel = job.ModelOutputName
	for _, ev := range job.Events {
		if ev.Step > st.Step {
			st.Step = ev.Step
		}
		if ev.Type == "job_error" && st.Phase == togetherv1.FineTuneFailed {
			st.Error = &togetherv1.JobError{Message: ev.Message, Step: st.Step}
		}
	}
	if st.Phase == togetherv1.FineTuneFailed && st.Error == nil {
		st.Error = &togetherv1.JobError{Message: "Together reports the job as failed without a message.", Step: st.Step}
	}
}

// ftPhaseOf maps Together's status word onto the resource's phases, with
// the same table the event intake uses; an unknown word counts as running.
func ftPhaseOf(s together.FineTuneStatus) togetherv1.FineTunePhase {
	if p, ok := lattice.FineTunePhaseFor(string(s)); ok {
		return p
	}
	return togetherv1.FineTuneRunning
}

// submit creates the job of one attempt, at most once. The attempt's tag is
// written to status before the POST; if this process dies or the status
// write fails after Together created the job, the next reconcile finds the
// job by its tag instead of paying for a second one. It returns the
// condition message that describes the submitted job.
func (r *TogetherFineTuneReconciler) submit(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope, attempt int32) (string, error) {
	tr := ft.Spec.Training
	if tr == nil {
		ft.Status.Submission = nil // spec.jobID resources never submit
		return "", nil
	}
	st := &ft.Status
	lr := attemptLearningRate(ft, attempt)
	tag := ft.SubmissionTag(attempt)
	if sub := st.Submission; sub != nil && sub.Attempt == attempt {
		job, err := r.findTaggedJob(ctx, sub.Tag)
		if err != nil {
			return "", r.apiFailure(err, "looking for the job of an interrupted submission")
		}
		if job != nil {
			return r.recordSubmitted(ft, s, attempt, job, lr, "Found job %s of attempt %d, created before an interrupted status write; following it instead of submitting again."), nil
		}
	}

	fileID, err := r.trainingFile(ctx, ft)
	if err != nil {
		return "", err
	}
	valID, err := r.validationFile(ctx, ft)
	if err != nil {
		return "", err
	}
	for _, id := range []string{fileID, valID} {
		if id == "" {
			continue
		}
		if err := r.fileReady(ctx, id); err != nil {
			return "", err
		}
	}

	st.Submission = &togetherv1.SubmissionMarker{Attempt: attempt, Tag: tag, StartedAt: metav1.Now()}
	if err := s.persist(ctx, ft); err != nil {
		return "", fmt.Errorf("recording submission marker before creating a job: %w", err)
	}
	req := ftCreateRequest(tr, fileID, ft.JobSuffix(tag), lr)
	req.ValidationFile = valID
	job, err := r.API.CreateFineTune(ctx, req)
	if err != nil {
		if together.IsInvalidRequest(err) {
			// A 4xx answer means no job was created; the marker can go.
			st.Submission = nil
			return "", reconcile.Stalling(togetherv1.ReasonSubmissionRejected, fmt.Sprintf("Together rejected the fine-tune job: %v. Fix spec.training.", err))
		}
		return "", r.apiFailure(err, fmt.Sprintf("creating the job of attempt %d", attempt))
	}
	return r.recordSubmitted(ft, s, attempt, job, lr, "Submitted fine-tune job %s (attempt %d)."), nil
}

// recordSubmitted makes job the current attempt's job. Progress fields of the
// previous attempt are cleared so that nothing of it is mistaken for this one.
// Its Event waits for the status write: if that is lost, the next reconcile
// finds the job by its tag and reports that instead, once.
func (r *TogetherFineTuneReconciler) recordSubmitted(ft *togetherv1.TogetherFineTune, s *scope, attempt int32, job *together.FineTune, lr float64, note string) string {
	st := &ft.Status
	st.Submission = nil
	st.Attempt = attempt
	st.Step, st.FinalStep, st.Loss, st.EvalLoss, st.Checkpoints, st.Error, st.OutputModel = 0, 0, nil, nil, nil, nil, ""
	st.SecondsRemaining = nil
	fillFromJob(st, job)
	entry := togetherv1.FineTuneAttempt{Attempt: attempt, JobID: job.ID, LearningRate: &lr}
	st.Attempts = append(withoutAttempt(st.Attempts, attempt), entry)
	s.afterWrite(func() {
		r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonSubmitted, "Submit", note, job.ID, attempt)
	})
	return fmt.Sprintf("Fine-tune job %s (attempt %d of %d) is %s; waiting for Together.", job.ID, attempt, ftMaxAttempts(ft), job.Status)
}

func withoutAttempt(as []togetherv1.FineTuneAttempt, attempt int32) []togetherv1.FineTuneAttempt {
	out := as[:0:0]
	for _, a := range as {
		if a.Attempt != attempt {
			out = append(out, a)
		}
	}
	return out
}

// findTaggedJob returns the job whose suffix or output model name carries
// tag, or nil. Together offers no idempotency key, so the tag is how the
// operator recognises its own job. tag is the one the submission marker
// recorded, of whichever form the version that wrote it used.
func (r *TogetherFineTuneReconciler) findTaggedJob(ctx context.Context, tag string) (*together.FineTune, error) {
	jobs, err := r.API.ListFineTunes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		if togetherv1.FineTuneCarriesTag(j.Suffix, j.ModelOutputName, tag) {
			return j, nil
		}
	}
	return nil, nil
}

// trainingFile returns the Together file ID to train on. For ConfigMap data
// it validates the JSONL first and uploads under a name derived from the
// resource's UID and the content, so a retry after a crash, or a later
// attempt with the same data, finds the earlier upload instead of repeating it.
func (r *TogetherFineTuneReconciler) trainingFile(ctx context.Context, ft *togetherv1.TogetherFineTune) (string, error) {
	tr := ft.Spec.Training
	if tr.TrainingFile != "" {
		return tr.TrainingFile, nil
	}
	ref := tr.TrainingData
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: ref.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", reconcile.Stalling(togetherv1.ReasonTrainingDataNotFound, fmt.Sprintf("ConfigMap %q does not exist; create it with key %q holding JSONL training data.", ref.Name, ref.Key))
		}
		return "", fmt.Errorf("reading training data ConfigMap %s/%s: %w", ft.Namespace, ref.Name, err)
	}
	data, found := cm.Data[ref.Key]
	if !found {
		b, inBinary := cm.BinaryData[ref.Key]
		data, found = string(b), inBinary
	}
	if !found {
		return "", reconcile.Stalling(togetherv1.ReasonTrainingDataNotFound, fmt.Sprintf("ConfigMap %q has no key %q; add the JSONL training data under that key.", ref.Name, ref.Key))
	}
	if _, verr := dataset.ValidateFineTune(strings.NewReader(data)); verr != nil {
		var le *dataset.LineError
		if !errors.As(verr, &le) {
			return "", fmt.Errorf("validating training data of ConfigMap %s/%s: %w", ft.Namespace, ref.Name, verr)
		}
		return "", reconcile.Stalling(togetherv1.ReasonInvalidTrainingData, fmt.Sprintf("Training data in ConfigMap %q key %q is invalid at line %d: %s. Fix the data; nothing was uploaded.", ref.Name, ref.Key, le.Line, le.Reason))
	}

	name := trainingFileName(ft, data)
	return r.uploadOnce(ctx, ft, name, data, "training data", ref.Name, &ft.Status.TrainingFileID)
}

// uploadOnce uploads data from a ConfigMap as the file name, unless a file
// of that name is already there. Together has no idempotency keys, so the
// name (derived from the resource and the data) is how an upload whose
// status write was lost is found instead of made twice. The file's ID is
// recorded in *id, the status field that names it.
func (r *TogetherFineTuneReconciler) uploadOnce(ctx context.Context, ft *togetherv1.TogetherFineTune, name, data, what, configMap string, id *string) (string, error) {
	files, err := r.API.ListFiles(ctx)
	if err != nil {
		return "", r.apiFailure(err, "listing files before uploading "+what)
	}
	for _, f := range files {
		if f.Filename == name {
			*id = f.ID
			return f.ID, nil
		}
	}
	f, err := r.API.UploadFile(ctx, name, together.FilePurposeFineTune, strings.NewReader(data))
	if err != nil {
		return "", r.apiFailure(err, "uploading "+what)
	}
	*id = f.ID
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonUploaded, "Upload", "Uploaded %s from ConfigMap %s as file %s.", what, configMap, f.ID)
	return f.ID, nil
}

// trainingFileName names an upload after the resource (for people reading
// the file list) and a hash of its UID and content (for the operator).
func trainingFileName(ft *togetherv1.TogetherFineTune, data string) string {
	content := sha256.Sum256([]byte(data))
	h := sha256.Sum256([]byte(string(ft.UID) + "/" + hex.EncodeToString(content[:])))
	base := ft.Name
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("%s-%s.jsonl", base, hex.EncodeToString(h[:])[:12])
}

// maxAttempts is spec.retry.maxAttempts, 1 when unset.
func ftMaxAttempts(ft *togetherv1.TogetherFineTune) int32 {
	if ft.Spec.Retry == nil || ft.Spec.Retry.MaxAttempts < 1 {
		return 1
	}
	return ft.Spec.Retry.MaxAttempts
}

// attemptLearningRate is the base learning rate times the retry factor once
// per earlier attempt.
func attemptLearningRate(ft *togetherv1.TogetherFineTune, attempt int32) float64 {
	lr := ftDefaultLearningRate
	if tr := ft.Spec.Training; tr != nil && tr.LearningRate != nil {
		lr = *tr.LearningRate
	}
	factor := ftDefaultLearningRateFactor
	if rt := ft.Spec.Retry; rt != nil && rt.LearningRateFactor != nil {
		factor = *rt.LearningRateFactor
	}
	return lr * math.Pow(factor, float64(attempt-1))
}

// ftCreateRequest turns spec.training into Together's create body; zero values
// are left out so Together's defaults apply.
func ftCreateRequest(tr *togetherv1.TrainingSpec, fileID, suffix string, lr float64) together.CreateFineTuneRequest {
	req := together.CreateFineTuneRequest{
		Model:          tr.Model,
		TrainingFile:   fileID,
		ValidationFile: tr.ValidationFile,
		Suffix:         suffix,
		NEpochs:        int(tr.NEpochs),
		NCheckpoints:   int(tr.NCheckpoints),
		NEvals:         int(tr.NEvals),
		BatchSize:      int(tr.BatchSize),
		LearningRate:   &lr,
		WarmupRatio:    tr.WarmupRatio,
	}
	if l := tr.LoRA; l != nil {
		if !l.Enabled {
			req.TrainingType = &together.TrainingType{Type: "Full"}
		} else {
			req.TrainingType = &together.TrainingType{
				Type: "Lora", LoraR: int(ftOrDefault(l.Rank, 8)), LoraAlpha: int(ftOrDefault(l.Alpha, 16)),
				LoraDropout: l.Dropout, LoraTrainableModules: l.TrainableModules,
			}
		}
	}
	return req
}

func ftOrDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}
