package controller

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// TogetherFineTuneReconciler reconciles TogetherFineTune objects.
type TogetherFineTuneReconciler struct {
	client.Client
	Recorder EventRecorder
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherfinetunes/finalizers,verbs=update

// Reconcile brings a TogetherFineTune towards its spec.
func (r *TogetherFineTuneReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &togetherv1.TogetherFineTune{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, obj)
	defer func() {
		if err := patcher.patch(ctx, obj, func(o client.Object) any { return o.(*togetherv1.TogetherFineTune).Status }); err != nil && retErr == nil {
			retErr = err
		}
	}()

	obj.Status.ObservedGeneration = obj.Generation
	setReady(&obj.Status.Conditions, obj.Generation, metav1.ConditionTrue, ReasonSucceeded, "Reconciled.")
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *TogetherFineTuneReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherFineTune{}).
		Named("togetherfinetune").
		Complete(r)
}
