package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
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
	CreateEndpoint(ctx context.Context, req together.CreateEndpointRequest) (*together.Endpoint, error)
	ListEndpoints(ctx context.Context, o together.ListEndpointsOptions) ([]together.Endpoint, error)
	GetEndpoint(ctx context.Context, id string) (*together.Endpoint, error)
	DeleteEndpoint(ctx context.Context, id string) error
	GetFineTuneMetrics(ctx context.Context, id string) (*together.FineTuneMetrics, error)
}

var _ FineTuneAPI = (*together.Client)(nil)

// Condition type and reasons of TogetherFineTune. Each reason names a
// situation a person can act on; the condition message says what to do.
const (
	// DeployedCondition reports whether the current attempt's model reached
	// the deploy targets of spec.deploy. It is absent when nothing is to be
	// deployed.
	DeployedCondition = "Deployed"

	// ReasonJobPending means the job was submitted and waits for Together.
	ReasonJobPending = "JobPending"
	// ReasonJobRunning means the job is training.
	ReasonJobRunning = "JobRunning"
	// ReasonJobFailed means the job failed and no retry attempt is left.
	ReasonJobFailed = "JobFailed"
	// ReasonRetrying means an attempt failed and a new one is being submitted.
	ReasonRetrying = "Retrying"
	// ReasonJobCancelled means the job was cancelled outside the operator.
	ReasonJobCancelled = "JobCancelled"
	// ReasonJobNotFound means spec.jobID names a job Together does not know.
	ReasonJobNotFound = "JobNotFound"
	// ReasonInvalidTrainingData means the ConfigMap's JSONL is not in an
	// accepted format; nothing was uploaded.
	ReasonInvalidTrainingData = "InvalidTrainingData"
	// ReasonTrainingDataNotFound means the ConfigMap or key is missing.
	ReasonTrainingDataNotFound = "TrainingDataNotFound"
	// ReasonSubmissionRejected means Together refused the job's parameters.
	ReasonSubmissionRejected = "SubmissionRejected"
	// ReasonQuotaExceeded means the account's spending limit was reached.
	ReasonQuotaExceeded = "QuotaExceeded"
	// ReasonQualityGateFailed means the model's eval loss is above
	// spec.deploy.maxEvalLoss, or unknown while a gate is set.
	ReasonQualityGateFailed = "QualityGateFailed"
	// ReasonDeploymentNotFound means spec.deploy.deployment names a
	// Deployment that does not exist in the namespace.
	ReasonDeploymentNotFound = "DeploymentNotFound"
	// ReasonContainerNotFound means the Deployment has no such container.
	ReasonContainerNotFound = "ContainerNotFound"
	// ReasonEnvVarFromSource means the target env var takes its value from a
	// ConfigMap, Secret or field, which the operator will not overwrite.
	ReasonEnvVarFromSource = "EnvVarFromSource"
	// ReasonEndpointStarting means the dedicated endpoint is not STARTED yet.
	ReasonEndpointStarting = "EndpointStarting"
	// ReasonEndpointFailed means the dedicated endpoint could not be created
	// or ended in ERROR or STOPPED.
	ReasonEndpointFailed = "EndpointFailed"
	// ReasonDeployed means every deploy target holds the model.
	ReasonDeployed = "Deployed"
)

const (
	// ftDefaultLearningRate is Together's documented default, the base of the
	// retry schedule when spec.training.learningRate is unset.
	ftDefaultLearningRate = 1e-5
	// ftDefaultLearningRateFactor halves the learning rate per retry when
	// spec.retry.learningRateFactor is unset: divergence is the most common
	// reason for a failed run that a parameter change can fix.
	ftDefaultLearningRateFactor = 0.5
	// ftEndpointPollInterval paces reads of an endpoint that is starting;
	// endpoints take minutes, so there is no point asking more often.
	ftEndpointPollInterval = 15 * time.Second
	// ftRecheckInterval is how often a problem outside the operator's watch
	// (a ConfigMap or Deployment that is not cached) is looked at again.
	ftRecheckInterval = time.Minute
)

// TogetherFineTuneReconciler submits or adopts a Together fine-tune job,
// retries failures with adjusted parameters and deploys the result. What
// happens to the job itself arrives in status through the event intake; this
// reconciler decides what to do about it.
type TogetherFineTuneReconciler struct {
	client.Client
	Recorder EventRecorder
	// API talks to Together.
	API FineTuneAPI
	// EndpointPollInterval overrides ftEndpointPollInterval (tests).
	EndpointPollInterval time.Duration
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// ftStep is one stage of a reconcile. It returns done=false when later stages
// must wait (the job is still running, a deploy target is not ready), with
// the result to return.
type ftStep func(ctx context.Context, ft *togetherv1.TogetherFineTune) (res ctrl.Result, done bool, err error)

// Reconcile brings a TogetherFineTune towards its spec: submit or adopt the
// job, react to its outcome, then deploy the model.
func (r *TogetherFineTuneReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ft := &togetherv1.TogetherFineTune{}
	if err := r.Get(ctx, req.NamespacedName, ft); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, ft)
	removed := false
	defer func() {
		if removed {
			return // the object is gone with its status
		}
		if retErr == nil {
			ft.Status.ObservedGeneration = ft.Generation
		}
		if err := patcher.patch(ctx, ft, ftStatusOf); err != nil && retErr == nil {
			retErr = err
		}
	}()

	if !ft.DeletionTimestamp.IsZero() {
		var err error
		removed, err = r.reconcileDelete(ctx, ft)
		return ctrl.Result{}, err
	}
	if !controllerutil.ContainsFinalizer(ft, togetherv1.FinalizerName) {
		before := ft.DeepCopy()
		controllerutil.AddFinalizer(ft, togetherv1.FinalizerName)
		if err := r.Patch(ctx, ft, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to %s: %w", req.NamespacedName, err)
		}
		// The patch moved resourceVersion; status edits start from here.
		ft.Status = before.Status
		*patcher = *newStatusPatcher(r.Client, ft)
	}

	for _, step := range []ftStep{
		func(ctx context.Context, ft *togetherv1.TogetherFineTune) (ctrl.Result, bool, error) {
			return r.reconcileJob(ctx, ft, patcher)
		},
		func(ctx context.Context, ft *togetherv1.TogetherFineTune) (ctrl.Result, bool, error) {
			return r.reconcileOutcome(ctx, ft, patcher)
		},
		r.reconcileDeploy,
	} {
		res, done, err := step(ctx, ft)
		if err != nil || !done {
			return res, err
		}
	}
	return ctrl.Result{}, nil
}

func ftStatusOf(o client.Object) any { return o.(*togetherv1.TogetherFineTune).Status }

// persistStatus writes status now rather than at the end of the reconcile.
// It is used before a paid remote call, so that the call's marker survives a
// crash; the patcher is re-based so the final write sees the new version.
func (r *TogetherFineTuneReconciler) persistStatus(ctx context.Context, ft *togetherv1.TogetherFineTune, patcher *statusPatcher) error {
	if err := patcher.patch(ctx, ft, ftStatusOf); err != nil {
		return err
	}
	*patcher = *newStatusPatcher(r.Client, ft)
	return nil
}

// reconcileDelete cleans up remote work according to spec.deletionPolicy and
// removes the finalizer. It reports whether the finalizer was removed.
func (r *TogetherFineTuneReconciler) reconcileDelete(ctx context.Context, ft *togetherv1.TogetherFineTune) (bool, error) {
	if !controllerutil.ContainsFinalizer(ft, togetherv1.FinalizerName) {
		return false, nil
	}
	deleteFineTuneMetrics(ft)
	if ft.Spec.DeletionPolicy != togetherv1.DeletionPolicyRetain {
		if err := r.cancelRemoteJob(ctx, ft); err != nil {
			return false, r.apiFailure(ft, err, "cancelling the job before deletion")
		}
		if err := r.deleteEndpoint(ctx, ft); err != nil {
			return false, r.apiFailure(ft, err, "deleting the dedicated endpoint before deletion")
		}
	}
	before := ft.DeepCopy()
	controllerutil.RemoveFinalizer(ft, togetherv1.FinalizerName)
	if err := r.Patch(ctx, ft, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("removing finalizer from %s/%s: %w", ft.Namespace, ft.Name, err)
	}
	return true, nil
}

// deleteEndpoint deletes the fine-tune's dedicated endpoint, including one
// created just before a lost status write, which only its model identifies.
func (r *TogetherFineTuneReconciler) deleteEndpoint(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	var id, name string
	switch ep := ft.Status.Endpoint; {
	case ep != nil && ep.ID != "":
		id, name = ep.ID, ep.Name
	case ft.Spec.Deploy != nil && ft.Spec.Deploy.Endpoint != nil && ft.Status.OutputModel != "":
		found, err := r.findEndpointServing(ctx, ft.Status.OutputModel)
		if err != nil || found == nil {
			return err
		}
		id, name = found.ID, found.Name
	default:
		return nil
	}
	if err := r.API.DeleteEndpoint(ctx, id); err != nil && !together.IsNotFound(err) {
		return fmt.Errorf("deleting endpoint %s: %w", id, err)
	}
	r.Recorder.Eventf(ft, nil, "Normal", "EndpointDeleted", "Delete", "Deleted dedicated endpoint %s.", name)
	return nil
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
	if id == "" || (ft.Spec.JobID != "" && ft.Spec.JobID == id && ft.Status.Phase.IsTerminal()) {
		return nil
	}
	if _, err := r.API.CancelFineTune(ctx, id); err != nil {
		if together.IsNotFound(err) || together.IsInvalidRequest(err) {
			return nil // gone, or already finished: nothing to cancel
		}
		return err
	}
	r.Recorder.Eventf(ft, nil, "Normal", "JobCancelled", "Cancel", "Cancelled fine-tune job %s because the resource was deleted.", id)
	return nil
}

// apiFailure turns a Together error into conditions and a wrapped error. A
// rejected key stalls the resource (retrying cannot help until the Secret
// changes); other errors are retried with backoff.
func (r *TogetherFineTuneReconciler) apiFailure(ft *togetherv1.TogetherFineTune, err error, doing string) error {
	switch {
	case together.IsUnauthorized(err):
		r.stall(ft, ReasonUnauthorized, "Together rejected the API key while "+doing+"; update the operator's API key Secret.")
	case together.IsQuotaExceeded(err):
		r.stall(ft, ReasonQuotaExceeded, "Together refused the request while "+doing+" because the account's spending limit is reached; raise the limit at together.ai.")
	default:
		markReconciling(&ft.Status.Conditions, ft.Generation, ReasonAPIError, "Together answered with an error while "+doing+"; retrying: "+err.Error())
	}
	return fmt.Errorf("%s for %s/%s: %w", doing, ft.Namespace, ft.Name, err)
}

// stall marks the resource Stalled and emits a Warning Event, once per
// distinct problem: a reconcile that finds the same problem again stays
// quiet so that retries do not flood the event stream.
func (r *TogetherFineTuneReconciler) stall(ft *togetherv1.TogetherFineTune, reason, message string) {
	if c := ftCondition(ft.Status.Conditions, togetherv1.StalledCondition); c == nil || c.Reason != reason || c.Message != message {
		r.Recorder.Eventf(ft, nil, "Warning", reason, "Reconcile", "%s", message)
	}
	markStalled(&ft.Status.Conditions, ft.Generation, reason, message)
}

func ftCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *TogetherFineTuneReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.API == nil {
		return errors.New("TogetherFineTuneReconciler needs a Together API client")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherFineTune{}).
		Named("togetherfinetune").
		Complete(requeueConflicts(r))
}
