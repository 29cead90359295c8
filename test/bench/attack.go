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

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/webhook"
	"github.com/together-operator/together-operator/pkg/push"
)

// attack runs the manager binary (default limits) and sends good traffic to
// its events endpoint at one rate, in phases that alternate (ABBAAB)
// between alone and beside an attack from other source addresses — slow unauthenticated
// 1 MiB bodies, slow chunked bodies under forged Standard Webhooks headers
// (which pass the header checks and so hold body budget), a flood of bad
// signatures, and replays of captured good deliveries (as sent, and
// downgraded to the hex form). The attack runs in a process of its own at
// the lowest CPU priority (startAttacker says why). It reports good
// traffic's p99 with and without the attack, the manager's peak RSS during
// it, and the API-server requests the bad traffic caused, as the manager
// attributes them.
func (b *bench) attack(ctx context.Context) error {
	const ns = "attack"
	if err := b.namespace(ctx, ns); err != nil {
		return err
	}
	bin, kcPath, err := b.managerBinary(ctx, "bench-attack")
	if err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, StringData: map[string]string{"secret": benchSecret}}
	if err := b.k8s.Create(ctx, secret); err != nil {
		return err
	}
	// The default policy: Standard Webhooks only.
	sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: secret.Name}}}
	if err := b.k8s.Create(ctx, sub); err != nil {
		return err
	}
	const jobs = 50
	if err := b.createFineTunes(ctx, ns, "atk", jobs); err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	mport, err := freePort()
	if err != nil {
		return err
	}
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics"
	pport, err := freePort()
	if err != nil {
		return err
	}
	pprofURL := "http://127.0.0.1:" + strconv.Itoa(pport) + "/debug/pprof/profile"
	cmd := exec.CommandContext(ctx, bin, "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(mport), "--metrics-secure=false",
		"--pprof-bind-address=127.0.0.1:"+strconv.Itoa(pport),
		"--health-probe-bind-address=0", "--events-bind-address="+addr, "--zap-log-level=error")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kcPath, "TOGETHER_API_KEY="+benchAPIKey, "TOGETHER_BASE_URL="+b.sim.URL())
	logs := &logWatch{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	}()
	base := "http://" + addr
	path := webhook.PathFor(ns, sub.Name)
	good := newSender(base)
	// Ready when a signed delivery about a tracked job is applied.
	step := atomic.Int64{}
	if err := waitFor(ctx, 2*time.Minute, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		body := checkpoint(fmt.Sprintf("warm-%d", step.Add(1)), "atk-0", step.Load())
		code, _, err := good.post(ctx, path, body)
		return err == nil && code == http.StatusOK
	}); err != nil {
		return fmt.Errorf("the manager's endpoint never applied an event: %w; its last log lines:\n%s", err, logs.tail())
	}
	select {
	case <-exited:
		return fmt.Errorf("the manager exited (%v); its last log lines:\n%s", cmd.ProcessState, logs.tail())
	default:
	}
	// A manager that just started reconciles every resource in the
	// cluster (17,000 fine-tunes after the other scenarios of a full run):
	// measuring during that backlog measures the backlog, on both sides.
	idle, err := waitIdle(ctx, metricsURL, 5*time.Minute)
	if err != nil {
		return err
	}
	rssBefore, err := b.settledRSS(ctx, cmd.Process.Pid)
	if err != nil {
		return err
	}

	// Good traffic: checkpoints at a steady rate, each fine-tune's step
	// rising, Standard-signed from 127.0.0.1. The captured requests feed the
	// replay attack.
	const rate = 100
	quick, phase := b.sz.distinct < 3000, 5*time.Second
	if quick {
		phase = 3 * time.Second
	}
	var captured capturedRequests
	nextStep := make([]atomic.Int64, jobs)
	for i := range nextStep {
		nextStep[i].Store(step.Load() + 1)
	}
	sent := 0
	goodRun := func() ([]time.Duration, int, error) {
		n := rate * int(phase/time.Second)
		lats := make([]time.Duration, n)
		var bad atomic.Int64
		from := sent
		sent += n
		err := openLoop(rate, 0, n, lats, func(i int) error {
			j := (from + i) % jobs
			st := nextStep[j].Add(1)
			body := checkpoint(fmt.Sprintf("good-%d", from+i), fmt.Sprintf("atk-%d", j), st)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			signStandard(req.Header, body)
			// Captured as a sender that signs both ways (the simulator
			// does) sends it.
			req.Header.Set(push.HeaderSignature, push.Hex([]byte(benchSecret), body))
			captured.add(req.Header.Clone(), body)
			code, _, err := good.post(ctx, path, body)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				bad.Add(1)
			}
			return nil
		})
		return lats, int(bad.Load()), err
	}

	// What bad traffic costs the API server, as the manager attributes it:
	// requests made while handling deliveries it then refused or answered
	// as replays (together_webhook_rejected_api_requests_total).
	rejectedCalls := func() (float64, error) {
		return scrapeCounter(ctx, metricsURL, "together_webhook_rejected_api_requests_total")
	}
	calls0, err := rejectedCalls()
	if err != nil {
		return err
	}

	// The phases alternate between good traffic alone and beside the
	// attack, and each side's p99 is taken over all its phases, so that the
	// manager's and the machine's background work (resyncs, poll cycles,
	// garbage collection) falls on both sides alike rather than on one.
	// The first phase of each side is profiled (the manager's CPU profiles,
	// in the output directory) and every phase's CPU is counted per
	// process, so that a missed goal says where the attack's cost went.
	var alone, attacked []time.Duration
	var cpuAlone, cpuAttack phaseCPU
	var pairRatios []string
	var peak atomic.Int64
	report := attackReport{Sent: map[string]int64{}}
	// Every good delivery's latency, by the time it was sent, goes to
	// attack-latencies.csv: a p99 over seconds is set by a few slow moments,
	// and the series shows whether they follow the attack.
	var series bytes.Buffer
	series.WriteString("nth,phase,sent_s,latency_ms\n")
	seriesStart := time.Now()
	measure := func(label string, nth int, run func() ([]time.Duration, int, error)) ([]time.Duration, phaseCPU, error) {
		prof := make(chan struct{})
		go func() {
			defer close(prof)
			if nth == 0 {
				saveProfile(ctx, pprofURL, max(1, int(phase/time.Second)-1), filepath.Join(b.outDir, "attack-manager-"+label+".pprof"))
			}
		}()
		before := readPhaseCPU(cmd.Process.Pid)
		t0 := time.Now()
		lats, bad, err := run()
		used := readPhaseCPU(cmd.Process.Pid).sub(before)
		for i, l := range lats {
			fmt.Fprintf(&series, "%d,%s,%.3f,%.3f\n", nth+1, label, t0.Sub(seriesStart).Seconds()+float64(i)/rate, ms(l))
		}
		<-prof
		if err == nil && bad > 0 {
			err = fmt.Errorf("%d good deliveries %s were not answered 200", bad, label)
		}
		return lats, used, err
	}
	// Alone (A) and beside the attack (B) in the order ABBAAB: both sides
	// sit on average at the same point of the run, so that a machine
	// growing busier over it (the API server's heap, other tenants) does
	// not count against one side.
	order := []bool{false, true, true, false, false, true}
	if quick {
		order = []bool{false, true}
	}
	var aloneRuns, attackRuns [][]time.Duration
	for i, attack := range order {
		if !attack {
			fmt.Fprintf(os.Stderr, "   phase %d/%d: good traffic alone\n", i+1, len(order))
			la, used, err := measure("alone", len(aloneRuns), goodRun)
			if err != nil {
				return err
			}
			aloneRuns, alone, cpuAlone = append(aloneRuns, la), append(alone, la...), cpuAlone.add(used)
			continue
		}
		fmt.Fprintf(os.Stderr, "   phase %d/%d: good traffic beside the attack\n", i+1, len(order))
		atk, err := b.startAttacker(ctx, base, path, captured.snapshot(), phase+attackWarmUp+time.Second)
		if err != nil {
			return err
		}
		sampling, stopSampling := context.WithCancel(ctx)
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for sampling.Err() == nil {
				if kib, err := vmRSS(cmd.Process.Pid); err == nil && kib > peak.Load() {
					peak.Store(kib)
				}
				select {
				case <-time.After(200 * time.Millisecond):
				case <-sampling.Done():
				}
			}
		}()
		// The attack's connections are opening and its buckets filling:
		// the good traffic meets it in full.
		select {
		case <-time.After(attackWarmUp):
		case <-ctx.Done():
			stopSampling()
			return ctx.Err()
		}
		lt, used, err := measure("attacked", len(attackRuns), goodRun)
		stopSampling()
		<-sampled
		rep, werr := atk.wait()
		if err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		attackRuns, attacked, cpuAttack = append(attackRuns, lt), append(attacked, lt...), cpuAttack.add(used)
		cpuAttack.attacker += rep.CPU
		for k, v := range rep.Sent {
			report.Sent[k] += v
		}
		select {
		case <-exited:
			return fmt.Errorf("the manager died under attack (%v); its last log lines:\n%s", cmd.ProcessState, logs.tail())
		default:
		}
	}
	for k := range attackRuns {
		pairRatios = append(pairRatios, fmt.Sprintf("%.2f", float64(percentile(attackRuns[k], 0.99))/float64(max(percentile(aloneRuns[k], 0.99), time.Microsecond))))
	}
	calls1, err := rejectedCalls()
	if err != nil {
		return err
	}
	badRequests, caused := report.total(), calls1-calls0
	// Correctness: every fine-tune reached the last step its good traffic sent.
	for j := range jobs {
		var ft togetherv1.TogetherFineTune
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("atk-%d", j)}, &ft); err != nil {
			return err
		}
		if want := nextStep[j].Load(); ft.Status.Step != want {
			return fmt.Errorf("fine-tune atk-%d is at step %d, its last acknowledged checkpoint was %d", j, ft.Status.Step, want)
		}
	}

	if err := os.WriteFile(filepath.Join(b.outDir, "attack-latencies.csv"), series.Bytes(), 0o644); err != nil {
		return err
	}
	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	p99Alone, p99Attack := percentile(alone, 0.99), percentile(attacked, 0.99)
	ratio := float64(p99Attack) / float64(max(p99Alone, time.Microsecond))
	b.add(row{Scenario: "attack: good p99 beside the attack", Value: ms(p99Attack), Unit: "ms", Baseline: ms(p99Alone), Ratio: ratio,
		Goal: "<= 1.5x no-attack p99", Pass: ratio <= 1.5, Note: fmt.Sprintf("%d events/s of good traffic, %d phases of %s alone and as many beside the attack, in the order ABBAAB (per pair %s), after %s; attack mix: %s; CPU alone %s; beside the attack %s",
			rate, len(aloneRuns), phase, strings.Join(pairRatios, ", "), idle, report.summary(), cpuAlone, cpuAttack)})
	growth := mib(peak.Load() - rssBefore)
	b.add(row{Scenario: "attack: manager peak RSS", Value: mib(peak.Load()), Unit: "MiB", Baseline: mib(rssBefore), Ratio: float64(peak.Load()) / float64(max(rssBefore, 1)),
		Goal: "growth < 64 MiB (16 MiB bodies + 1024 connections)", Pass: growth < 64, Note: fmt.Sprintf("growth %.1f MiB", growth)})
	perReq := caused / float64(max(badRequests, 1))
	b.add(row{Scenario: "attack: API-server requests caused by bad traffic", Value: caused, Unit: "requests", Goal: "none per request (caches only)",
		Pass: perReq < 0.01, Note: fmt.Sprintf("for %d bad requests over %d attack windows of %s (%.5f per request)", badRequests, len(attackRuns), phase+attackWarmUp, perReq)})
	return nil
}

// waitIdle waits until the manager's controllers have worked off what
// they found at start: every work queue empty (workqueue_depth, summed over
// controllers) in five samples in a row, 200 ms apart. It says how long
// that took, or that it gave up after limit (the measure then goes on,
// and says so).
func waitIdle(ctx context.Context, metricsURL string, limit time.Duration) (string, error) {
	start, zeros := time.Now(), 0
	for zeros < 5 {
		if time.Since(start) > limit {
			return fmt.Sprintf("the manager's work queues still busy after %s", limit), nil
		}
		depth, err := scrapeCounter(ctx, metricsURL, "workqueue_depth")
		if err != nil {
			return "", err
		}
		if depth == 0 {
			zeros++
		} else {
			zeros = 0
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return fmt.Sprintf("the manager's work queues emptied in %s", time.Since(start).Round(100*time.Millisecond)), nil
}

// attackWarmUp is how long the attack runs before the good traffic beside
// it is measured.
const attackWarmUp = time.Second

// managerBinary builds the manager (once per bench run) and writes a
// kubeconfig for a user of its own.
func (b *bench) managerBinary(ctx context.Context, user string) (string, string, error) {
	bin := filepath.Join(b.outDir, "manager")
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	if _, err := os.Stat(bin); err != nil || b.sz.skipMemory {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return "", "", fmt.Errorf("building the manager: %w", err)
		}
	}
	u, err := b.env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", "", err
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", "", err
	}
	kcPath := filepath.Join(b.outDir, user+".kubeconfig")
	return bin, kcPath, os.WriteFile(kcPath, kc, 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// scrapeCounter reads one counter (summed over its labels) from a
// Prometheus text endpoint.
func scrapeCounter(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line != name && !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

type capturedRequests struct {
	mu   sync.Mutex
	reqs []capturedRequest
}

// capturedRequest is one good delivery as sent, for the attacker to replay.
type capturedRequest struct {
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

func (c *capturedRequests) add(h http.Header, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) < 1000 {
		c.reqs = append(c.reqs, capturedRequest{h, body})
	}
}

func (c *capturedRequests) snapshot() []capturedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// attackPlan is what the bench hands its attacker process.
type attackPlan struct {
	Base     string            `json:"base"`
	Path     string            `json:"path"`
	Duration time.Duration     `json:"duration"`
	Captured []capturedRequest `json:"captured"`
}

// attackReport is what the attacker process sent, by kind, and the CPU it
// used (filled in by the bench from the process's own accounting).
type attackReport struct {
	Sent map[string]int64 `json:"sent"`
	CPU  time.Duration    `json:"-"`
}

func (r attackReport) total() int64 {
	var n int64
	for _, v := range r.Sent {
		n += v
	}
	return n
}

func (r attackReport) summary() string {
	var parts []string
	for _, k := range attackKinds {
		if v, ok := r.Sent[k]; ok {
			parts = append(parts, fmt.Sprintf("%d %s", v, k))
		}
	}
	return strings.Join(parts, ", ")
}

var attackKinds = []string{"slow 1 MiB unsigned", "slow chunked forged", "bad signature", "replay", "replay downgraded to hex"}

// attackProcess is a running attacker process.
type attackProcess struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startAttacker runs the attack for d in a process of its own (this
// binary, with -attacker), at the lowest CPU priority. An attacker spends
// its own machines' CPU, not the operator's: on one shared machine the
// priority is what keeps the cost of generating the attack out of the good
// traffic's latency, so that what is measured is the cost of refusing it.
// The attacker runs only on CPU nothing else wants; the kinds and counts it
// reached are reported, so a starved attack shows.
func (b *bench) startAttacker(ctx context.Context, base, path string, captured []capturedRequest, d time.Duration) (*attackProcess, error) {
	plan, err := json.Marshal(attackPlan{Base: base, Path: path, Duration: d, Captured: captured})
	if err != nil {
		return nil, err
	}
	planFile := filepath.Join(b.outDir, "attack-plan.json")
	if err := os.WriteFile(planFile, plan, 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &attackProcess{cmd: exec.CommandContext(ctx, self, "-attacker", planFile)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the attacker: %w", err)
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.cmd.Process.Pid, 19); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("lowering the attacker's priority: %w", err)
	}
	return p, nil
}

// wait waits for the attack to end and returns what it sent.
func (p *attackProcess) wait() (attackReport, error) {
	if err := p.cmd.Wait(); err != nil {
		return attackReport{}, fmt.Errorf("the attacker failed: %w", err)
	}
	var r attackReport
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		return attackReport{}, fmt.Errorf("reading the attacker's report: %w", err)
	}
	r.CPU = p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	return r, nil
}

// runAttacker is the attacker process: it reads its plan, attacks for the
// plan's duration and prints what it sent.
func runAttacker(planFile string) error {
	data, err := os.ReadFile(planFile)
	if err != nil {
		return err
	}
	var plan attackPlan
	if err := json.Unmarshal(data, &plan); err != nil {
		return fmt.Errorf("reading the attack plan: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), plan.Duration)
	defer cancel()
	a := &attacker{base: plan.Base, path: plan.Path, captured: plan.Captured}
	a.run(ctx)
	r := attackReport{Sent: map[string]int64{}}
	a.kinds.Range(func(k, v any) bool {
		r.Sent[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return json.NewEncoder(os.Stdout).Encode(r)
}

// attacker sends the bad traffic, each kind from source addresses of its
// own (127.0.0.2 and up), as a botnet would, so that the endpoint's
// per-source buckets see them apart from the good sender.
type attacker struct {
	base, path string
	captured   []capturedRequest
	kinds      sync.Map // kind → *atomic.Int64
}

const (
	slowBodies      = 100 // slow unauthenticated 1 MiB bodies
	slowForged      = 100 // slow chunked bodies under forged Standard headers
	floodPerSecond  = 1000
	replayPerSecond = 200
)

func (a *attacker) count(kind string) {
	v, _ := a.kinds.LoadOrStore(kind, &atomic.Int64{})
	v.(*atomic.Int64).Add(1)
}

func sourceClient(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

func (a *attacker) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range slowBodies {
		wg.Add(1)
		go func() { defer wg.Done(); a.slowBody(ctx, fmt.Sprintf("127.0.1.%d", 1+i%200), false) }()
	}
	for i := range slowForged {
		wg.Add(1)
		go func() { defer wg.Done(); a.slowBody(ctx, fmt.Sprintf("127.0.2.%d", 1+i%200), true) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); a.flood(ctx) }()
	go func() { defer wg.Done(); a.replay(ctx) }()
	wg.Wait()
}

// slowBody opens a connection from ip and trickles a body: 1 MiB announced
// and unsigned, or (forged) chunked with well-formed Standard headers and a
// current timestamp, so that it passes every check made before the body.
func (a *attacker) slowBody(ctx context.Context, ip string, forged bool) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	host := strings.TrimPrefix(a.base, "http://")
	chunk := bytes.Repeat([]byte("x"), 1024)
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var head strings.Builder
		fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", a.path, host)
		kind := "slow 1 MiB unsigned"
		if forged {
			kind = "slow chunked forged"
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			fmt.Fprintf(&head, "Transfer-Encoding: chunked\r\n%s: forged-%s\r\n%s: %s\r\n%s: v1,%s\r\n\r\n",
				push.HeaderWebhookID, ip, push.HeaderWebhookTimestamp, ts, push.HeaderWebhookSignature, strings.Repeat("A", 43)+"=")
		} else {
			fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", 1<<20)
		}
		a.count(kind)
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, conn); close(done) }()
		_, err = conn.Write([]byte(head.String()))
		for sent := 0; err == nil && sent < 1<<20 && ctx.Err() == nil; sent += len(chunk) {
			if forged {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = conn.Write(chunk)
			}
			select {
			case <-done:
				err = io.EOF // answered and closed
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		_ = conn.Close()
		<-done
		select { // a new connection five times a second per sender
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// flood sends small bodies with well-formed Standard headers and a wrong
// signature, open loop at floodPerSecond from four source addresses.
func (a *attacker) flood(ctx context.Context) {
	clients := []*http.Client{sourceClient("127.0.3.1"), sourceClient("127.0.3.2"), sourceClient("127.0.3.3"), sourceClient("127.0.3.4")}
	tick := time.NewTicker(time.Second / floodPerSecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := checkpoint(fmt.Sprintf("forged-%d", i), "atk-0", 1_000_000)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+a.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			now := time.Now()
			req.Header.Set(push.HeaderWebhookID, fmt.Sprint("forged-", i))
			req.Header.Set(push.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
			req.Header.Set(push.HeaderWebhookSignature, push.Standard([]byte("a-guess"), fmt.Sprint("forged-", i), now, body))
			a.count("bad signature")
			if resp, err := clients[i%len(clients)].Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
}

// replay re-sends captured good deliveries as they were sent (within the
// tolerance window), and every other one with its Standard headers
// stripped and a hex signature in their place (a downgrade).
func (a *attacker) replay(ctx context.Context) {
	c := sourceClient("127.0.4.1")
	tick := time.NewTicker(time.Second / replayPerSecond)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			continue
		}
		if len(a.captured) == 0 {
			continue
		}
		cr := a.captured[i%len(a.captured)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+a.path, bytes.NewReader(cr.Body))
		req.Header = cr.Header.Clone()
		if i%2 == 0 {
			a.count("replay")
		} else {
			for _, h := range []string{push.HeaderWebhookID, push.HeaderWebhookTimestamp, push.HeaderWebhookSignature} {
				req.Header.Del(h)
			}
			a.count("replay downgraded to hex")
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// phaseCPU is the CPU time each process of the scenario used in one phase.
type phaseCPU struct {
	manager, attacker time.Duration
	cpuSample
}

func readPhaseCPU(manager int) phaseCPU {
	return phaseCPU{manager: procCPU(manager), cpuSample: readCPU()}
}

func (p phaseCPU) sub(o phaseCPU) phaseCPU {
	return phaseCPU{manager: p.manager - o.manager, cpuSample: p.cpuSample.sub(o.cpuSample)}
}

func (p phaseCPU) add(o phaseCPU) phaseCPU {
	return phaseCPU{manager: p.manager + o.manager, attacker: p.attacker + o.attacker, cpuSample: p.cpuSample.add(o.cpuSample)}
}

func (p phaseCPU) String() string {
	s := fmt.Sprintf("manager %.1fs, good sender %.1fs, apiserver %.1fs, etcd %.1fs",
		p.manager.Seconds(), p.self.Seconds(), p.apiserver.Seconds(), p.etcd.Seconds())
	if p.attacker > 0 {
		s += fmt.Sprintf(", attacker (nice 19, its whole run) %.1fs", p.attacker.Seconds())
	}
	return s
}

// saveProfile fetches a CPU profile of seconds from a pprof endpoint into
// path; a failure is reported on stderr only, since the profile is an aid
// to reading the figures, not one of them.
func saveProfile(ctx context.Context, url string, seconds int, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?seconds="+strconv.Itoa(seconds), nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			var data []byte
			if data, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(path, data, 0o600)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "   (no CPU profile %s: %v)\n", filepath.Base(path), err)
	}
}
