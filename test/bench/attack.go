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
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// its events endpoint twice at the same rate: alone, then beside an attack
// from other source addresses — slow unauthenticated 1 MiB bodies, slow
// chunked bodies under forged Standard Webhooks headers (which pass the
// header checks and so hold body budget), a flood of bad signatures, and
// replays of captured good deliveries (as sent, and downgraded to the hex
// form). It reports good traffic's p99 with and without the attack, the
// manager's peak RSS during it, and the API-server requests the bad traffic
// caused, read from the API server's own request counter.
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
	cmd := exec.CommandContext(ctx, bin, "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(mport), "--metrics-secure=false",
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
	rssBefore, err := b.settledRSS(ctx, cmd.Process.Pid)
	if err != nil {
		return err
	}

	// Good traffic: checkpoints at a steady rate, each fine-tune's step
	// rising, Standard-signed from 127.0.0.1. The captured requests feed the
	// replay attack.
	rate, dur := 100, 10*time.Second
	if b.sz.distinct < 3000 { // -quick
		dur = 3 * time.Second
	}
	var captured capturedRequests
	nextStep := make([]atomic.Int64, jobs)
	for i := range nextStep {
		nextStep[i].Store(step.Load() + 1)
	}
	goodRun := func(label string) (time.Duration, int, error) {
		n := rate * int(dur/time.Second)
		lats := make([]time.Duration, n)
		var bad atomic.Int64
		err := openLoop(rate, 0, n, lats, func(i int) error {
			j := i % jobs
			st := nextStep[j].Add(1)
			body := checkpoint(fmt.Sprintf("%s-%d", label, i), fmt.Sprintf("atk-%d", j), st)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			signStandard(req.Header, body)
			// Captured as a sender that signs both ways (the simulator
			// does) sends it.
			req.Header.Set(push.HeaderSignature, push.Hex([]byte(benchSecret), body))
			captured.add(req.Header.Clone(), body)
			code, lat, err := good.post(ctx, path, body)
			lats[i] = lat
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				bad.Add(1)
			}
			return nil
		})
		return percentile(lats, 0.99), int(bad.Load()), err
	}

	fmt.Fprintln(os.Stderr, "   good traffic alone")
	p99Alone, badAlone, err := goodRun("alone")
	if err != nil {
		return err
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
	window := 5 * time.Second
	fmt.Fprintln(os.Stderr, "   attack alone")
	atk := &attacker{base: base, path: path, captured: &captured}
	actx, stopAttack := context.WithTimeout(ctx, window)
	atk.run(actx)
	stopAttack()

	fmt.Fprintln(os.Stderr, "   good traffic beside the attack")
	actx, stopAttack = context.WithCancel(ctx)
	var peak atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); atk.run(actx) }()
	go func() {
		defer wg.Done()
		for actx.Err() == nil {
			if kib, err := vmRSS(cmd.Process.Pid); err == nil && kib > peak.Load() {
				peak.Store(kib)
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-actx.Done():
			}
		}
	}()
	p99Attack, badAttack, err := goodRun("attacked")
	stopAttack()
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case <-exited:
		return fmt.Errorf("the manager died under attack (%v); its last log lines:\n%s", cmd.ProcessState, logs.tail())
	default:
	}
	calls1, err := rejectedCalls()
	if err != nil {
		return err
	}
	badRequests, caused := atk.sent.Load(), calls1-calls0
	if badAlone+badAttack > 0 {
		return fmt.Errorf("good deliveries not answered 200: %d alone, %d under attack", badAlone, badAttack)
	}
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

	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	ratio := float64(p99Attack) / float64(max(p99Alone, time.Microsecond))
	b.add(row{Scenario: "attack: good p99 beside the attack", Value: ms(p99Attack), Unit: "ms", Baseline: ms(p99Alone), Ratio: ratio,
		Goal: "<= 1.5x no-attack p99", Pass: ratio <= 1.5, Note: fmt.Sprintf("%d events/s of good traffic; attack mix: %s", rate, atk.summary())})
	growth := mib(peak.Load() - rssBefore)
	b.add(row{Scenario: "attack: manager peak RSS", Value: mib(peak.Load()), Unit: "MiB", Baseline: mib(rssBefore), Ratio: float64(peak.Load()) / float64(max(rssBefore, 1)),
		Goal: "growth < 64 MiB (16 MiB bodies + 1024 connections)", Pass: growth < 64, Note: fmt.Sprintf("growth %.1f MiB", growth)})
	perReq := caused / float64(max(badRequests, 1))
	b.add(row{Scenario: "attack: API-server requests caused by bad traffic", Value: caused, Unit: "requests", Goal: "none per request (caches only)",
		Pass: perReq < 0.01, Note: fmt.Sprintf("for %d bad requests over %s + %s (%.5f per request)", badRequests, window, dur, perReq)})
	return nil
}

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

type capturedRequest struct {
	header http.Header
	body   []byte
}

func (c *capturedRequests) add(h http.Header, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) < 1000 {
		c.reqs = append(c.reqs, capturedRequest{h, body})
	}
}

func (c *capturedRequests) pick(i int) (capturedRequest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		return capturedRequest{}, false
	}
	return c.reqs[i%len(c.reqs)], true
}

// attacker sends the bad traffic, each kind from source addresses of its
// own (127.0.0.2 and up), as a botnet would, so that the endpoint's
// per-source buckets see them apart from the good sender.
type attacker struct {
	base, path string
	captured   *capturedRequests
	sent       atomic.Int64
	kinds      sync.Map // kind → *atomic.Int64
}

const (
	slowBodies      = 100 // slow unauthenticated 1 MiB bodies
	slowForged      = 100 // slow chunked bodies under forged Standard headers
	floodPerSecond  = 1000
	replayPerSecond = 200
)

func (a *attacker) count(kind string) {
	a.sent.Add(1)
	v, _ := a.kinds.LoadOrStore(kind, &atomic.Int64{})
	v.(*atomic.Int64).Add(1)
}

func (a *attacker) summary() string {
	var parts []string
	for _, k := range []string{"slow 1 MiB unsigned", "slow chunked forged", "bad signature", "replay", "replay downgraded to hex"} {
		if v, ok := a.kinds.Load(k); ok {
			parts = append(parts, fmt.Sprintf("%d %s", v.(*atomic.Int64).Load(), k))
		}
	}
	return strings.Join(parts, ", ")
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
		cr, ok := a.captured.pick(i)
		if !ok {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+a.path, bytes.NewReader(cr.body))
		req.Header = cr.header.Clone()
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
