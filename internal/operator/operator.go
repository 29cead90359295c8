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

// Package operator wires the reconcilers and the event intake into a
// manager. The manager binary and the integration tests share it, so that
// what is tested is what runs.
package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/apicount"
	"github.com/together-operator/together-operator/internal/controller"
	"github.com/together-operator/together-operator/internal/credentials"

	"github.com/together-operator/together-operator/internal/poller"
	"github.com/together-operator/together-operator/internal/statusmetrics"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/webhook"

	"github.com/together-operator/together-operator/internal/intake"
)

// Config is what the operator needs besides the manager.
type Config struct {
	// API is the Together client (the real API or the simulator).
	API *together.Client
	// BaseURL is handed to batch fetch Jobs, which read the API key from a
	// Secret the batch names (the operator never copies the key).
	BaseURL string
	// OperatorImage is the image fetch Jobs run.
	OperatorImage string
	// EventsAddr is the events endpoint's listen address.
	EventsAddr string
	// EventsTLS, when set, makes the events endpoint serve HTTPS from
	// these files, reloaded when they change.
	EventsTLS    webhook.TLSFiles
	Tolerance    time.Duration
	MaxBodyBytes int64
	// MaxInFlightBytes, SourceRate and SubscriptionRate are the events
	// endpoint's other limits (see webhook.Server); zero keeps its default.
	// Each rate's burst is twice the rate.
	MaxInFlightBytes                        int64
	MaxConnections, MaxConnectionsPerSource int
	SourceRate, SubscriptionRate            float64
	// PollInterval and ModelsInterval pace the poller.
	PollInterval, ModelsInterval time.Duration
	// APIKeySource says where API's key came from (a flag naming a Secret,
	// or an env var), so that a rejected key's condition names what to fix.
	APIKeySource string
	// Accounts, when set, gives each namespace its own Together account
	// (internal/credentials): its resources, its poll and its webhook
	// registration use its own key, and API only serves what Accounts
	// allows. Nil keeps the one API for every namespace (tests, make run).
	Accounts *credentials.Resolver
}

// Parts are the intake's pieces, returned for tests and benchmarks.
type Parts struct {
	Applier *intake.Applier
	Events  *webhook.Server
	Poller  *poller.Poller
}

// Setup registers every reconciler, the events endpoint and the poller.
func Setup(mgr ctrl.Manager, cfg Config) (*Parts, error) {
	if err := setupReconcilers(mgr, cfg); err != nil {
		return nil, err
	}
	return setupIntake(mgr, cfg)
}

func setupReconcilers(mgr ctrl.Manager, cfg Config) error {
	rec := func(name string) controller.EventRecorder { return mgr.GetEventRecorder(name) }
	var accounts controller.Accounts // a nil *Resolver must stay a nil interface
	if cfg.Accounts != nil {
		accounts = cfg.Accounts
	}
	if err := (&controller.TogetherWebhookSubscriptionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec("together-subscription"),
		TogetherAccess: controller.TogetherAccess[controller.WebhookAPI]{API: cfg.API, KeySource: cfg.APIKeySource, Accounts: accounts},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the subscription reconciler: %w", err)
	}
	if err := (&controller.TogetherFineTuneReconciler{
		Client: mgr.GetClient(), Recorder: rec("together-finetune"),
		TogetherAccess: controller.TogetherAccess[controller.FineTuneAPI]{API: cfg.API, KeySource: cfg.APIKeySource, Accounts: accounts},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the fine-tune reconciler: %w", err)
	}
	if err := (&controller.TogetherModelMigrationReconciler{
		Client: mgr.GetClient(), Recorder: rec("together-migration"),
		TogetherAccess: controller.TogetherAccess[controller.ModelsAPI]{API: cfg.API, KeySource: cfg.APIKeySource, Accounts: accounts},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the migration reconciler: %w", err)
	}
	if err := (&controller.TogetherBatchReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec("together-batch"),
		BaseURL: cfg.BaseURL, Image: cfg.OperatorImage,
		TogetherAccess: controller.TogetherAccess[controller.BatchAPI]{API: cfg.API, KeySource: cfg.APIKeySource, Accounts: accounts},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the batch reconciler: %w", err)
	}
	return nil
}

// setupIntake wires the two sources of events and their one apply step: the
// events endpoint (every replica) and the poller (the leader only).
func setupIntake(mgr ctrl.Manager, cfg Config) (*Parts, error) {
	if err := intake.SetupIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	// The intake's API-server requests are attributed to the request that
	// caused them (apicount), so that what bad traffic costs is measured.
	p := &Parts{Applier: &intake.Applier{Client: apicount.Writes(mgr.GetClient()), Reader: apicount.Reader(mgr.GetAPIReader()),
		Recorder: mgr.GetEventRecorder("together-events"), Remote: adoptionReader(cfg)}}
	p.Events = &webhook.Server{
		Addr: cfg.EventsAddr, Client: apicount.Writes(mgr.GetClient()), SecretCache: mgr.GetCache(), SecretReader: apicount.Reader(mgr.GetAPIReader()), Applier: p.Applier,
		Recorder: mgr.GetEventRecorder("together-events"), Tolerance: cfg.Tolerance, MaxBodyBytes: cfg.MaxBodyBytes,
		MaxInFlightBytes: cfg.MaxInFlightBytes, MaxConnections: cfg.MaxConnections, MaxConnectionsPerSource: cfg.MaxConnectionsPerSource,
		SourceRate: cfg.SourceRate, SourceBurst: int(2 * cfg.SourceRate),
		SubscriptionRate: cfg.SubscriptionRate, SubscriptionBurst: int(2 * cfg.SubscriptionRate),
		TLS: cfg.EventsTLS,
	}
	if err := mgr.Add(p.Events); err != nil {
		return nil, fmt.Errorf("adding the events endpoint: %w", err)
	}
	p.Poller = &poller.Poller{
		Client: mgr.GetClient(), API: cfg.API, Applier: p.Applier, Recorder: mgr.GetEventRecorder("together-poller"),
		Interval: cfg.PollInterval, ModelsInterval: cfg.ModelsInterval,
	}
	if cfg.Accounts != nil {
		p.Poller.Accounts = cfg.Accounts
		p.Applier.Accounts = cfg.Accounts
	}
	if err := mgr.Add(p.Poller); err != nil {
		return nil, fmt.Errorf("adding the poller: %w", err)
	}
	statusmetrics.SetReader(mgr.GetClient())
	return p, nil
}

// adoptionReader gives the intake's adoption check the client of the
// account a subscription's adopted resources will act on: the one
// credentials.Resolver decides for the subscription (its Secret, its
// namespace's, or the operator-wide key where allowed), or cfg.API when
// there is no resolver. A subscription without an account gets none, and
// adopts nothing.
func adoptionReader(cfg Config) func(context.Context, *togetherv1.TogetherWebhookSubscription) (intake.RemoteReader, error) {
	return func(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) (intake.RemoteReader, error) {
		if cfg.Accounts == nil {
			if cfg.API == nil {
				return nil, nil
			}
			return cfg.API, nil
		}
		acc, err := cfg.Accounts.ForResource(ctx, sub)
		if errors.Is(err, credentials.ErrNoCredentials) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return acc.Client, nil
	}
}

// ClientOptions are the manager's client settings. Secrets are read one at a
// time and never cached: an informer would hold every Secret of the cluster
// in memory. Workloads and ConfigMaps are read on demand, page by page, for
// the same reason.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}, &appsv1.Deployment{}, &appsv1.StatefulSet{}},
	}}
}

// ReconcileTimeout bounds one Reconcile call. Every Together call already
// has its own deadline (internal/together) and the dedicated-endpoint steps
// theirs; this is the last bound, so that nothing a reconcile waits on — a
// Kubernetes call, a stream — can hold a worker for good.
const ReconcileTimeout = 5 * time.Minute

// ControllerOptions are the controllers' settings shared by the binary and
// the suites that run the manager as the binary does.
func ControllerOptions() config.Controller {
	return config.Controller{ReconciliationTimeout: ReconcileTimeout}
}

// CacheOptions are the manager's cache settings. Managed fields are dropped
// from cached objects: nothing here reads them, and with thousands of
// resources they are a large share of the manager's memory. (An update
// without managed fields leaves the server's record of them unchanged.)
//
// Jobs are cached only when they carry the operator's managed-by label (the
// batch fetch Jobs): an unscoped informer would hold every Job of the
// cluster on every replica, which on a CI-heavy cluster is more memory than
// the manager has.
//
// Secrets are watched metadata-only (the reconcilers' Secret watches), and
// StripSecretMetadata keeps no more of them than names and versions; the
// client never reads a Secret through the cache (ClientOptions).
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&batchv1.Job{}:   {Label: labels.SelectorFromSet(labels.Set{togetherv1.ManagedByLabel: togetherv1.ManagedByValue})},
			&corev1.Secret{}: {Transform: StripSecretMetadata},
		},
	}
}

// StripSecretMetadata is the cache's transform of Secrets: it drops their
// annotations, labels and managed fields before they are stored. A Secret's
// annotations may hold its data in plain text — kubectl apply writes the
// whole object, data included, into kubectl.kubernetes.io/last-applied-
// configuration — and the Secret watches need only the name, namespace and
// resourceVersion, so the cache keeps no more than that. (The informer is
// metadata-only, so data and stringData never reach it.)
func StripSecretMetadata(in any) (any, error) {
	if obj, err := apimeta.Accessor(in); err == nil {
		obj.SetAnnotations(nil)
		obj.SetLabels(nil)
		obj.SetManagedFields(nil)
	}
	return in, nil
}
