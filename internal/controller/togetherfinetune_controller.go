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
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// FineTuneAPI is the part of the Together API the fine-tune reconciler uses.
// It is an interface so that tests can hand in the real client pointed at the
// simulator, or wrap it to observe calls; *together.Client implements it.
type FineTuneAPI interface {
	CreateFineTune(ctx context.Context, req together.CreateFineTuneRequest) (*together.FineTune, error)
	GetFineTune(ctx context.Context, id string) (*together.FineTune, error)
	ListFineTunes(ctx context.Context) ([]together.FineTune, error)
	CancelFineTune(ctx context.Context, id string) (*together.FineTune, error)
	UploadFile(ctx context.Context, fileName string, purpose together.FilePurpose, content io.Reader) (*together.File, error)
	ListFiles(ctx context.Context) ([]together.File, error)
	GetFile(ctx context.Context, id string) (*together.File, error)
	// DeleteEndpoint deletes a v1 endpoint recorded before the move to v2.
	DeleteEndpoint(ctx context.Context, id string) error
	// The v2 Dedicated Model Inference calls (finetune_endpoint.go).
	Whoami(ctx context.Context) (*together.Whoami, error)
	ListV2Configs(ctx context.Context, projectID, referenceModel string) ([]together.V2Config, error)
	FindV2EndpointByName(ctx context.Context, projectID, name string) (*together.V2Endpoint, error)
	CreateV2Endpoint(ctx context.Context, projectID string, req together.CreateV2EndpointRequest) (*together.V2Endpoint, error)
	GetV2Endpoint(ctx context.Context, projectID, id string) (*together.V2Endpoint, error)
	SetV2TrafficSplit(ctx context.Context, projectID, id, etag string, split []together.TrafficSplitEntry) (*together.V2Endpoint, error)
	DeleteV2Endpoint(ctx context.Context, projectID, id string) error
	ListV2Deployments(ctx context.Context, projectID, endpointID string) ([]together.V2Deployment, error)
	CreateV2Deployment(ctx context.Context, projectID, endpointID string, req together.CreateV2DeploymentRequest) (*together.V2Deployment, error)
	GetV2Deployment(ctx context.Context, projectID, endpointID, id string) (*together.V2Deployment, error)
	ScaleV2Deployment(ctx context.Context, projectID, endpointID, id string, minReplicas, maxReplicas int64) (*together.V2Deployment, error)
	DeleteV2Deployment(ctx context.Context, projectID, endpointID, id string) error
	GetFineTuneMetrics(ctx context.Context, id string) (*together.FineTuneMetrics, error)
}

var _ FineTuneAPI = (*together.Client)(nil)

const (
	// ftDefaultLearningRate is Together's documented default, the base of the
	// retry schedule when spec.training.learningRate is unset.
	ftDefaultLearningRate = 1e-5
	// ftDefaultLearningRateFactor halves the learning rate per retry when
	// spec.retry.learningRateFactor is unset: divergence is the most common
	// reason for a failed run that a parameter change can fix.
	ftDefaultLearningRateFactor = 0.5
	// ftEndpointPollInterval paces reads of an endpoint deployment that is
	// provisioning or stopping; that takes minutes, so there is no point
	// asking more often.
	ftEndpointPollInterval = 15 * time.Second
	// ftRecheckInterval is how often a problem nothing watched can signal
	// (a job ID Together does not know, a registry model not there yet) is
	// looked at again.
	ftRecheckInterval = time.Minute
	// ftOutputModelRecheck is how soon a completed job that names no output
	// model yet is read again.
	ftOutputModelRecheck = time.Minute
)

// TogetherFineTuneReconciler submits or adopts a Together fine-tune job,
// retries failures with adjusted parameters and deploys the result. What
// happens to the job itself arrives in status through the event intake; this
// reconciler decides what to do about it.
type TogetherFineTuneReconciler struct {
	client.Client
	Recorder EventRecorder
	// EndpointPollInterval overrides ftEndpointPollInterval (tests).
	EndpointPollInterval time.Duration
	// TogetherAccess is the API, where its key came from, and the
	// namespace accounts that replace both per reconcile.
	TogetherAccess[FineTuneAPI]

	// check sees every status patch (the ownership test sets it).
	check func(before, after client.Object, patch map[string]any) error
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// kind is TogetherFineTune's declaration for the shared skeleton
// (reconcile.go).
func (r *TogetherFineTuneReconciler) kind() *kind[*togetherv1.TogetherFineTune] {
	return &kind[*togetherv1.TogetherFineTune]{
		conditions: reconcile.Conditions{
			Owned: []string{togetherv1.ReadyCondition, togetherv1.ReconcilingCondition, togetherv1.StalledCondition, togetherv1.DeployedCondition, togetherv1.DeployTargetReadyCondition, togetherv1.RemoteCleanupCondition},
			// Ready needs Deployed when spec.deploy asks for a target.
			Positive: []string{togetherv1.DeployedCondition},
		},
		newObj:         func() *togetherv1.TogetherFineTune { return &togetherv1.TogetherFineTune{} },
		status:         func(ft *togetherv1.TogetherFineTune) any { return ft.Status },
		needsFinalizer: func(*togetherv1.TogetherFineTune) bool { return true },
		account:        r.useAccount,
		finalize:       r.finalize,
		gone:           func(req ctrl.Request) { deleteFineTuneMetrics(req.Namespace, req.Name) },
		steps: []step[*togetherv1.TogetherFineTune]{
			// policy: show in status which deletion policy applies.
			{name: "policy", run: func(_ context.Context, ft *togetherv1.TogetherFineTune, _ *scope) (ctrl.Result, error) {
				ft.Status.DeletionPolicy = ft.EffectiveDeletionPolicy()
				return ctrl.Result{}, nil
			}},
			// target: check spec.deploy.deployment before the current
			// attempt's model is deployed — before anything is submitted,
			// so that training is not paid for a model with nowhere to go.
			// Stalls (nothing submitted yet, onTargetNotReady Wait):
			// DeploymentNotFound, ContainerNotFound, EnvVarFromSource,
			// DeployTargetHeld; otherwise reports them on DeployTargetReady.
			{name: "target", owns: []string{togetherv1.DeployTargetReadyCondition}, run: r.reconcileTarget},
			// job: follow exactly one job per attempt: finish an interrupted
			// submission, adopt spec.jobID, or submit the first attempt.
			// Stalls: TrainingDataNotFound, InvalidTrainingData,
			// SubmissionRejected, JobNotFound, Unauthorized, QuotaExceeded.
			{name: "job", run: r.reconcileJob},
			// outcome: act on the phase the intake recorded: wait while the
			// job runs (JobPending, JobRunning), submit the next attempt
			// after a failure while attempts remain, stall when none is
			// left (JobFailed) or the job was cancelled (JobCancelled).
			{name: "outcome", run: r.reconcileOutcome},
			// deploy: take the succeeded attempt's model to spec.deploy's
			// targets once; owns Deployed, and says what Ready says.
			{name: "deploy", owns: []string{togetherv1.DeployedCondition}, run: r.reconcileDeploy},
		},
	}
}

// Reconcile brings a TogetherFineTune towards its spec: submit or adopt the
// job, react to its outcome, then deploy the model.
func (r *TogetherFineTuneReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// A copy per reconcile: its account hook makes API and KeySource the
	// resource's own.
	rr := *r
	return rr.kind().run(ctx, rr.Client, rr.Recorder, req, rr.check)
}

// finalize cleans up remote work according to spec.deletionPolicy before
// the finalizer goes.
func (r *TogetherFineTuneReconciler) finalize(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) error {
	deleteFineTuneMetrics(ft.Namespace, ft.Name)
	// Best effort: an annotation naming a deleted fine-tune holds nothing
	// (stillHolds), so a failure here must not hold the deletion up.
	if err := r.releaseTarget(ctx, ft); err != nil {
		logf.FromContext(ctx).Info("could not remove the deployed-by annotation; it names a deleted fine-tune and holds nothing", "error", err.Error())
	}
	if ft.EffectiveDeletionPolicy() == togetherv1.DeletionPolicyRetain {
		return nil
	}
	// Remote cleanup that cannot succeed (401/403, an annotation, too many
	// failures) is skipped with a Warning rather than wedging the deletion.
	// Waiting for a deployment to stop (a Reconciling DeletingEndpoint) is
	// not a failure.
	err := releaseRemote(ctx, ft, &ft.Status.CleanupAttempts, s, r.Recorder,
		"cancelling its fine-tune job or deleting its dedicated endpoint", func() error {
			if r.accountErr != nil {
				return r.accountErr
			}
			if err := r.cancelRemoteJob(ctx, ft); err != nil {
				return err
			}
			return r.deleteDedicatedEndpoint(ctx, ft)
		})
	if _, typed := reconcile.As(err); err == nil || typed {
		return err
	}
	return r.apiFailure(err, "cleaning up remote work before deletion")
}

// cancelRemoteJob cancels the current job when it may still be running,
// including one whose creation is in flight and not yet recorded.
func (r *TogetherFineTuneReconciler) cancelRemoteJob(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	id := ft.Status.JobID
	if sub := ft.Status.Submission; sub != nil {
		job, err := r.findTaggedJob(ctx, sub.Tag)
		if err != nil {
			return err
		}
		if job != nil && !job.Status.Terminal() {
			id = job.ID
		}
	} else if ft.Status.Phase.IsTerminal() {
		return nil
	}
	if id == "" || (ft.Spec.JobID != "" && ft.Spec.JobID == id) {
		// An adopted job was not created by this resource: deleting the
		// resource never cancels it, whatever spec.deletionPolicy says.
		return nil
	}
	if _, err := r.API.CancelFineTune(ctx, id); err != nil {
		if together.IsNotFound(err) || (together.IsInvalidRequest(err) && apiStatus(err) != http.StatusForbidden) {
			return nil // gone, or already finished: nothing to cancel
		}
		return err
	}
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonCancelled, "Cancel", "Cancelled fine-tune job %s because the resource was deleted.", id)
	return nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *TogetherFineTuneReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.API == nil {
		return errors.New("TogetherFineTuneReconciler needs a Together API client")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &togetherv1.TogetherFineTune{}, indexDeployTarget, deployTargetNames); err != nil {
		return fmt.Errorf("indexing fine-tunes by target Deployment: %w", err)
	}
	if err := indexReferences(mgr, &togetherv1.TogetherFineTune{}, indexTrainingConfigMap, trainingConfigMapNames); err != nil {
		return err
	}
	secrets, err := r.secretWatch(mgr, &togetherv1.TogetherFineTune{}, &togetherv1.TogetherFineTuneList{}, nil)
	if err != nil {
		return err
	}
	// A metadata-only watch (managed fields stripped by the cache's
	// transform) wakes the fine-tunes that target a Deployment when it is
	// created, deleted, its spec changes or its annotations do (another
	// fine-tune took the env var over): a fine-tune waiting for its target
	// submits as soon as it exists, and a holder learns it lost the target.
	b := ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherFineTune{}).
		WatchesMetadata(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.fineTunesTargeting),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Another fine-tune's claim on a target ending (deleted, or
		// retargeted) wakes the fine-tunes refused that target, even when
		// its deployed-by annotation stays behind (stillHolds).
		Watches(&togetherv1.TogetherFineTune{}, r.holderChanges()).
		// Training and evaluation data: a ConfigMap created, fixed or
		// deleted wakes the fine-tunes that read it (see watches.go).
		WatchesMetadata(&corev1.ConfigMap{}, enqueueReferencing(mgr.GetClient(), &togetherv1.TogetherFineTuneList{}, indexTrainingConfigMap))
	// The API key Secrets: one created or rotated wakes the fine-tunes
	// whose account it holds.
	return r.withAccountWatches(b, mgr, &togetherv1.TogetherFineTuneList{}, secrets).
		Named("togetherfinetune").
		Complete(requeueConflicts(r))
}

// indexDeployTarget indexes fine-tunes by the Deployment that
// spec.deploy.deployment names.
const indexDeployTarget = "spec.deploy.deployment.name"

func deployTargetNames(o client.Object) []string {
	ft, ok := o.(*togetherv1.TogetherFineTune)
	if !ok || ft.Spec.Deploy == nil || ft.Spec.Deploy.Deployment == nil {
		return nil
	}
	return []string{ft.Spec.Deploy.Deployment.Name}
}

// holderChanges wakes the fine-tunes that target the same Deployment as a
// fine-tune whose claim on it may have ended: deleted, being deleted, or
// with a changed spec (retargeted). Status writes (most events) are not
// spec changes, so they wake nothing. A fine-tune refused with
// DeployTargetHeld thus looks again at once instead of on a timer.
func (r *TogetherFineTuneReconciler) holderChanges() handler.EventHandler {
	wake := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[ctrl.Request], self string, objs ...client.Object) {
		for _, o := range objs {
			for _, name := range deployTargetNames(o) {
				ref := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: o.GetNamespace(), Name: name}}
				for _, req := range r.fineTunesTargeting(ctx, ref) {
					if req.Name != self {
						q.Add(req)
					}
				}
			}
		}
	}
	return handler.Funcs{
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			if e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() &&
				e.ObjectOld.GetDeletionTimestamp().IsZero() == e.ObjectNew.GetDeletionTimestamp().IsZero() {
				return
			}
			wake(ctx, q, e.ObjectNew.GetName(), e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			wake(ctx, q, e.Object.GetName(), e.Object)
		},
	}
}

// fineTunesTargeting maps a Deployment to the fine-tunes of its namespace
// that deploy into it.
func (r *TogetherFineTuneReconciler) fineTunesTargeting(ctx context.Context, dep client.Object) []ctrl.Request {
	list := &togetherv1.TogetherFineTuneList{}
	if err := r.List(ctx, list, client.InNamespace(dep.GetNamespace()), client.MatchingFields{indexDeployTarget: dep.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing fine-tunes that target a Deployment", "deployment", dep.GetName())
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
