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
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// Defaults of the batch reconciler.
const (
	// DefaultMaxFetchAttempts bounds fetch Jobs per batch: a volume that
	// is full or a network that is down needs a person, not an endless loop.
	DefaultMaxFetchAttempts = 3
	// batchRecheckInterval is how often a problem nothing watched can
	// signal (a batch ID Together does not know) is looked at again.
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
	// BaseURL is the Together API URL fetch Jobs call.
	BaseURL string
	// Image is what fetch Jobs run; empty means env OPERATOR_IMAGE.
	Image string
	// MaxFetchAttempts bounds fetch Jobs; zero means DefaultMaxFetchAttempts.
	MaxFetchAttempts int32
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TogetherAccess is the API, where its key came from, and the
	// namespace accounts that replace both per reconcile.
	TogetherAccess[BatchAPI]

	// check sees every status patch (the ownership test sets it).
	check func(before, after client.Object, patch map[string]any) error
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherbatches/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// kind is TogetherBatch's declaration for the shared skeleton (reconcile.go).
func (r *TogetherBatchReconciler) kind() *kind[*togetherv1.TogetherBatch] {
	return &kind[*togetherv1.TogetherBatch]{
		conditions: reconcile.Conditions{
			Owned: []string{togetherv1.ReadyCondition, togetherv1.ReconcilingCondition, togetherv1.StalledCondition, togetherv1.OutputReadyCondition, togetherv1.RemoteCleanupCondition},
			// Ready needs OutputReady when spec.output asks for one.
			Positive: []string{togetherv1.OutputReadyCondition},
			// A batch runs for hours: each move of Ready (in progress,
			// fetching, succeeded) is an Event a person can follow.
			AnnounceReady: true,
		},
		newObj:         func() *togetherv1.TogetherBatch { return &togetherv1.TogetherBatch{} },
		status:         func(tb *togetherv1.TogetherBatch) any { return tb.Status },
		needsFinalizer: func(*togetherv1.TogetherBatch) bool { return true },
		account:        r.useAccount,
		finalize:       r.finalize,
		steps: []step[*togetherv1.TogetherBatch]{
			// policy: show in status which deletion policy applies.
			{name: "policy", run: func(_ context.Context, tb *togetherv1.TogetherBatch, _ *scope) (ctrl.Result, error) {
				tb.Status.DeletionPolicy = tb.EffectiveDeletionPolicy()
				return ctrl.Result{}, nil
			}},
			// submission: adopt spec.batchID, or validate, upload and submit
			// spec.input, finishing an interrupted submission instead of
			// starting a second one. Stalls: InputNotFound, InvalidInput,
			// BatchNotFound, BatchRejected, Unauthorized, QuotaExceeded.
			{name: "submission", run: r.reconcileSubmission},
			// output: write a succeeded batch's results where spec.output
			// asks (nothing for any other phase); owns OutputReady, and
			// says what Ready says. It runs before tokens because a
			// succeeded batch's tokens are counted from its output, so
			// Ready and accountedTokens land in the same write.
			{name: "output", owns: []string{togetherv1.OutputReadyCondition}, run: r.reconcileOutput},
			// tokens: add a finished batch's tokens (succeeded or not) to
			// the billing counter, each token once (tokens that arrive after
			// the ending add the difference).
			{name: "tokens", run: r.reconcileTokens},
			// phase: wait while the batch runs (BatchInProgress); stall when
			// it failed, expired or was cancelled.
			{name: "phase", run: r.reconcilePhase},
		},
	}
}

// Reconcile brings a TogetherBatch towards its spec.
func (r *TogetherBatchReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// A copy per reconcile: its account hook makes API and KeySource the
	// resource's own.
	rr := *r
	return rr.kind().run(ctx, rr.Client, rr.Recorder, req, rr.check)
}

// finalize cancels batches that are still running (deletionPolicy Cancel)
// or releases the outputs (Retain), and removes the fetch Job.
func (r *TogetherBatchReconciler) finalize(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope) error {
	if tb.EffectiveDeletionPolicy() == togetherv1.DeletionPolicyRetain {
		if err := r.releaseOutput(ctx, tb); err != nil {
			return err
		}
	} else {
		// Remote cleanup that cannot succeed (401/403, an annotation, too
		// many failures) is skipped with a Warning rather than wedging the
		// deletion.
		err := releaseRemote(ctx, tb, &tb.Status.CleanupAttempts, s, r.Recorder, "cancelling its running batches", func() error {
			if r.accountErr != nil && len(cancellableBatchIDs(tb)) > 0 {
				return r.accountErr
			}
			for _, id := range cancellableBatchIDs(tb) {
				if _, err := r.API.CancelBatch(ctx, id); err != nil && !together.IsNotFound(err) &&
					(!together.IsInvalidRequest(err) || apiStatus(err) == http.StatusForbidden) {
					return fmt.Errorf("cancelling batch %s before deleting the resource: %w", id, err)
				}
				r.Recorder.Eventf(tb, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonCancelled, "Delete", "Cancelled batch %s because the resource was deleted.", id)
			}
			return nil
		})
		if err != nil {
			return r.apiFailure(err, "cancelling running batches before deleting the resource")
		}
	}
	return r.deleteFetchJob(ctx, tb, nil)
}

// cancellableBatchIDs lists the batches of tb that have not ended and that
// tb created: an adopted batch (spec.batchID) is never cancelled.
func cancellableBatchIDs(tb *togetherv1.TogetherBatch) []string {
	if tb.Spec.BatchID != "" {
		return nil
	}
	return tb.RunningBatchIDs()
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

// outputClaimNames is the claim a PVC output is written to
// (spec.output.persistentVolumeClaim.claimName).
func outputClaimNames(o client.Object) []string {
	tb, ok := o.(*togetherv1.TogetherBatch)
	if !ok || tb.Spec.Output == nil || tb.Spec.Output.PersistentVolumeClaim == nil {
		return nil
	}
	return []string{tb.Spec.Output.PersistentVolumeClaim.ClaimName}
}

// SetupWithManager registers the reconciler with the manager. Fetch Jobs are
// owned, so their completion triggers a reconcile.
func (r *TogetherBatchReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := indexReferences(mgr, &togetherv1.TogetherBatch{}, indexBatchConfigMaps, batchConfigMapNames); err != nil {
		return err
	}
	// The batch's own account's Secret, which its fetch Job reads too.
	secrets, err := r.secretWatch(mgr, &togetherv1.TogetherBatch{}, &togetherv1.TogetherBatchList{}, nil)
	if err != nil {
		return err
	}
	if err := indexReferences(mgr, &togetherv1.TogetherBatch{}, indexOutputClaim, outputClaimNames); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherBatch{}).
		Owns(&batchv1.Job{}).
		// The input ConfigMap, and an output ConfigMap in the way: created,
		// fixed or deleted, it wakes the batches that name it.
		WatchesMetadata(&corev1.ConfigMap{}, enqueueReferencing(mgr.GetClient(), &togetherv1.TogetherBatchList{}, indexBatchConfigMaps)).
		// The output claim: created, or opted in with its annotation or
		// label, it wakes the batches that write to it.
		WatchesMetadata(&corev1.PersistentVolumeClaim{}, enqueueReferencing(mgr.GetClient(), &togetherv1.TogetherBatchList{}, indexOutputClaim),
			builder.WithPredicates(predicate.Or(predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{})))
	return r.withAccountWatches(b, mgr, &togetherv1.TogetherBatchList{}, secrets).
		Named("togetherbatch").
		Complete(requeueConflicts(r))
}
