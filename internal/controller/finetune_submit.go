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

	"github.com/together-operator/together-operator/internal/together"
)

// maxSuffixLen is the longest suffix sent to Together. The API documents 64
// but older clients enforce 40, so the operator stays within 40 to be safe
// with both; the user's part is shortened to leave room for the tag.
const maxSuffixLen = 40

// reconcileJob makes sure the resource follows exactly one job: it finishes
// an interrupted submission, adopts spec.jobID, or submits the first attempt.
func (r *TogetherFineTuneReconciler) reconcileJob(ctx context.Context, ft *togetherv1.TogetherFineTune, patcher *statusPatcher) (ctrl.Result, bool, error) {
	st := &ft.Status
	switch {
	case st.Submission != nil:
		return r.submit(ctx, ft, patcher, st.Submission.Attempt)
	case ft.Spec.JobID != "" && st.JobID == "":
		return r.adopt(ctx, ft)
	case ft.Spec.Training != nil && st.JobID == "":
		return r.submit(ctx, ft, patcher, 1)
	}
	return ctrl.Result{}, true, nil
}

// adopt reads spec.jobID once and fills status from it; from then on the
// event intake keeps status current.
func (r *TogetherFineTuneReconciler) adopt(ctx context.Context, ft *togetherv1.TogetherFineTune) (ctrl.Result, bool, error) {
	job, err := r.API.GetFineTune(ctx, ft.Spec.JobID)
	if together.IsNotFound(err) {
		r.stall(ft, ReasonJobNotFound, fmt.Sprintf("Together has no fine-tune job %q; spec.jobID cannot be changed, so recreate the resource with the right ID.", ft.Spec.JobID))
		return ctrl.Result{RequeueAfter: ftRecheckInterval}, false, nil
	}
	if err != nil {
		return ctrl.Result{}, false, r.apiFailure(ft, err, "reading job "+ft.Spec.JobID)
	}
	st := &ft.Status
	fillFromJob(st, job)
	st.Attempt = 1
	var lr *float64
	if job.LearningRate > 0 {
		lr = &job.LearningRate
	}
	st.Attempts = []togetherv1.FineTuneAttempt{{Attempt: 1, JobID: job.ID, LearningRate: lr}}
	r.Recorder.Eventf(ft, nil, corev1.EventTypeNormal, "Adopted", "Adopt", "Following existing fine-tune job %s (%s).", job.ID, job.Status)
	return ctrl.Result{}, true, nil
}

// fillFromJob copies what a job read says into status: phase, output model,
// and the newest step, loss and error from its event log.
func fillFromJob(st *togetherv1.TogetherFineTuneStatus, job *together.FineTune) {
	st.JobID = job.ID
	st.Phase = ftPhaseOf(job.Status)
	st.RemoteStatus = string(job.Status)
	st.OutputModel = job.ModelOutputName
	for _, ev := range job.Events {
		if ev.Step > st.Step {
			st.Step = ev.Step
		}
		if ev.Loss != nil && ev.Step >= st.Step {
			st.Loss = ev.Loss
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
// job by its tag instead of paying for a second one.
func (r *TogetherFineTuneReconciler) submit(ctx context.Context, ft *togetherv1.TogetherFineTune, patcher *statusPatcher, attempt int32) (ctrl.Result, bool, error) {
	tr := ft.Spec.Training
	if tr == nil {
		ft.Status.Submission = nil // spec.jobID resources never submit
		return ctrl.Result{}, true, nil
	}
	st := &ft.Status
	lr := attemptLearningRate(ft, attempt)
	tag := ftSubmissionTag(ft.UID, attempt)
	if sub := st.Submission; sub != nil && sub.Attempt == attempt {
		job, err := r.findTaggedJob(ctx, sub.Tag)
		if err != nil {
			return ctrl.Result{}, false, r.apiFailure(ft, err, "looking for the job of an interrupted submission")
		}
		if job != nil {
			r.recordSubmitted(ft, patcher, attempt, job, lr, "Found job %s of attempt %d, created before an interrupted status write; following it instead of submitting again.")
			return ctrl.Result{}, true, nil
		}
	}

	fileID, res, ok, err := r.trainingFile(ctx, ft)
	if !ok {
		return res, false, err
	}

	st.Submission = &togetherv1.SubmissionMarker{Attempt: attempt, Tag: tag, StartedAt: metav1.Now()}
	if err := r.persistStatus(ctx, ft, patcher); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("recording submission marker before creating a job: %w", err)
	}
	job, err := r.API.CreateFineTune(ctx, ftCreateRequest(tr, fileID, jobSuffix(tr.Suffix, tag), lr))
	if err != nil {
		if together.IsInvalidRequest(err) {
			// A 4xx answer means no job was created; the marker can go.
			st.Submission = nil
			r.stall(ft, ReasonSubmissionRejected, fmt.Sprintf("Together rejected the fine-tune job: %v. Fix spec.training.", err))
			return ctrl.Result{}, false, nil
		}
		return ctrl.Result{}, false, r.apiFailure(ft, err, fmt.Sprintf("creating the job of attempt %d", attempt))
	}
	r.recordSubmitted(ft, patcher, attempt, job, lr, "Submitted fine-tune job %s (attempt %d).")
	return ctrl.Result{}, true, nil
}

// recordSubmitted makes job the current attempt's job. Progress fields of the
// previous attempt are cleared so that nothing of it is mistaken for this one.
// Its Event waits for the status write: if that is lost, the next reconcile
// finds the job by its tag and reports that instead, once.
func (r *TogetherFineTuneReconciler) recordSubmitted(ft *togetherv1.TogetherFineTune, patcher *statusPatcher, attempt int32, job *together.FineTune, lr float64, note string) {
	st := &ft.Status
	st.Submission = nil
	st.Attempt = attempt
	st.Step, st.Loss, st.EvalLoss, st.Checkpoints, st.Error, st.OutputModel = 0, nil, nil, nil, nil, ""
	fillFromJob(st, job)
	entry := togetherv1.FineTuneAttempt{Attempt: attempt, JobID: job.ID, LearningRate: &lr}
	st.Attempts = append(withoutAttempt(st.Attempts, attempt), entry)
	markReconciling(&st.Conditions, ft.Generation, ReasonJobPending,
		fmt.Sprintf("Fine-tune job %s (attempt %d of %d) is %s; waiting for Together.", job.ID, attempt, ftMaxAttempts(ft), job.Status))
	patcher.afterWrite(func() {
		r.Recorder.Eventf(ft, nil, corev1.EventTypeNormal, "Submitted", "Submit", note, job.ID, attempt)
	})
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
// operator recognises its own job.
func (r *TogetherFineTuneReconciler) findTaggedJob(ctx context.Context, tag string) (*together.FineTune, error) {
	jobs, err := r.API.ListFineTunes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		if j.Suffix == tag || strings.HasSuffix(j.Suffix, "-"+tag) || strings.Contains(j.ModelOutputName, tag) {
			return j, nil
		}
	}
	return nil, nil
}

// trainingFile returns the Together file ID to train on. For ConfigMap data
// it validates the JSONL first and uploads under a name derived from the
// resource's UID and the content, so a retry after a crash, or a later
// attempt with the same data, finds the earlier upload instead of repeating it.
func (r *TogetherFineTuneReconciler) trainingFile(ctx context.Context, ft *togetherv1.TogetherFineTune) (id string, res ctrl.Result, ok bool, err error) {
	tr := ft.Spec.Training
	if tr.TrainingFile != "" {
		return tr.TrainingFile, ctrl.Result{}, true, nil
	}
	ref := tr.TrainingData
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: ref.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			r.stall(ft, ReasonTrainingDataNotFound, fmt.Sprintf("ConfigMap %q does not exist; create it with key %q holding JSONL training data.", ref.Name, ref.Key))
			return "", ctrl.Result{RequeueAfter: ftRecheckInterval}, false, nil
		}
		return "", ctrl.Result{}, false, fmt.Errorf("reading training data ConfigMap %s/%s: %w", ft.Namespace, ref.Name, err)
	}
	data, found := cm.Data[ref.Key]
	if !found {
		b, inBinary := cm.BinaryData[ref.Key]
		data, found = string(b), inBinary
	}
	if !found {
		r.stall(ft, ReasonTrainingDataNotFound, fmt.Sprintf("ConfigMap %q has no key %q; add the JSONL training data under that key.", ref.Name, ref.Key))
		return "", ctrl.Result{RequeueAfter: ftRecheckInterval}, false, nil
	}
	if _, verr := dataset.ValidateFineTune(strings.NewReader(data)); verr != nil {
		var le *dataset.LineError
		if !errors.As(verr, &le) {
			return "", ctrl.Result{}, false, fmt.Errorf("validating training data of ConfigMap %s/%s: %w", ft.Namespace, ref.Name, verr)
		}
		r.stall(ft, ReasonInvalidTrainingData, fmt.Sprintf("Training data in ConfigMap %q key %q is invalid at line %d: %s. Fix the data; nothing was uploaded.", ref.Name, ref.Key, le.Line, le.Reason))
		return "", ctrl.Result{RequeueAfter: ftRecheckInterval}, false, nil
	}

	name := trainingFileName(ft, data)
	files, err := r.API.ListFiles(ctx)
	if err != nil {
		return "", ctrl.Result{}, false, r.apiFailure(ft, err, "listing files before uploading training data")
	}
	for _, f := range files {
		if f.Filename == name {
			ft.Status.TrainingFileID = f.ID
			return f.ID, ctrl.Result{}, true, nil
		}
	}
	f, err := r.API.UploadFile(ctx, name, together.FilePurposeFineTune, strings.NewReader(data))
	if err != nil {
		return "", ctrl.Result{}, false, r.apiFailure(ft, err, "uploading training data")
	}
	ft.Status.TrainingFileID = f.ID
	r.Recorder.Eventf(ft, nil, corev1.EventTypeNormal, "Uploaded", "Upload", "Uploaded training data from ConfigMap %s as file %s.", ref.Name, f.ID)
	return f.ID, ctrl.Result{}, true, nil
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

// ftSubmissionTag is 8 hex digits derived from the resource's UID and the
// attempt: short enough to fit the suffix, unique enough to tell apart the
// jobs of one account.
func ftSubmissionTag(uid types.UID, attempt int32) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", uid, attempt)))
	return hex.EncodeToString(h[:])[:8]
}

// jobSuffix joins the user's suffix and the tag within maxSuffixLen, cutting
// the user's part when needed: the tag is what makes a crash recoverable.
func jobSuffix(user, tag string) string {
	keep := maxSuffixLen - len(tag) - 1
	if len(user) > keep {
		user = user[:keep]
	}
	user = strings.TrimRight(user, "-")
	if user == "" {
		return tag
	}
	return user + "-" + tag
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
