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

// Command manager runs the together-operator: the reconcilers of the
// together.ai resources, the events endpoint and the Together API poller.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/controller"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/fetch"
	"github.com/together-operator/together-operator/internal/operator"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/webhook"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(togetherv1.AddToScheme(scheme))
}

// options holds the manager's flags.
type options struct {
	metricsAddr    string
	secureMetrics  bool
	probeAddr      string
	eventsAddr     string
	eventsCertPath string
	eventsCertName string
	eventsCertKey  string
	leaderElect    bool
	leaderElectNS  string
	pollInterval   time.Duration
	modelsInterval time.Duration
	apiBaseURL     string
	apiKeySecret   string
	// sharedKeyNamespaces may use the operator-wide key.
	sharedKeyNamespaces string
	eventsTolerance     time.Duration
	maxBodyBytes        int64
	maxInFlight         int64
	sourceRate          float64
	subRate             float64
	maxConns            int
	maxConnsPerSrc      int
	operatorImage       string
	pprofAddr           string
}

func parseFlags() (options, zap.Options) {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; :8080 for plain HTTP with --metrics-secure=false, 0 to disable.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.StringVar(&o.eventsAddr, "events-bind-address", ":8090", "Address the events endpoint (signed pushes) binds to; served by every replica.")
	flag.StringVar(&o.eventsCertPath, "events-cert-path", "", "Directory holding the events endpoint's TLS certificate and key (e.g. a mounted Secret); empty serves plain HTTP. The files are reloaded when they change.")
	flag.StringVar(&o.eventsCertName, "events-cert-name", "tls.crt", "Certificate file name in --events-cert-path.")
	flag.StringVar(&o.eventsCertKey, "events-cert-key", "tls.key", "Key file name in --events-cert-path.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so that only one replica runs the reconcilers and the poller.")
	flag.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the manager's namespace).")
	flag.DurationVar(&o.pollInterval, "poll-interval", 30*time.Second, "How often the poller reads the Together API while work is moving (4x longer when idle).")
	flag.DurationVar(&o.modelsInterval, "models-poll-interval", time.Hour, "How often the poller reads the model catalogue for deprecations.")
	flag.StringVar(&o.apiBaseURL, "together-base-url", envOr("TOGETHER_BASE_URL", "https://api.together.ai/v1"), "Base URL of the Together API (env TOGETHER_BASE_URL).")
	flag.StringVar(&o.sharedKeyNamespaces, "shared-api-key-namespaces", os.Getenv("TOGETHER_SHARED_API_KEY_NAMESPACES"), "Comma-separated namespaces whose resources may use the operator-wide key (--api-key-secret or TOGETHER_API_KEY) when they have no Secret together-api-key of their own; namespaces labelled together.ai/shared-api-key=true may too. None by default.")
	flag.StringVar(&o.apiKeySecret, "api-key-secret", os.Getenv("TOGETHER_API_KEY_SECRET"), "namespace/name of a Secret whose key 'api-key' holds the Together API key; otherwise env TOGETHER_API_KEY is used.")
	flag.DurationVar(&o.eventsTolerance, "webhook-timestamp-tolerance", 5*time.Minute, "How far a Standard Webhooks timestamp may be from now.")
	flag.Int64Var(&o.maxBodyBytes, "webhook-max-body-bytes", webhook.DefaultMaxBodyBytes, "Largest event body accepted; larger ones get 413.")
	flag.Int64Var(&o.maxInFlight, "webhook-max-inflight-bytes", webhook.DefaultMaxInFlightBytes, "Body bytes all requests to the events endpoint may hold at once; beyond it, 503 with Retry-After.")
	flag.Float64Var(&o.sourceRate, "webhook-source-rate", webhook.DefaultSourceRate, "Requests per second one source address may make to the events endpoint (burst twice that); beyond it, 429. Negative: no limit.")
	flag.IntVar(&o.maxConns, "webhook-max-connections", webhook.DefaultMaxConnections, "Connections the events endpoint serves at once; further ones wait to be accepted. Negative: no limit.")
	flag.IntVar(&o.maxConnsPerSrc, "webhook-max-connections-per-source", webhook.DefaultMaxConnectionsPerSource, "Connections one source address may hold to the events endpoint; further ones are closed. Negative: no limit.")
	flag.Float64Var(&o.subRate, "webhook-subscription-rate", webhook.DefaultSubscriptionRate, "Verified deliveries per second one subscription may take (burst twice that); beyond it, 429. Negative: no limit.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address Go's pprof handlers bind to, for profiling a manager that uses more CPU or memory than expected; 0 (the default) serves none. Bind it to localhost and reach it with kubectl port-forward: it is not authenticated.")
	flag.StringVar(&o.operatorImage, "operator-image", os.Getenv(controller.OperatorImageEnv), "Image that batch fetch Jobs run in fetch mode, normally this operator's own (env OPERATOR_IMAGE).")
	zo := zap.Options{Development: false}
	zo.BindFlags(flag.CommandLine)
	flag.Parse()
	return o, zo
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	// `manager fetch ...` is the batch output fetcher that fetch Jobs run;
	// it shares the image but none of the manager's flags.
	if len(os.Args) > 1 && os.Args[1] == "fetch" {
		os.Exit(fetch.Main(ctrl.SetupSignalHandler(), os.Args[2:]))
	}
	o, zo := parseFlags()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))

	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.secureMetrics,
		// HTTP/2 is disabled against the Rapid Reset and Stream Cancellation CVEs.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "together-operator.together.ai",
		LeaderElectionNamespace: o.leaderElectNS,
		Client:                  operator.ClientOptions(),
		Cache:                   operator.CacheOptions(),
		Controller:              operator.ControllerOptions(),
	})
	if err != nil {
		setupLog.Error(err, "unable to create manager")
		os.Exit(1)
	}

	key, err := readAPIKey(o)
	if err != nil {
		setupLog.Error(err, "unable to read the Together API key")
		os.Exit(1)
	}
	api, err := together.New(together.Options{BaseURL: o.apiBaseURL, APIKey: key, Logger: ctrl.Log.WithName("together")})
	if err != nil {
		setupLog.Error(err, "unable to create the Together API client")
		os.Exit(1)
	}
	if _, err := operator.Setup(mgr, operator.Config{
		API: api, BaseURL: o.apiBaseURL, OperatorImage: o.operatorImage,
		EventsAddr: o.eventsAddr, Tolerance: o.eventsTolerance, MaxBodyBytes: o.maxBodyBytes,
		MaxInFlightBytes: o.maxInFlight, SourceRate: o.sourceRate, SubscriptionRate: o.subRate,
		MaxConnections: o.maxConns, MaxConnectionsPerSource: o.maxConnsPerSrc,
		PollInterval: o.pollInterval, ModelsInterval: o.modelsInterval,
		EventsTLS:    webhook.TLSFiles{Dir: o.eventsCertPath, CertName: o.eventsCertName, KeyName: o.eventsCertKey},
		APIKeySource: apiKeySource(o),
		Accounts:     accounts(mgr, o, key),
	}); err != nil {
		setupLog.Error(err, "unable to set up the operator")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	setupLog.Info("starting manager", "eventsAddr", o.eventsAddr, "eventsTLS", o.eventsCertPath != "", "apiBaseURL", o.apiBaseURL)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// accounts gives each namespace its own Together account: the Secret
// together-api-key in the namespace, or the operator-wide key where an
// administrator allowed it. Secrets' versions and Namespaces' labels come
// from the manager's metadata cache; a key is read again (live) only when
// its Secret's version changed, the operator-wide key's Secret included, so
// that rotating a key needs no restart and an unchanged one costs no
// API-server read.
func accounts(mgr ctrl.Manager, o options, envKey string) *credentials.Resolver {
	var allowed []string
	for _, ns := range strings.Split(o.sharedKeyNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			allowed = append(allowed, ns)
		}
	}
	r := &credentials.Resolver{
		Reader: mgr.GetAPIReader(),
		Cache:  mgr.GetCache(),
		NewClient: func(key string) (*together.Client, error) {
			return together.New(together.Options{BaseURL: o.apiBaseURL, APIKey: key, Logger: ctrl.Log.WithName("together")})
		},
		SharedKey:        func(context.Context) (string, error) { return envKey, nil },
		SharedNamespaces: allowed,
	}
	if o.apiKeySecret != "" {
		// readAPIKey has checked the namespace/name form.
		ns, name, _ := strings.Cut(o.apiKeySecret, "/")
		r.SharedSecret = &types.NamespacedName{Namespace: ns, Name: name}
	}
	return r
}

// apiKeySource names where readAPIKey takes the key from, for messages that
// tell a person which key to fix (never the key itself).
func apiKeySource(o options) string {
	if o.apiKeySecret != "" {
		return fmt.Sprintf("Secret %s, key api-key, named by --api-key-secret", o.apiKeySecret)
	}
	return "env TOGETHER_API_KEY"
}

// readAPIKey returns the Together API key. It comes from --api-key-secret
// when set (read once at start, with a client that does not cache Secrets),
// otherwise from env TOGETHER_API_KEY.
func readAPIKey(o options) (string, error) {
	key := os.Getenv("TOGETHER_API_KEY")
	if o.apiKeySecret != "" {
		ns, name, ok := strings.Cut(o.apiKeySecret, "/")
		if !ok {
			return "", fmt.Errorf("--api-key-secret %q: want namespace/name", o.apiKeySecret)
		}
		c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme})
		if err != nil {
			return "", fmt.Errorf("creating a client to read the API key Secret: %w", err)
		}
		sec := &corev1.Secret{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			return "", fmt.Errorf("reading API key Secret %s: %w", o.apiKeySecret, err)
		}
		key = string(sec.Data["api-key"])
	}
	return key, nil
}
