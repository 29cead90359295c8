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

package webhook

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/internal/testenv"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// The suite runs the events endpoint in front of a real API server: a
// manager's cache and indexes, the applier, and the HTTP handler on a local
// port. failWrites makes every status write fail, standing in for an API
// server that cannot take writes.
var (
	ctx        context.Context
	cancel     context.CancelFunc
	testEnv    *envtest.Environment
	k8s        client.Client
	applier    *intake.Applier
	srv        *Server
	endpoint   *httptest.Server
	failWrites atomic.Bool
	// cacheBehind makes the applier's cached lists come back empty, as
	// they do for a moment after a write the informer has not seen yet.
	cacheBehind atomic.Bool
	// suiteSim is the Together the suite's adoption checks read.
	suiteSim *togethersim.Server
	scheme   = testenv.Scheme()
	// mgrClient and apiReader are the manager's cached client and its
	// direct reader, for specs that build an endpoint of their own.
	mgrClient client.Client
	apiReader client.Reader
)

func TestWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Events endpoint suite")
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

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	Expect(intake.SetupIndexes(ctx, mgr.GetFieldIndexer())).To(Succeed())

	mgrClient, apiReader = mgr.GetClient(), mgr.GetAPIReader()
	failing := failingClient{mgr.GetClient()}
	// Adoption checks read the suite's simulator, as the namespace's
	// account would.
	suiteSim = togethersim.New(togethersim.Options{APIKey: "suite-key"})
	_, err = suiteSim.Start()
	Expect(err).NotTo(HaveOccurred())
	suiteAPI, err := together.New(together.Options{BaseURL: suiteSim.URL(), APIKey: "suite-key", MaxRetries: -1})
	Expect(err).NotTo(HaveOccurred())
	applier = &intake.Applier{Client: failing, Reader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("together-events"),
		Remote: func(context.Context, *togetherv1.TogetherWebhookSubscription) (intake.RemoteReader, error) {
			return suiteAPI, nil
		}}
	srv = &Server{Client: mgr.GetClient(), SecretCache: mgr.GetCache(), SecretReader: mgr.GetAPIReader(), Applier: applier, Recorder: mgr.GetEventRecorder("together-events")}
	endpoint = httptest.NewServer(srv.Handler())

	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
})

var _ = AfterSuite(func() {
	endpoint.Close()
	suiteSim.Close()
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})

// failingClient fails status writes while failWrites is set, and lists
// nothing while cacheBehind is set.
type failingClient struct{ client.Client }

func (f failingClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := f.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if cacheBehind.Load() {
		return apimeta.SetList(list, nil)
	}
	return nil
}

func (f failingClient) Status() client.SubResourceWriter { return failingStatus{f.Client.Status()} }

type failingStatus struct{ client.SubResourceWriter }

func (s failingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if failWrites.Load() {
		return errors.New("injected: the API server is not taking writes")
	}
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s failingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if failWrites.Load() {
		return errors.New("injected: the API server is not taking writes")
	}
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// apiCounter counts the requests that reach the API server through the
// client and reader it wraps: every call of the reader, and every write of
// the client (its reads come from the manager's cache and cost nothing).
type apiCounter struct {
	reads, writes atomic.Int64
}

func (c *apiCounter) total() int64 { return c.reads.Load() + c.writes.Load() }

func (c *apiCounter) reader(r client.Reader) client.Reader {
	return countingReader{Reader: r, n: &c.reads}
}

func (c *apiCounter) client(cl client.Client) client.Client {
	return countingClient{Client: cl, n: &c.writes}
}

type countingReader struct {
	client.Reader
	n *atomic.Int64
}

func (r countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.n.Add(1)
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.n.Add(1)
	return r.Reader.List(ctx, list, opts...)
}

type countingClient struct {
	client.Client
	n *atomic.Int64
}

func (c countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.n.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

func (c countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.n.Add(1)
	return c.Client.Update(ctx, obj, opts...)
}

func (c countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.n.Add(1)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.n.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c countingClient) Status() client.SubResourceWriter {
	return countingStatus{SubResourceWriter: c.Client.Status(), n: c.n}
}

type countingStatus struct {
	client.SubResourceWriter
	n *atomic.Int64
}

func (s countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.n.Add(1)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.n.Add(1)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// countedEndpoint is an endpoint of its own (with its own caches and
// limits, shaped by mut) whose every API-server request is counted.
func countedEndpoint(mut func(*Server)) (*httptest.Server, *apiCounter) {
	c := &apiCounter{}
	a := &intake.Applier{Client: c.client(mgrClient), Reader: c.reader(apiReader)}
	s := &Server{Client: c.client(mgrClient), SecretReader: c.reader(apiReader), Applier: a}
	if mut != nil {
		mut(s)
	}
	hs := httptest.NewServer(s.Handler())
	DeferCleanup(hs.Close)
	return hs, c
}

// awaitCachedSecret waits until the manager's cache holds version rv of a
// Secret: the endpoint reads a signing Secret's values again only when the
// version its cache holds changes, as a sender would see after a rotation.
func awaitCachedSecret(key types.NamespacedName, rv string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		m, err := secretread.Metadata(ctx, mgrClient, key)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(m.ResourceVersion).To(Equal(rv))
	}).Should(Succeed(), "waiting for the manager's cache to see Secret %s at version %s", key, rv)
}
