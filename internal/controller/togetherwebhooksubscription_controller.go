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
	"strings"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/webhook"
)

// WebhookAPI is the part of the Together client that registers subscriptions.
type WebhookAPI interface {
	CreateWebhook(ctx context.Context, req together.WebhookRequest) (*together.Webhook, error)
	ListWebhooks(ctx context.Context) ([]together.Webhook, error)
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
	// SigningSecrets reads the signing Secret for the Ready check: its
	// existence and version from the manager's cache, its values through
	// APIReader once per version. SetupWithManager sets it; nil reads
	// through APIReader each time.
	SigningSecrets *secretread.Reader
	Recorder       EventRecorder
	// TogetherAccess is the API, where its key came from, and the
	// namespace accounts that replace both per reconcile.
	TogetherAccess[WebhookAPI]

	// check sees every status patch (the ownership test sets it).
	check func(before, after client.Object, patch map[string]any) error
}

// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togetherwebhooksubscriptions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// kind is TogetherWebhookSubscription's declaration for the shared skeleton
// (reconcile.go).
func (r *TogetherWebhookSubscriptionReconciler) kind() *kind[*togetherv1.TogetherWebhookSubscription] {
	return &kind[*togetherv1.TogetherWebhookSubscription]{
		conditions: reconcile.Conditions{
			// Registered is informational: Ready does not depend on it.
			Owned: []string{togetherv1.ReadyCondition, togetherv1.ReconcilingCondition, togetherv1.StalledCondition, togetherv1.RegisteredCondition, togetherv1.RemoteCleanupCondition},
		},
		newObj: func() *togetherv1.TogetherWebhookSubscription { return &togetherv1.TogetherWebhookSubscription{} },
		status: func(sub *togetherv1.TogetherWebhookSubscription) any { return sub.Status },
		// The finalizer guards a remote registration: it is there while one
		// is asked for or still exists, and goes once none is left.
		needsFinalizer: func(sub *togetherv1.TogetherWebhookSubscription) bool {
			return (sub.Spec.Register && r.API != nil) || sub.Status.RemoteID != ""
		},
		account: r.useAccount,
		finalize: func(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, s *scope) error {
			// A registration that cannot be deleted (401/403, an
			// annotation, too many failures) is left with a Warning rather
			// than wedging the deletion.
			return releaseRemote(ctx, sub, &sub.Status.CleanupAttempts, s, r.Recorder, "deleting its webhook registration",
				func() error {
					if r.accountErr != nil && sub.Status.RemoteID != "" {
						return r.accountErr
					}
					return r.unregister(ctx, sub)
				})
		},
		steps: []step[*togetherv1.TogetherWebhookSubscription]{
			// path: publish where the events endpoint serves this subscription.
			{name: "path", run: r.reconcilePath},
			// secret: check the signing Secret exists. Stalls: SecretNotFound.
			{name: "secret", run: r.reconcileSecret},
			// registration: create, update or remove the remote
			// registration; owns Registered, and says what Ready says.
			{name: "registration", owns: []string{togetherv1.RegisteredCondition}, run: r.reconcileRegistration},
		},
	}
}

// Reconcile brings a TogetherWebhookSubscription towards its spec.
func (r *TogetherWebhookSubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// A copy per reconcile: its account hook makes API and KeySource the
	// resource's own.
	rr := *r
	return rr.kind().run(ctx, rr.Client, rr.Recorder, req, rr.check)
}

func (r *TogetherWebhookSubscriptionReconciler) reconcilePath(_ context.Context, sub *togetherv1.TogetherWebhookSubscription, _ *scope) (ctrl.Result, error) {
	sub.Status.WebhookPath = webhook.PathFor(sub.Namespace, sub.Name)
	return ctrl.Result{}, nil
}

// reconcileSecret checks that the signing secret exists. A missing one is
// Stalled (the person must create it).
func (r *TogetherWebhookSubscriptionReconciler) reconcileSecret(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, _ *scope) (ctrl.Result, error) {
	secrets := r.SigningSecrets
	if secrets == nil {
		secrets = &secretread.Reader{Live: r.APIReader}
	}
	if _, err := webhook.SigningSecrets(ctx, secrets, sub.Namespace, sub.Spec.SecretRef); err != nil {
		if errors.Is(err, webhook.ErrSecretMissing) {
			// No timer: the Secret watch wakes the subscription when the
			// Secret is created.
			return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonSecretNotFound,
				fmt.Sprintf("%v. Create it, e.g. kubectl -n %s create secret generic %s --from-literal=%s=<signing secret>; deliveries are refused with 401 until then.",
					err, sub.Namespace, sub.Spec.SecretRef.Name, secretKey(sub)))
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

func secretKey(sub *togetherv1.TogetherWebhookSubscription) string {
	if sub.Spec.SecretRef.Key == "" {
		return "secret"
	}
	return sub.Spec.SecretRef.Key
}

// reconcileRegistration creates, updates or removes the remote registration.
func (r *TogetherWebhookSubscriptionReconciler) reconcileRegistration(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, s *scope) (ctrl.Result, error) {
	if err := r.register(ctx, sub); err != nil {
		return ctrl.Result{}, err
	}
	s.succeeded(metav1.ConditionTrue, togetherv1.ReasonServing,
		fmt.Sprintf("Accepting signed events at %s on the manager's events endpoint.", sub.Status.WebhookPath))
	return ctrl.Result{}, nil
}

func (r *TogetherWebhookSubscriptionReconciler) register(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) error {
	gen := sub.Generation
	if !sub.Spec.Register {
		if err := r.unregister(ctx, sub); err != nil {
			return err
		}
		reconcile.SetCondition(&sub.Status.Conditions, gen, togetherv1.RegisteredCondition, metav1.ConditionFalse, togetherv1.ReasonNotRequested,
			"spec.register is false: point a sender (a relay, or together-sim) at status.webhookPath yourself.")
		return nil
	}
	if r.API == nil {
		reconcile.SetCondition(&sub.Status.Conditions, gen, togetherv1.RegisteredCondition, metav1.ConditionFalse, togetherv1.ReasonNoAPI,
			"The manager has no Together API configured (set TOGETHER_API_KEY or --api-key-secret); the subscription is served but not registered.")
		return nil
	}
	var secret corev1.Secret
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: sub.Namespace, Name: sub.Spec.SecretRef.Name}, &secret); err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", sub.Namespace, sub.Spec.SecretRef.Name, err)
	}
	hash := registrationHash(sub, &secret)
	if sub.Status.RemoteID != "" && sub.Status.RegistrationHash == hash {
		return nil
	}
	req := together.WebhookRequest{URL: sub.Spec.URL, Events: eventNames(sub), Secret: string(secret.Data[secretKey(sub)])}
	var (
		wh  *together.Webhook
		err error
	)
	if sub.Status.RemoteID == "" {
		wh, err = r.registerOnce(ctx, req)
	} else {
		wh, err = r.API.UpdateWebhook(ctx, sub.Status.RemoteID, req)
	}
	switch {
	case errors.Is(err, together.ErrNotSupported):
		reconcile.SetCondition(&sub.Status.Conditions, gen, togetherv1.RegisteredCondition, metav1.ConditionFalse, togetherv1.ReasonNotSupported,
			"The Together API has no webhooks endpoint (its public API pushes nothing today); the poller keeps resources current, and a relay can still post to status.webhookPath.")
		return nil
	case together.IsUnauthorized(err) || together.IsQuotaExceeded(err):
		e, _ := reconcile.As(r.apiFailure(err, "registering the subscription"))
		return e.On(togetherv1.RegisteredCondition)
	case err != nil:
		// Registration is informational (Ready does not depend on it): the
		// condition says what failed, and the error retries with backoff.
		reconcile.SetCondition(&sub.Status.Conditions, gen, togetherv1.RegisteredCondition, metav1.ConditionFalse, togetherv1.ReasonRegistrationFailed,
			fmt.Sprintf("Registering with the Together API failed (%v); retrying.", err))
		return fmt.Errorf("registering subscription %s/%s: %w", sub.Namespace, sub.Name, err)
	}
	if sub.Status.RemoteID != wh.ID {
		r.Recorder.Eventf(sub, nil, togetherv1.EventTypeNormal, togetherv1.ReasonRegistered, "Register", "Registered with the remote API as %s", wh.ID)
	}
	sub.Status.RemoteID = wh.ID
	sub.Status.RegistrationHash = hash
	reconcile.SetCondition(&sub.Status.Conditions, gen, togetherv1.RegisteredCondition, metav1.ConditionTrue, togetherv1.ReasonRegistered,
		fmt.Sprintf("Registered remotely as %s, delivering to %s.", wh.ID, sub.Spec.URL))
	return nil
}

// registerOnce creates the remote registration unless an earlier one for
// the same URL exists — this subscription's own, whose ID a lost status
// write failed to record — which it updates instead. Without the lookup a
// lost write registers again, and the orphan keeps pushing after the
// subscription is gone.
func (r *TogetherWebhookSubscriptionReconciler) registerOnce(ctx context.Context, req together.WebhookRequest) (*together.Webhook, error) {
	existing, err := r.API.ListWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range existing {
		if w.URL == req.URL {
			return r.API.UpdateWebhook(ctx, w.ID, req)
		}
	}
	return r.API.CreateWebhook(ctx, req)
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
	apimeta.RemoveStatusCondition(&sub.Status.Conditions, togetherv1.RegisteredCondition)
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

// signingSecretNames is the Secret holding a subscription's signing secret.
func signingSecretNames(o client.Object) []string {
	sub, ok := o.(*togetherv1.TogetherWebhookSubscription)
	if !ok || sub.Spec.SecretRef.Name == "" {
		return nil
	}
	return []string{sub.Spec.SecretRef.Name}
}

// SetupWithManager registers the reconciler with the manager.
func (r *TogetherWebhookSubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// The signing Secret (created, rotated, deleted), and the account's.
	secrets, err := r.secretWatch(mgr, &togetherv1.TogetherWebhookSubscription{}, &togetherv1.TogetherWebhookSubscriptionList{}, signingSecretNames)
	if err != nil {
		return err
	}
	if r.SigningSecrets == nil {
		r.SigningSecrets = &secretread.Reader{Meta: mgr.GetCache(), Live: r.APIReader}
	}
	b := ctrl.NewControllerManagedBy(mgr).For(&togetherv1.TogetherWebhookSubscription{})
	return r.withAccountWatches(b, mgr, &togetherv1.TogetherWebhookSubscriptionList{}, secrets).
		Named("togetherwebhooksubscription").
		Complete(requeueConflicts(r))
}
