package controller

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
)

// Condition type and reasons of TogetherBatch. Each reason names a situation
// a person can act on; the condition message says what to do.
const (
	// OutputReadyCondition reports whether the results were written where
	// spec.output asks. It is absent when no output is requested.
	OutputReadyCondition = "OutputReady"

	// ReasonInvalidInput means a line of the input is not a valid batch
	// request; nothing was uploaded.
	ReasonInvalidInput = "InvalidInput"
	// ReasonInputNotFound means the input ConfigMap or its key is missing.
	ReasonInputNotFound = "InputNotFound"
	// ReasonBatchNotFound means spec.batchID names a batch Together does not know.
	ReasonBatchNotFound = "BatchNotFound"
	// ReasonBatchRejected means Together refused to create the batch.
	ReasonBatchRejected = "BatchRejected"
	// ReasonBatchInProgress means Together is validating or running the batch.
	ReasonBatchInProgress = "BatchInProgress"
	// ReasonBatchFailed means Together reported the batch (or a part) failed.
	ReasonBatchFailed = "BatchFailed"
	// ReasonBatchExpired means the batch did not finish within its window.
	ReasonBatchExpired = "BatchExpired"
	// ReasonBatchCancelled means the batch was cancelled.
	ReasonBatchCancelled = "BatchCancelled"
	// ReasonFetching means the output is being downloaded.
	ReasonFetching = "Fetching"
	// ReasonFetchFailed means downloading the output failed and no attempt is left.
	ReasonFetchFailed = "FetchFailed"
	// ReasonAPIKeySecretNotFound means the Secret named by
	// spec.output.persistentVolumeClaim.apiKeySecretRef, or its key, is
	// missing, so the fetch Job cannot start.
	ReasonAPIKeySecretNotFound = "APIKeySecretNotFound"
	// ReasonOutputTooLarge means the output does not fit a ConfigMap.
	ReasonOutputTooLarge = "OutputTooLarge"
	// ReasonOutputConflict means the output ConfigMap exists and was not
	// created for this batch, so the operator will not overwrite it.
	ReasonOutputConflict = "OutputConflict"
	// ReasonOutputWritten means the output was written and verified.
	ReasonOutputWritten = "OutputWritten"
)

// Defaults of the batch reconciler.
const (
	// DefaultMaxFetchAttempts bounds fetch Jobs per batch: a volume that
	// is full or a network that is down needs a person, not an endless loop.
	DefaultMaxFetchAttempts = 3
	// batchRecheckInterval is how often a problem outside the operator's
	// watch (a missing ConfigMap, an API outage) is looked at again.
	batchRecheckInterval = time.Minute
	// OperatorImageEnv names the environment variable holding the image
	// fetch Jobs run, normally the operator's own.
	OperatorImageEnv = "OPERATOR_IMAGE"
)

// BatchAPI is the part of the Together client the batch reconciler uses;
// *together.Client implements it.
type BatchAPI interface {
	CreateBatch(ctx context.Context, req together.CreateBatchRequest) (*together.Batch, error)
	GetBatch(ctx context.Context, id string) (*together.Batch, error)
	ListBatches(ctx context.Context) ([]together.Batch, error)
	CancelBatch(ctx context.Context, id string) (*together.Batch, error)
	UploadFile(ctx context.Context, fileName string, purpose together.FilePurpose, content io.Reader) (*together.File, error)
	GetFile(ctx context.Context, id string) (*together.File, error)
	ListFiles(ctx context.Context) ([]together.File, error)
	DownloadFile(ctx context.Context, id string) (io.ReadCloser, error)
}

var _ BatchAPI = (*together.Client)(nil)

// TogetherBatchReconciler submits or adopts a Together batch, fetches its
// output where spec.output asks and accounts its tokens once. What happens to
// the batch itself arrives in status through the event intake (pushes and
// the poller); this reconciler acts on that status.
type TogetherBatchReconciler struct {
	client.Client
	// APIReader reads Pods of fetch Jobs without caching every Pod of the
	// cluster; nil means Client.
	APIReader client.Reader
	Recorder  EventRecorder
	// API is the Together client.
	API BatchAPI
	// BaseURL is the Together API URL fetch Jobs call.
	BaseURL string
	// Image is what fetch Jobs run; empty means env OPERATOR_IMAGE.
	Image string
	// MaxFetchAttempts bounds fetch Jobs; zero means DefaultMaxFetchAttempts.
	MaxFetchAttempts int32
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// batchStep is one stage of reconciling a batch; done=false stops the
// remaining stages for this reconcile.
type batchStep func(ctx context.Context, tb *togetherv1.TogetherBatch, p *statusPatcher) (res ctrl.Result, done bool, err error)

func batchStatusOf(o client.Object) any { return o.(*togetherv1.TogetherBatch).Status }

// Reconcile brings a TogetherBatch towards its spec.
func (r *TogetherBatchReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	tb := &togetherv1.TogetherBatch{}
	if err := r.Get(ctx, req.NamespacedName, tb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, tb)
	// A copy: the conditions are updated in place during the reconcile.
	var readyBefore *metav1.Condition
	if c := apimeta.FindStatusCondition(tb.Status.Conditions, togetherv1.ReadyCondition); c != nil {
		readyBefore = c.DeepCopy()
	}
	defer func() {
		// A transition is announced once it is recorded: after a lost
		// write the next reconcile still sees the old reason and announces it.
		patcher.afterWrite(func() { r.emitTransition(tb, readyBefore) })
		if err := patcher.patch(ctx, tb, batchStatusOf); err != nil && retErr == nil {
			retErr = err
		}
	}()

	if !tb.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, tb)
	}
	if controllerutil.AddFinalizer(tb, togetherv1.FinalizerName) {
		if err := r.Update(ctx, tb); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to %s: %w", req.NamespacedName, err)
		}
		patcher.before = tb.DeepCopy()
	}
	tb.Status.ObservedGeneration = tb.Generation

	for _, step := range []batchStep{r.reconcileSubmission, r.reconcilePhase, r.reconcileTokens, r.reconcileOutput} {
		res, done, err := step(ctx, tb, patcher)
		if err != nil || !done {
			return res, err
		}
		result = res
	}
	return result, nil
}

// writeStatusNow writes status immediately, for the writes whose order
// matters (the submission marker before a create, tokensAccounted before the
// counter), and re-bases the deferred patch on what was written.
func (r *TogetherBatchReconciler) writeStatusNow(ctx context.Context, tb *togetherv1.TogetherBatch, p *statusPatcher) error {
	if err := p.patch(ctx, tb, batchStatusOf); err != nil {
		return err
	}
	p.before = tb.DeepCopy()
	return nil
}

// emitTransition records one Event when Ready changes reason, so a person
// sees each meaningful transition once and never one Event per retry.
func (r *TogetherBatchReconciler) emitTransition(tb *togetherv1.TogetherBatch, before *metav1.Condition) {
	now := apimeta.FindStatusCondition(tb.Status.Conditions, togetherv1.ReadyCondition)
	if now == nil || (before != nil && before.Reason == now.Reason && before.Status == now.Status) {
		return
	}
	switch now.Reason {
	case ReasonInvalidInput, ReasonInputNotFound, ReasonBatchNotFound, ReasonBatchFailed, ReasonBatchExpired,
		ReasonFetchFailed, ReasonOutputTooLarge, ReasonOutputConflict, ReasonUnauthorized, ReasonBatchRejected, ReasonAPIKeySecretNotFound:
		r.Recorder.Eventf(tb, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
	case ReasonBatchInProgress, ReasonFetching, ReasonSucceeded, ReasonBatchCancelled:
		r.Recorder.Eventf(tb, nil, corev1.EventTypeNormal, now.Reason, "Reconcile", "%s", now.Message)
	}
}

// reconcileDelete cancels batches that are still running (deletionPolicy
// Cancel) or releases the outputs (Retain), removes the fetch Job and then
// the finalizer.
func (r *TogetherBatchReconciler) reconcileDelete(ctx context.Context, tb *togetherv1.TogetherBatch) error {
	if !controllerutil.ContainsFinalizer(tb, togetherv1.FinalizerName) {
		return nil
	}
	if tb.Spec.DeletionPolicy == togetherv1.DeletionPolicyRetain {
		if err := r.releaseOutput(ctx, tb); err != nil {
			return err
		}
	} else {
		for _, id := range runningBatchIDs(tb) {
			if _, err := r.API.CancelBatch(ctx, id); err != nil && !together.IsNotFound(err) && !together.IsInvalidRequest(err) {
				return fmt.Errorf("cancelling batch %s before deleting %s: %w", id, tb.Name, err)
			}
			r.Recorder.Eventf(tb, nil, corev1.EventTypeNormal, "Cancelled", "Delete", "Cancelled batch %s because the resource was deleted.", id)
		}
	}
	if err := r.deleteFetchJob(ctx, tb); err != nil {
		return err
	}
	controllerutil.RemoveFinalizer(tb, togetherv1.FinalizerName)
	if err := r.Update(ctx, tb); err != nil {
		return fmt.Errorf("removing finalizer from %s: %w", tb.Name, err)
	}
	return nil
}

// runningBatchIDs lists the batches of tb that have not ended.
func runningBatchIDs(tb *togetherv1.TogetherBatch) []string {
	var ids []string
	if len(tb.Status.Parts) > 0 {
		for _, p := range tb.Status.Parts {
			if p.BatchID != "" && !p.Phase.IsTerminal() {
				ids = append(ids, p.BatchID)
			}
		}
		return ids
	}
	if tb.Status.BatchID != "" && !tb.Status.Phase.IsTerminal() {
		ids = append(ids, tb.Status.BatchID)
	}
	return ids
}

// image is the fetch Jobs' image.
func (r *TogetherBatchReconciler) image() string {
	if r.Image != "" {
		return r.Image
	}
	return os.Getenv(OperatorImageEnv)
}

func (r *TogetherBatchReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *TogetherBatchReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// SetupWithManager registers the reconciler with the manager. Fetch Jobs are
// owned, so their completion triggers a reconcile.
func (r *TogetherBatchReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherBatch{}).
		Owns(&batchv1.Job{}).
		Named("togetherbatch").
		Complete(requeueConflicts(r))
}
