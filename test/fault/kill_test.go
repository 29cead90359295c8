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

package fault

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// A crash is a killed process: nothing runs after it, no deferred write, no
// graceful shutdown of the endpoint. These specs build the manager binary
// (./cmd) and run it as a child process against the suite's API server,
// then SIGKILL it.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// managerBinary builds ./cmd once per suite run and returns its path and a
// kubeconfig for the suite's API server.
func managerBinary() (bin, kubeconfig string) {
	GinkgoHelper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "fault-manager-")
		if binErr != nil {
			return
		}
		args := []string{"build", "-o", filepath.Join(binDir, "manager")}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd")...)
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd: %v\n%s", err, out)
			return
		}
		kc := clientcmdapi.NewConfig()
		kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
		kc.CurrentContext = "envtest"
		binErr = clientcmd.WriteToFile(*kc, filepath.Join(binDir, "kubeconfig"))
	})
	Expect(binErr).NotTo(HaveOccurred())
	return filepath.Join(binDir, "manager"), filepath.Join(binDir, "kubeconfig")
}

// removeManagerBinary deletes what managerBinary built; AfterSuite calls it.
func removeManagerBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// process is one manager binary running as a child process.
type process struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
}

// freeAddr returns a loopback address no one listens on right now.
func freeAddr() string {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	Expect(ln.Close()).To(Succeed())
	return addr
}

// startProcess runs the manager binary against apiURL (the Together API or
// a proxy of the simulator) and waits until its events endpoint accepts
// connections.
func startProcess(apiURL string, pollInterval time.Duration) *process {
	GinkgoHelper()
	bin, kubeconfig := managerBinary()
	addr := freeAddr()
	cmd := exec.Command(bin,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--events-bind-address="+addr,
		"--together-base-url="+apiURL, "--poll-interval="+pollInterval.String(), "--zap-log-level=info")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "TOGETHER_API_KEY=fault-key")
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	p := &process{cmd: cmd, url: "http://" + addr, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	DeferCleanup(p.kill)
	Eventually(func() error {
		select {
		case <-p.exited:
			StopTrying("the manager process exited during start; its log is in the spec output").Now()
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}, time.Minute).Should(Succeed(), "waiting for the manager process to listen on %s", addr)
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() {
	GinkgoHelper()
	select {
	case <-p.exited:
		return
	default:
	}
	Expect(p.cmd.Process.Kill()).To(Succeed())
	Eventually(p.exited, 30*time.Second).Should(BeClosed(), "waiting for the killed manager process to exit")
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	Expect(ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL).To(BeTrue(),
		"the manager process was to die of SIGKILL, not exit on its own (%v)", p.cmd.ProcessState)
}

var _ = Describe("Manager killed mid-stream", func() {
	It("loses nothing acknowledged and applies nothing twice when the manager process is SIGKILLed twice while events flow", func() {
		crs, steps := 6, 149
		if soak {
			crs, steps = 12, 499
		}
		f := newFixture("kill")
		jobs := f.runningFineTunes("job", crs)
		// The manager runs its reconcilers too; they find these jobs running.
		sim := newSimulator()
		for job := range jobs {
			sim.AddFineTune(togethersim.FineTune{ID: job, Status: "running", Model: "base"})
		}
		first := startProcess(sim.URL(), time.Hour)
		var current atomic.Pointer[string]
		current.Store(&first.url)

		sent := workload(jobs, steps)
		now, later := chaos(interleave(sent), 0.1, 16, 0, 3)
		log := newLedger()
		s := newSender(func(int) string { return *current.Load() }, log)
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			send(s, f.path, now, later, 8, 0)
		}()

		cur := first
		for r := 1; r <= 2; r++ {
			Eventually(func() int { log.mu.Lock(); defer log.mu.Unlock(); return len(log.final) }, 2*time.Minute).
				Should(BeNumerically(">", len(now)*r/4), "waiting for a quarter more of the stream to be answered before kill %d", r)
			cur.kill()
			cur = startProcess(sim.URL(), time.Hour)
			current.Store(&cur.url)
		}
		Eventually(done, 3*time.Minute).Should(BeClosed(), "waiting for the senders to finish")
		Expect(log.retried(0)+log.retried(http.StatusServiceUnavailable)).To(BeNumerically(">", 0), "the kills must have interrupted deliveries")
		expectConverged(f, jobs, sent, log, false)
	})
})

// holdingProxy serves the simulator, except that a create on path, while
// armed, is carried out and then its answer held back: the job exists and
// is paid for, and the manager has not heard of it. created is closed then.
type holdingProxy struct {
	*httptest.Server
	path    string
	armed   atomic.Bool
	created chan struct{}
	once    sync.Once
}

func newHoldingProxy(sim *togethersim.Server, path string) *holdingProxy {
	GinkgoHelper()
	p := &holdingProxy{path: path, created: make(chan struct{})}
	p.armed.Store(true)
	h := sim.Handler()
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != path || !p.armed.Load() {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		p.once.Do(func() { close(p.created) })
		<-r.Context().Done() // the caller is killed before it hears back
	}))
	DeferCleanup(p.Server.Close)
	return p
}

var _ = Describe("Manager killed between a paid create and its status write", func() {
	It("adopts the fine-tune job it created before the kill instead of paying for a second one", func() {
		sim := newSimulator()
		f := newFixture("paid-ft")
		file := sim.AddFile("train.jsonl", "fine-tune", []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`+"\n"))
		proxy := newHoldingProxy(sim, "/v1/fine-tunes")
		Expect(k8s.Create(ctx, &togetherv1.TogetherFineTune{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "train"},
			Spec:       togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "base", TrainingFile: file.ID}},
		})).To(Succeed())
		first := startProcess(proxy.URL+"/v1", 300*time.Millisecond)
		Eventually(proxy.created, time.Minute).Should(BeClosed(), "waiting for the manager to create the job")
		first.kill()

		ft := getFineTune(f, "train")
		Expect(ft.Status.JobID).To(BeEmpty(), "the kill was to come before the status write that records the job")
		Expect(sim.CountCalls(http.MethodPost, "/v1/fine-tunes")).To(Equal(1))

		proxy.armed.Store(false)
		second := startProcess(proxy.URL+"/v1", 300*time.Millisecond)
		defer second.kill()
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: "fault-key"})
		Expect(err).NotTo(HaveOccurred())
		remote, err := api.ListFineTunes(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote).To(HaveLen(1))
		Eventually(func() string { return getFineTune(f, "train").Status.JobID }, time.Minute).
			Should(Equal(remote[0].ID), "waiting for the new manager to record the job created before the kill")

		By("an event about that job is acknowledged only once stored")
		log := newLedger()
		s := newSender(func(int) string { return second.url }, log)
		Expect(s.deliver(0, f.path, "after-kill-1", checkpointBody("after-kill-1", remote[0].ID, 1), time.Minute)).To(Equal(http.StatusOK))
		expectLedger(f.history, log)
		Consistently(func() int { return sim.CountCalls(http.MethodPost, "/v1/fine-tunes") }, 2*time.Second).
			Should(Equal(1), "a fine-tune job was paid for twice")
	})

	It("adopts the batch it created before the kill instead of paying for a second one", func() {
		sim := newSimulator()
		f := newFixture("paid-batch")
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "requests"},
			Data: map[string]string{"input.jsonl": batchRequests(3)}})).To(Succeed())
		proxy := newHoldingProxy(sim, "/v1/batches")
		Expect(k8s.Create(ctx, &togetherv1.TogetherBatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "nightly"},
			Spec: togetherv1.TogetherBatchSpec{Model: "base",
				Input: &togetherv1.BatchInput{ConfigMapRef: &togetherv1.ConfigMapKeyRef{Name: "requests", Key: "input.jsonl"}}},
		})).To(Succeed())
		first := startProcess(proxy.URL+"/v1", 300*time.Millisecond)
		Eventually(proxy.created, time.Minute).Should(BeClosed(), "waiting for the manager to create the batch")
		first.kill()

		tb := &togetherv1.TogetherBatch{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "nightly"}, tb)).To(Succeed())
		Expect(tb.Status.BatchID).To(BeEmpty(), "the kill was to come before the status write that records the batch")

		proxy.armed.Store(false)
		second := startProcess(proxy.URL+"/v1", 300*time.Millisecond)
		defer second.kill()
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: "fault-key"})
		Expect(err).NotTo(HaveOccurred())
		remote, err := api.ListBatches(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote).To(HaveLen(1))
		Eventually(func() string {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tb), tb)).To(Succeed())
			return tb.Status.BatchID
		}, time.Minute).Should(Equal(remote[0].ID), "waiting for the new manager to record the batch created before the kill")

		By("a batch.done about it is acknowledged only once stored")
		log := newLedger()
		s := newSender(func(int) string { return second.url }, log)
		done := envelope("after-kill-done", "batch.done", map[string]any{"batch_id": remote[0].ID, "status": "FAILED", "total_tokens": 0})
		Expect(s.deliver(0, f.path, "after-kill-done", done, time.Minute)).To(Equal(http.StatusOK))
		expectLedger(f.history, log)
		Consistently(func() int { return sim.CountCalls(http.MethodPost, "/v1/batches") }, 2*time.Second).
			Should(Equal(1), "a batch was paid for twice")
	})
})

// batchRequests is n valid chat-completion batch requests, one per line.
func batchRequests(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%d","body":{"model":"base","messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, i)
	}
	return b.String()
}
