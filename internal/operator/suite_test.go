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

package operator

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// This suite runs the whole operator, wired exactly as the manager binary
// wires it, against a real API server and the Together simulator.
var (
	ctx       context.Context
	cancel    context.CancelFunc
	testEnv   *envtest.Environment
	k8s       client.Client
	sim       *togethersim.Server
	parts     *Parts
	eventsURL string
	scheme    = testenv.Scheme()
	// mgr is the manager under test, for specs that look at its cache.
	mgr manager.Manager
	// adminCfg is the envtest administrator's config, from which the
	// specs derive tenant users.
	adminCfg *rest.Config
)

const simKey = "sim-test-key"

func TestOperator(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Operator integration suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// The machine is shared and small: give the API server and the
	// reconcilers time, without slowing the specs that pass quickly.
	SetDefaultEventuallyTimeout(15 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())

	testEnv = testenv.Environment()
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	sim = togethersim.New(togethersim.Options{APIKey: simKey, StepInterval: 20 * time.Millisecond, TotalSteps: 5,
		DeliveryRetryMin: 20 * time.Millisecond, DeliveryRetryMax: 200 * time.Millisecond})
	_, err = sim.Start()
	Expect(err).NotTo(HaveOccurred())
	// The replacements the specs migrate to are in Together's catalogue
	// from the start: the migration reconciler keeps an account's model list
	// for minutes (internal/catalogue), so a model added by a later spec
	// would not be seen by a list an earlier spec's migration cached.
	for _, m := range []string{"org/new", "org/successor"} {
		sim.AddModel(m)
	}
	api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: simKey})
	Expect(err).NotTo(HaveOccurred())

	// The manager runs as its ServiceAccount with exactly config/rbac's
	// permissions: an informer or a verb the role lacks fails here as it
	// would in a cluster. The suite's own client stays the administrator.
	adminCfg = cfg
	managerCfg, err := testenv.AsManager(ctx, cfg, k8s)
	Expect(err).NotTo(HaveOccurred())
	mgr, err = ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Client: ClientOptions(), Cache: CacheOptions(), Controller: ControllerOptions(),
	})
	Expect(err).NotTo(HaveOccurred())
	// Each namespace's resources run under its own key (the Secret
	// together-api-key), or the operator-wide one where a namespace is
	// labelled for it, as newNamespace does; read as the binary reads them
	// (versions and labels from the manager's cache, a key live when its
	// Secret changed), under the manager's RBAC; secretReads counts both.
	accounts := &credentials.Resolver{
		Reader: countSecretReads{mgr.GetAPIReader(), secretReads.live},
		Cache:  countSecretReads{mgr.GetCache(), secretReads.cached},
		NewClient: func(key string) (*together.Client, error) {
			return together.New(together.Options{BaseURL: sim.URL(), APIKey: key})
		},
		SharedKey: func(context.Context) (string, error) { return simKey, nil },
	}
	parts, err = Setup(mgr, Config{API: api, Accounts: accounts, BaseURL: sim.URL(), EventsAddr: "127.0.0.1:0", OperatorImage: "registry.example/together-operator:test",
		// A long poll interval: specs that want the poller call PollOnce,
		// so that what a push does and what a poll does stay apart.
		PollInterval: time.Hour, ModelsInterval: time.Hour})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	addr, err := parts.Events.ListenAddr(ctx)
	Expect(err).NotTo(HaveOccurred())
	eventsURL = "http://" + addr.String()
})

var _ = AfterSuite(func() {
	cancel()
	sim.Close()
	Expect(testEnv.Stop()).To(Succeed())
})

var nsCounter int

// newNamespace creates a namespace an administrator allowed the
// operator-wide key.
func newNamespace() string {
	return newNamespaceLabelled(map[string]string{credentials.SharedKeyLabel: "true"})
}

// newNamespaceLabelled creates a namespace with these labels only.
func newNamespaceLabelled(labels map[string]string) string {
	nsCounter++
	name := fmt.Sprintf("op-%d", nsCounter)
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})).To(Succeed())
	return name
}
