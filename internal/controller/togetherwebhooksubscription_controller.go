package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/webhook"
)

// RegisteredCondition says whether the subscription is registered with the
// remote API. It is informational: Ready does not depend on it, because the
// poller covers an API that cannot push.
const RegisteredCondition = "Registered"

// Reasons of the subscription reconciler.
const (
	// ReasonServing means the endpoint serves this subscription.
	ReasonServing = "Serving"
	// ReasonRegistered means the remote API delivers to this subscription.
	ReasonRegistered = "Registered"
	// ReasonNotRequested means spec.register is false.
	ReasonNotRequested = "NotRequested"
	// ReasonNotSupported means the remote API has no webhooks endpoint
	// (Together's public API today); polling covers it.
	ReasonNotSupported = "NotSupported"
	// ReasonRegistrationFailed means the remote API refused or failed the
	// registration; it is retried.
	ReasonRegistrationFailed = "RegistrationFailed"
	// ReasonNoAPI means registration was asked for but the manager has no
	// Together API client configured.
	ReasonNoAPI = "NoAPIConfigured"
)

// secretRecheckInterval is how soon a subscription whose Secret is missing
// looks for it again.
const secretRecheckInterval = 10 * time.Second

// WebhookAPI is the part of the Together client that registers subscriptions.
type WebhookAPI interface {
	CreateWebhook(ctx context.Context, req together.WebhookRequest) (*together.Webhook, error)
	UpdateWebhook(ctx context.Context, id string, req together.WebhookRequest) (*together.Webhook, error)
	DeleteWebhook(ctx context.Context, id string) error
}

// TogetherWebhookSubscriptionReconciler checks a subscription's signing
// secret, publishes the path it is served at, and registers it remotely when
// asked to.
type TogetherWebhookSubscriptionReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server (never cached).
	APIReader client.Reader
	Recorder  EventRecorder
	// API registers subscriptions; nil when no API is configured.
	API WebhookAPI
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings a TogetherWebhookSubscription towards its spec.
func (r *TogetherWebhookSubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	sub := &togetherv1.TogetherWebhookSubscription{}
	if err := r.Get(ctx, req.NamespacedName, sub); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, sub)
	defer func() {
		if err := patcher.patch(ctx, sub, func(o client.Object) any { return o.(*togetherv1.TogetherWebhookSubscription).Status }); err != nil && retErr == nil {
			retErr = err
		}
	}()

	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, sub)
	}
	sub.Status.ObservedGeneration = sub.Generation
	sub.Status.WebhookPath = webhook.PathFor(sub.Namespace, sub.Name)

	secret, err := r.reconcileSecret(ctx, sub)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secret == nil {
		// Secrets are not watched (that would cache every Secret of the
		// cluster), so look again for one created after the subscription.
		return ctrl.Result{RequeueAfter: secretRecheckInterval}, nil
	}
	if err := r.reconcileRegistration(ctx, sub, secret); err != nil {
		return ctrl.Result{}, err
	}
	setReady(&sub.Status.Conditions, sub.Generation, metav1.ConditionTrue, ReasonServing,
		fmt.Sprintf("Accepting signed events at %s on the manager's events endpoint.", sub.Status.WebhookPath))
	return ctrl.Result{}, nil
}

// reconcileSecret checks that the signing secret exists. A missing one is
// Stalled (the person must create it); the Secret is returned for
// registration.
func (r *TogetherWebhookSubscriptionReconciler) reconcileSecret(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) (*corev1.Secret, error) {
	if _, err := webhook.ReadSigningSecrets(ctx, r.APIReader, sub.Namespace, sub.Spec.SecretRef); err != nil {
		if errors.Is(err, webhook.ErrSecretMissing) {
			key := sub.Spec.SecretRef.Key
			if key == "" {
				key = "secret"
			}
			markStalled(&sub.Status.Conditions, sub.Generation, ReasonSecretNotFound,
				fmt.Sprintf("%v. Create it, e.g. kubectl -n %s create secret generic %s --from-literal=%s=<signing secret>; deliveries are refused with 401 until then.",
					err, sub.Namespace, sub.Spec.SecretRef.Name, key))
			return nil, nil
		}
		return nil, err
	}
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: sub.Namespace, Name: sub.Spec.SecretRef.Name}, &s); err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", sub.Namespace, sub.Spec.SecretRef.Name, err)
	}
	return &s, nil
}

// reconcileRegistration creates, updates or removes the remote registration.
func (r *TogetherWebhookSubscriptionReconciler) reconcileRegistration(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, secret *corev1.Secret) error {
	if !sub.Spec.Register {
		if sub.Status.RemoteID != "" {
			if err := r.unregister(ctx, sub); err != nil {
				return err
			}
		}
		controllerutil.RemoveFinalizer(sub, togetherv1.FinalizerName)
		setCondition(&sub.Status.Conditions, sub.Generation, RegisteredCondition, metav1.ConditionFalse, ReasonNotRequested,
			"spec.register is false: point a sender (a relay, or together-sim) at status.webhookPath yourself.")
		return r.updateFinalizers(ctx, sub, false)
	}
	if r.API == nil {
		setCondition(&sub.Status.Conditions, sub.Generation, RegisteredCondition, metav1.ConditionFalse, ReasonNoAPI,
			"The manager has no Together API configured (set TOGETHER_API_KEY or --api-key-secret); the subscription is served but not registered.")
		return nil
	}
	if err := r.updateFinalizers(ctx, sub, true); err != nil {
		return err
	}
	hash := registrationHash(sub, secret)
	if sub.Status.RemoteID != "" && sub.Status.RegistrationHash == hash {
		return nil
	}
	key := sub.Spec.SecretRef.Key
	if key == "" {
		key = "secret"
	}
	req := together.WebhookRequest{URL: sub.Spec.URL, Events: eventNames(sub), Secret: string(secret.Data[key])}
	var (
		wh  *together.Webhook
		err error
	)
	if sub.Status.RemoteID == "" {
		wh, err = r.API.CreateWebhook(ctx, req)
	} else {
		wh, err = r.API.UpdateWebhook(ctx, sub.Status.RemoteID, req)
	}
	switch {
	case errors.Is(err, together.ErrNotSupported):
		setCondition(&sub.Status.Conditions, sub.Generation, RegisteredCondition, metav1.ConditionFalse, ReasonNotSupported,
			"The Together API has no webhooks endpoint (its public API pushes nothing today); the poller keeps resources current, and a relay can still post to status.webhookPath.")
		return nil
	case err != nil:
		setCondition(&sub.Status.Conditions, sub.Generation, RegisteredCondition, metav1.ConditionFalse, ReasonRegistrationFailed,
			fmt.Sprintf("Registering with the Together API failed (%v); retrying.", err))
		return fmt.Errorf("registering subscription %s/%s: %w", sub.Namespace, sub.Name, err)
	}
	if sub.Status.RemoteID != wh.ID {
		r.Recorder.Eventf(sub, nil, corev1.EventTypeNormal, ReasonRegistered, "Register", "Registered with the remote API as %s", wh.ID)
	}
	sub.Status.RemoteID = wh.ID
	sub.Status.RegistrationHash = hash
	setCondition(&sub.Status.Conditions, sub.Generation, RegisteredCondition, metav1.ConditionTrue, ReasonRegistered,
		fmt.Sprintf("Registered remotely as %s, delivering to %s.", wh.ID, sub.Spec.URL))
	return nil
}

func (r *TogetherWebhookSubscriptionReconciler) reconcileDelete(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) error {
	if !controllerutil.ContainsFinalizer(sub, togetherv1.FinalizerName) {
		return nil
	}
	if err := r.unregister(ctx, sub); err != nil {
		return err
	}
	return r.updateFinalizers(ctx, sub, false)
}

// unregister deletes the remote registration; one that is already gone, or
// an API without webhooks, counts as done.
func (r *TogetherWebhookSubscriptionReconciler) unregister(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) error {
	if sub.Status.RemoteID == "" || r.API == nil {
		return nil
	}
	err := r.API.DeleteWebhook(ctx, sub.Status.RemoteID)
	if err != nil && !together.IsNotFound(err) && !errors.Is(err, together.ErrNotSupported) {
		return fmt.Errorf("deleting remote subscription %s: %w", sub.Status.RemoteID, err)
	}
	sub.Status.RemoteID = ""
	sub.Status.RegistrationHash = ""
	apimeta.RemoveStatusCondition(&sub.Status.Conditions, RegisteredCondition)
	return nil
}

// updateFinalizers adds or removes the finalizer with a patch of metadata
// only, leaving the deferred status patch to write status.
func (r *TogetherWebhookSubscriptionReconciler) updateFinalizers(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, want bool) error {
	if controllerutil.ContainsFinalizer(sub, togetherv1.FinalizerName) == want {
		return nil
	}
	before := sub.DeepCopy()
	if want {
		controllerutil.AddFinalizer(sub, togetherv1.FinalizerName)
	} else {
		controllerutil.RemoveFinalizer(sub, togetherv1.FinalizerName)
	}
	status := sub.Status
	if err := r.Patch(ctx, sub, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("updating finalizers: %w", err)
	}
	sub.Status = status
	return nil
}

func eventNames(sub *togetherv1.TogetherWebhookSubscription) []string {
	types := sub.Spec.Events
	if len(types) == 0 {
		types = togetherv1.AllEventTypes
	}
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = string(t)
	}
	return out
}

func registrationHash(sub *togetherv1.TogetherWebhookSubscription, secret *corev1.Secret) string {
	h := sha256.Sum256([]byte(strings.Join([]string{sub.Spec.URL, strings.Join(eventNames(sub), ","), secret.ResourceVersion}, "\n")))
	return hex.EncodeToString(h[:8])
}

// SetupWithManager registers the reconciler with the manager.
func (r *TogetherWebhookSubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherWebhookSubscription{}).
		Named("togetherwebhooksubscription").
		Complete(requeueConflicts(r))
}
