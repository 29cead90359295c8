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

// Package fault is the fault suite: the event intake under sender chaos, an
// API server outage, manager restarts, two replicas, bad input at volume and
// slow clients. Every scenario runs the real endpoint against a real API
// server. `make test` runs sizes that finish in a few minutes; SOAK=1
// (`make test-soak`) runs the heavier variants.
package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/event"
	applyintake "github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/operator"

	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/webhook"
)

const testSecret = "whsec-fault"

var (
	ctx     context.Context
	cancel  context.CancelFunc
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client
	// watcher watches for the durability ledger's history.
	watcher client.WithWatch
	scheme  = runtime.NewScheme()
	soak    = os.Getenv("SOAK") != ""
)

func TestFault(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fault suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// The machine these run on is shared and slow; a wait that times out
	// should mean something is stuck, not that it is busy.
	SetDefaultEventuallyTimeout(time.Minute)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(togetherv1.AddToScheme(scheme)).To(Succeed())
	testEnv = testenv.Environment()
	// A certificate directory of our own survives an API server restart;
	// envtest regenerates the serving certificate (and the clients' CA no
	// longer matches) when it allocated the directory itself.
	certDir, err := os.MkdirTemp("", "fault-apiserver-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, certDir)
	testEnv.ControlPlane.GetAPIServer().CertDir = certDir
	// Without a watch cache a watch resumed from an old revision is served
	// from etcd, so the durability ledger's history of stored versions has
	// no gap, even across the outage spec's API server restart (a watch
	// cache starts afresh and answers "too old" instead).
	testEnv.ControlPlane.GetAPIServer().Configure().Set("watch-cache", "false")
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 1000, 2000
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	watcher, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	removeManagerBinary()
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})

// intake is one replica's event intake: a manager with its cache and
// indexes, the Applier, and webhook.Server listening on a local port, wired
// as operator.Setup wires them.
type intake struct {
	srv    *webhook.Server
	url    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startIntake(mutate func(*webhook.Server)) *intake {
	GinkgoHelper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Client: operator.ClientOptions(), Cache: operator.CacheOptions(), Controller: operator.ControllerOptions()})
	Expect(err).NotTo(HaveOccurred())
	Expect(applyintake.SetupIndexes(ctx, mgr.GetFieldIndexer())).To(Succeed())
	applier := &applyintake.Applier{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("together-events")}
	srv := &webhook.Server{Addr: "127.0.0.1:0", Client: mgr.GetClient(), SecretCache: mgr.GetCache(), SecretReader: mgr.GetAPIReader(), Applier: applier,
		Recorder: mgr.GetEventRecorder("together-events"), AckTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(srv)
	}
	Expect(mgr.Add(srv)).To(Succeed())
	return runIntake(mgr, srv)
}

func runIntake(mgr ctrl.Manager, srv *webhook.Server) *intake {
	GinkgoHelper()
	mctx, stop := context.WithCancel(ctx)
	in := &intake{srv: srv, cancel: stop, done: make(chan error, 1)}
	go func() { in.done <- mgr.Start(mctx) }()
	addr, err := srv.ListenAddr(ctx)
	Expect(err).NotTo(HaveOccurred())
	in.url = "http://" + addr.String()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	return in
}

// stop ends the manager and every runnable it started, and waits for them.
// A second call does nothing, so a spec can stop one early and still defer
// the stop.
func (in *intake) stop() {
	GinkgoHelper()
	in.once.Do(func() {
		in.cancel()
		Eventually(in.done, 30*time.Second).Should(Receive(), "waiting for the manager to stop")
	})
}

var nsCount atomic.Int64

// fixture is a namespace with a subscription whose secret is testSecret.
type fixture struct {
	ns, path string
	// history is every stored version of the namespace's fine-tunes and
	// batches, for the durability ledger.
	history *history
}

func newFixture(prefix string) fixture {
	GinkgoHelper()
	return newFixtureWithSecret(prefix, testSecret)
}

func newFixtureWithSecret(prefix, secret string) fixture {
	GinkgoHelper()
	ns := fmt.Sprintf("%s-%d", prefix, nsCount.Add(1))
	// The label lets the manager binary's operator-wide key (the
	// simulator's) serve the namespace, as an administrator opts one in.
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{credentials.SharedKeyLabel: "true"}}})).To(Succeed())
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"},
		StringData: map[string]string{"secret": secret}})).To(Succeed())
	Expect(k8s.Create(ctx, &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "hook"},
			// The suite's senders sign the short way (body-only HMAC).
			AcceptedSignatures: []togetherv1.SignatureScheme{togetherv1.SignatureStandardWebhooks, togetherv1.SignatureHexHMAC}}})).To(Succeed())
	return fixture{ns: ns, path: webhook.PathFor(ns, "hook"), history: watchHistory(ns)}
}

// runningFineTunes creates fine-tunes <prefix>-0..n-1 tracking running jobs
// of the same names, and returns their initial statuses.
func (f fixture) runningFineTunes(prefix string, n int) map[string]togetherv1.TogetherFineTuneStatus {
	GinkgoHelper()
	out := map[string]togetherv1.TogetherFineTuneStatus{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: name}}
		Expect(k8s.Create(ctx, ft)).To(Succeed())
		ft.Status = togetherv1.TogetherFineTuneStatus{JobID: name, Phase: togetherv1.FineTuneRunning, Attempt: 1}
		Expect(k8s.Status().Update(ctx, ft)).To(Succeed())
		out[name] = ft.Status
	}
	return out
}

// waitCached waits until an intake's cache finds every fine-tune by job ID,
// and the fixture's signing Secret (the endpoint takes a Secret's existence
// and version from its cache).
func waitCached(in *intake, f fixture, jobs map[string]togetherv1.TogetherFineTuneStatus) {
	GinkgoHelper()
	Eventually(func() error {
		_, err := secretread.Metadata(ctx, in.srv.SecretCache, client.ObjectKey{Namespace: f.ns, Name: "hook"})
		return err
	}).Should(Succeed(), "waiting for the intake's cache to see the signing Secret")
	for job := range jobs {
		Eventually(func() int {
			var l togetherv1.TogetherFineTuneList
			Expect(in.srv.Client.List(ctx, &l, client.InNamespace(f.ns), client.MatchingFields{applyintake.IndexFineTuneJobID: job})).To(Succeed())
			if len(l.Items) == 1 && l.Items[0].Status.JobID == job {
				return 1
			}
			return 0
		}).Should(Equal(1), "waiting for the intake's cache to find the fine-tune of job %s", job)
	}
}

func envelope(id, typ string, data map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"id": id, "type": typ, "created_at": time.Now().UTC().Format(time.RFC3339), "data": data})
	Expect(err).NotTo(HaveOccurred())
	return b
}

func checkpointBody(id, job string, step int64) []byte {
	return envelope(id, "fine_tune.checkpoint", map[string]any{"fine_tune_id": job, "step": step, "loss": 10.0 / float64(step+1)})
}

func completedBody(id, job string) []byte {
	return envelope(id, "fine_tune.completed", map[string]any{"fine_tune_id": job, "model_name": "acme/" + job, "eval_loss": 0.25})
}

// ledger records what the endpoint answered for every delivery, so that a
// test can tell "applied twice" from "applied once and acknowledged as a
// duplicate afterwards".
type ledger struct {
	mu       sync.Mutex
	applied  map[string]int // event ID → deliveries answered "applied"
	final    map[string]int // event ID → final status code
	retries  map[int]int    // status code (0 = connection error) → retried deliveries
	attempts int
	// acks are the deliveries answered 200, for the durability ledger.
	acks []ack
}

// acknowledged returns the deliveries answered 200 so far.
func (l *ledger) acknowledged() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acks)
}

func newLedger() *ledger {
	return &ledger{applied: map[string]int{}, final: map[string]int{}, retries: map[int]int{}}
}

func (l *ledger) retried(code int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retries[code]
}

// sender delivers signed events the way a webhook sender does: it retries
// connection errors and 503 with a growing backoff, and stops at any other
// answer.
type sender struct {
	http   *http.Client
	target func(i int) string // base URL for the i-th delivery
	log    *ledger
	// patience is how long one delivery keeps retrying before it gives up.
	patience time.Duration
}

func newSender(target func(int) string, log *ledger) *sender {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	return &sender{http: &http.Client{Transport: tr, Timeout: 20 * time.Second}, target: target, log: log, patience: time.Minute}
}

// deliver sends body until it gets an answer other than 503, with backoff
// from 10 ms to 500 ms, and gives up after limit.
func (s *sender) deliver(i int, path, id string, body []byte, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	backoff := 10 * time.Millisecond
	for {
		code, status := s.once(s.target(i), path, body)
		var acked *ack
		if code == http.StatusOK {
			// The revision is read after the answer arrived: every write
			// the endpoint made before answering is at or below it.
			ev, err := event.Decode(body)
			if err != nil {
				panic(fmt.Sprintf("the sender was given a body the endpoint accepted but Decode refuses: %v", err))
			}
			acked = &ack{ev: ev, outcome: status, rev: currentRevision()}
		}
		s.log.mu.Lock()
		if acked != nil {
			s.log.acks = append(s.log.acks, *acked)
		}
		s.log.attempts++
		if code == http.StatusOK && status == string(lattice.Applied) {
			s.log.applied[id]++
		}
		if code != 0 && code != http.StatusServiceUnavailable {
			s.log.final[id] = code
			s.log.mu.Unlock()
			return code
		}
		s.log.retries[code]++
		s.log.mu.Unlock()
		if time.Now().After(deadline) {
			return code
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			return code
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		i++ // a retry may land on another replica
	}
}

func (s *sender) once(base, path string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(push.HeaderSignature, push.Hex([]byte(testSecret), body))
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
	}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &r)
	return resp.StatusCode, r.Status
}

// inOrder is the status a fine-tune ends with when its events arrive once
// each, in order: the reference every chaotic run is compared with.
func inOrder(initial togetherv1.TogetherFineTuneStatus, bodies [][]byte) togetherv1.TogetherFineTuneStatus {
	GinkgoHelper()
	st := *initial.DeepCopy()
	now := metav1.Now()
	for _, b := range bodies {
		ev, err := event.Decode(b)
		Expect(err).NotTo(HaveOccurred())
		lattice.ApplyFineTune(&st, ev, now)
	}
	return st
}

// comparable keeps the fields that do not depend on when events arrived:
// checkpoint times and lastEvent are stamped with the clock, so they differ
// between runs by design.
type comparableStatus struct {
	Phase       togetherv1.FineTunePhase
	JobID       string
	Step        int64
	Loss        *float64
	OutputModel string
	EvalLoss    *float64
	Checkpoints []string
}

func comparable(st togetherv1.TogetherFineTuneStatus) comparableStatus {
	c := comparableStatus{Phase: st.Phase, JobID: st.JobID, Step: st.Step, Loss: st.Loss, OutputModel: st.OutputModel, EvalLoss: st.EvalLoss}
	for _, cp := range st.Checkpoints {
		loss := "nil"
		if cp.Loss != nil {
			loss = fmt.Sprint(*cp.Loss)
		}
		c.Checkpoints = append(c.Checkpoints, fmt.Sprintf("%d:%s", cp.Step, loss))
	}
	return c
}

// expectConverged checks every fine-tune against the in-order result, and
// that nothing was applied twice: no event ID answered "applied" more than
// once, and processedEvents holds only applied IDs, each once.
//
// When a write succeeded but its answer was lost (an outage, a restart), the
// retry is rightly answered "duplicate", so processedEvents may hold IDs no
// delivery was told were applied; exact is false for those runs.
func expectConverged(f fixture, initial map[string]togetherv1.TogetherFineTuneStatus, sent map[string][][]byte, log *ledger, exact bool) {
	GinkgoHelper()
	expectLedger(f.history, log)
	log.mu.Lock()
	defer log.mu.Unlock()
	for id, n := range log.applied {
		Expect(n).To(BeNumerically("<=", 1), "event %s was applied %d times", id, n)
	}
	for name, bodies := range sent {
		got := &togetherv1.TogetherFineTune{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, got)).To(Succeed())
		want := inOrder(initial[name], bodies)
		Expect(comparable(got.Status)).To(Equal(comparable(want)), "fine-tune %s", name)
		seen := map[string]bool{}
		for _, id := range got.Status.ProcessedEvents {
			Expect(seen[id]).To(BeFalse(), "%s records %s twice", name, id)
			seen[id] = true
			if exact {
				Expect(log.applied[id]).To(Equal(1), "%s records %s, which no delivery was told was applied", name, id)
			}
		}
		applied := 0
		for _, b := range bodies {
			ev, _ := event.Decode(b)
			applied += log.applied[ev.ID]
		}
		if exact {
			Expect(len(got.Status.ProcessedEvents)).To(Equal(min(applied, togetherv1.MaxProcessedEvents)), "processed-event count of %s", name)
		} else {
			Expect(len(got.Status.ProcessedEvents)).To(BeNumerically(">=", min(applied, togetherv1.MaxProcessedEvents)), "processed-event count of %s", name)
		}
		for _, b := range bodies {
			ev, _ := event.Decode(b)
			Expect(log.final[ev.ID]).To(Equal(http.StatusOK), "event %s never acknowledged", ev.ID)
		}
	}
}
