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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/operator"

	"github.com/together-operator/together-operator/internal/webhook"
)

const (
	benchAPIKey = "bench-key"
	benchSecret = "whsec-bench"
)

// parallel runs fn(i) for i in [0,n) on workers goroutines and returns the
// first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (b *bench) namespace(ctx context.Context, name string) error {
	return b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// createFineTunes creates n fine-tunes prefix-0..n-1 tracking running jobs of
// the same names, as the fine-tune reconciler leaves them once a job runs.
// Starting from Running keeps the measured events to what most of a job's
// events are: a checkpoint that costs one status write and no Kubernetes
// Event (the first transition to Running would add one).
func (b *bench) createFineTunes(ctx context.Context, ns, prefix string, n int) error {
	return parallel(n, b.sz.writerPool, func(i int) error {
		name := fmt.Sprintf("%s-%d", prefix, i)
		ft := &togetherv1.TogetherFineTune{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       togetherv1.TogetherFineTuneSpec{JobID: name},
		}
		if err := b.k8s.Create(ctx, ft); err != nil {
			return err
		}
		ft.Status = togetherv1.TogetherFineTuneStatus{JobID: name, Phase: togetherv1.FineTuneRunning, Attempt: 1}
		return b.k8s.Status().Update(ctx, ft)
	})
}

// rawBaseline is the ceiling the intake is compared with: 16 writers doing
// nothing but status updates of distinct fine-tunes, through the same client
// config the intake uses. It is the cost of one write per event.
func (b *bench) rawBaseline(ctx context.Context) error {
	const ns = "raw"
	if err := b.namespace(ctx, ns); err != nil {
		return err
	}
	n := b.sz.distinct
	if err := b.createFineTunes(ctx, ns, "raw", n); err != nil {
		return err
	}
	objs := make([]*togetherv1.TogetherFineTune, n)
	if err := parallel(n, b.sz.writerPool, func(i int) error {
		objs[i] = &togetherv1.TogetherFineTune{}
		return b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("raw-%d", i)}, objs[i])
	}); err != nil {
		return err
	}
	lats := make([]time.Duration, n)
	start := time.Now()
	if err := parallel(n, b.sz.senders, func(i int) error {
		ft := objs[i]
		rawCheckpoint(ft, 1)
		t := time.Now()
		err := b.k8s.Status().Update(ctx, ft)
		lats[i] = time.Since(t)
		return err
	}); err != nil {
		return err
	}
	elapsed := time.Since(start)
	b.rawRate = float64(n) / elapsed.Seconds()
	b.rawObjs = objs
	// Correctness: every write landed.
	var list togetherv1.TogetherFineTuneList
	if err := b.k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, ft := range list.Items {
		if ft.Status.Step != 1 {
			return fmt.Errorf("raw write to %s missing", ft.Name)
		}
	}
	b.add(row{Scenario: "raw status updates, 16 writers", Value: b.rawRate, Unit: "writes/s", Goal: "baseline", Pass: true})
	b.rawP99 = percentile(lats, 0.99)
	b.add(row{Scenario: "raw status update p99, 16 writers", Value: ms(b.rawP99), Unit: "ms", Goal: "baseline", Pass: true})
	// The minimal baseline: the cheapest write that changes the same
	// objects, next to the same write to a CR without a schema.
	return b.minimalBaseline(ctx, ns, objs)
}

// rawCheckpoint makes in ft's status the change the intake makes for the
// same checkpoint (step, loss, checkpoint list, processed event), so that the
// raw baseline writes what the intake writes and the comparison is of the
// path, not of the payload.
func rawCheckpoint(ft *togetherv1.TogetherFineTune, step int64) {
	loss := 1.0 / float64(step+1)
	lattice.ApplyFineTune(&ft.Status, event.Event{
		ID: fmt.Sprintf("%s-%d", ft.Name, step), Type: togetherv1.EventFineTuneCheckpoint, JobID: ft.Status.JobID, Step: step, Loss: &loss,
	}, metav1.Now())
}

// sender posts signed events to the endpoint and retries what the endpoint
// asks it to retry (503), as a real sender does.
type sender struct {
	url  string
	http *http.Client
}

func newSender(base string) *sender {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	return &sender{url: base, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func checkpoint(id, jobID string, step int64) []byte {
	body, _ := json.Marshal(map[string]any{
		"id": id, "type": "fine_tune.checkpoint", "created_at": time.Now().UTC().Format(time.RFC3339),
		"data": map[string]any{"fine_tune_id": jobID, "step": step, "loss": 1.0 / float64(step+1)},
	})
	return body
}

// post sends one event until it gets a final answer, and returns that code
// and the latency of the final attempt.
func (s *sender) post(ctx context.Context, path string, body []byte) (int, time.Duration, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(body))
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		signStandard(req.Header, body)
		t := time.Now()
		resp, err := s.http.Do(req)
		lat := time.Since(t)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return resp.StatusCode, lat, nil
			}
		}
		if attempt >= 20 {
			return 0, lat, fmt.Errorf("no final answer after %d attempts (last error %v)", attempt+1, err)
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		case <-ctx.Done():
			return 0, lat, ctx.Err()
		}
	}
}

// signStandard signs body the Standard Webhooks way (what a subscription
// accepts by default), with a webhook-id derived from the body, so that a
// retry carries the same id under a fresh timestamp as senders do.
func signStandard(h http.Header, body []byte) {
	sum := sha256.Sum256(body)
	id, now := "msg_"+hex.EncodeToString(sum[:12]), time.Now()
	h.Set(push.HeaderWebhookID, id)
	h.Set(push.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(push.HeaderWebhookSignature, push.Standard([]byte(benchSecret), id, now, body))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// intake runs the intake scenarios against the real endpoint: a manager's
// cache and indexes, the Applier and webhook.Server listening on a port,
// wired as operator.Setup wires them. The reconcilers are left out so that
// the figures are the intake's own and the correctness checks see only its
// writes.
func (b *bench) intake(ctx context.Context) error {
	const ns = "intake"
	if err := b.namespace(ctx, ns); err != nil {
		return err
	}
	// The manager's client is metered, so that the intake's status writes
	// are counted in requests, bytes and client-side time.
	var meter writeMeter
	mgr, err := ctrl.NewManager(meter.wrap(b.cfg), ctrl.Options{Scheme: b.scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Client: operator.ClientOptions(), Cache: operator.CacheOptions()})
	if err != nil {
		return err
	}
	if err := intake.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	applier := &intake.Applier{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("together-events")}
	srv := &webhook.Server{Addr: "127.0.0.1:0", Client: mgr.GetClient(), SecretCache: mgr.GetCache(), SecretReader: mgr.GetAPIReader(), Applier: applier, Recorder: mgr.GetEventRecorder("together-events")}
	if err := mgr.Add(srv); err != nil {
		return err
	}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(mctx) }()
	defer func() { stop(); <-errc }()

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, StringData: map[string]string{"secret": benchSecret}}
	if err := b.k8s.Create(ctx, secret); err != nil {
		return err
	}
	sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: secret.Name}}}
	if err := b.k8s.Create(ctx, sub); err != nil {
		return err
	}
	n := b.sz.distinct
	if err := b.createFineTunes(ctx, ns, "d", n); err != nil {
		return err
	}
	if err := b.createFineTunes(ctx, ns, "burst", b.sz.burstCRs); err != nil {
		return err
	}
	addr, err := srv.ListenAddr(ctx)
	if err != nil {
		return err
	}
	// Wait until the cache holds every object the events name, as Running.
	if err := waitFor(ctx, time.Minute, func() bool {
		var l togetherv1.TogetherFineTuneList
		if mgr.GetClient().List(ctx, &l, client.InNamespace(ns)) != nil || len(l.Items) != n+b.sz.burstCRs {
			return false
		}
		for _, ft := range l.Items {
			if ft.Status.Phase != togetherv1.FineTuneRunning {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("cache never saw the fine-tunes: %w", err)
	}
	s := newSender("http://" + addr.String())
	path := webhook.PathFor(ns, sub.Name)
	// Warm the connection pool and the secret cache outside the measurement.
	if code, _, err := s.post(ctx, path, []byte(`{}`)); err != nil || code != http.StatusBadRequest {
		return fmt.Errorf("warm-up: code %d, %v", code, err)
	}

	if err := b.distinct(ctx, s, path, ns, n, &meter); err != nil {
		return err
	}
	if err := b.objectCost(ctx, ns, "d-0", "after one checkpoint"); err != nil {
		return err
	}
	if err := b.burst(ctx, s, path, ns); err != nil {
		return err
	}
	if err := b.objectCost(ctx, ns, "burst-0", fmt.Sprintf("after %d checkpoints", b.sz.burstPerCR)); err != nil {
		return err
	}
	return b.steady(ctx, s, path, ns, n)
}

// openLoop calls fn for from..to-1 at rate calls per second without
// waiting for earlier calls, recording each call's latency in lats.
func openLoop(rate, from, to int, lats []time.Duration, fn func(i int) error) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	errs := make([]error, to-from)
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			errs[i-from] = fn(i)
			lats[i] = time.Since(t)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", limit)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// distinct sends one checkpoint to each of n fine-tunes from 16 senders:
// group commit cannot help, so the best possible ratio is 1.0. When the
// minimal baseline ran, the sends take turns, in slices, with minimal status
// patches of the raw fine-tunes (16 writers), so that the intake and its
// baseline meet the same API server; the API server's own time per status
// write is read around each slice, so each side gets its own.
func (b *bench) distinct(ctx context.Context, s *sender, path, ns string, n int, meter *writeMeter) error {
	lats := make([]time.Duration, n)
	paired := b.minClient != nil && len(b.rawObjs) >= n
	var minLats []time.Duration
	if paired {
		minLats = make([]time.Duration, n)
	}
	var intakeTime, minTime time.Duration
	var intakeSrv, minSrv struct{ sum, count float64 }
	var intakeCPU, minCPU cpuSample
	m0, mm0 := meter.read(), b.minMeter.read()
	timed := func(fn func() error, d *time.Duration, srv *struct{ sum, count float64 }, cpu *cpuSample) error {
		before, err := b.scrapeServerTimes(ctx)
		if err != nil {
			return err
		}
		c0 := readCPU()
		t := time.Now()
		if err := fn(); err != nil {
			return err
		}
		*d += time.Since(t)
		*cpu = cpu.add(readCPU().sub(c0))
		after, err := b.scrapeServerTimes(ctx)
		if err != nil {
			return err
		}
		srv.sum += after["togetherfinetunes"].sum - before["togetherfinetunes"].sum
		srv.count += after["togetherfinetunes"].count - before["togetherfinetunes"].count
		return nil
	}
	const slice = 250
	for from := 0; from < n; from += slice {
		to := min(from+slice, n)
		if err := timed(func() error {
			return parallel(to-from, b.sz.senders, func(k int) error {
				i := from + k
				code, lat, err := s.post(ctx, path, checkpoint(fmt.Sprintf("d-%d-1", i), fmt.Sprintf("d-%d", i), 1))
				if err != nil {
					return err
				}
				if code != http.StatusOK {
					return fmt.Errorf("event d-%d-1 answered %d", i, code)
				}
				lats[i] = lat
				return nil
			})
		}, &intakeTime, &intakeSrv, &intakeCPU); err != nil {
			return err
		}
		if !paired {
			continue
		}
		if err := timed(func() error {
			return parallel(to-from, b.sz.senders, func(k int) error {
				i := from + k
				t := time.Now()
				err := b.minClient.Status().Patch(ctx, b.rawObjs[i], client.RawPatch(types.MergePatchType, minimalPatch(i, 1)))
				minLats[i] = time.Since(t)
				return err
			})
		}, &minTime, &minSrv, &minCPU); err != nil {
			return fmt.Errorf("minimal patches beside the intake: %w", err)
		}
	}
	rate := float64(n) / intakeTime.Seconds()
	if err := b.checkDistinct(ctx, ns, n, 1); err != nil {
		return err
	}
	ratio := rate / b.rawRate
	b.add(row{Scenario: "distinct-CR ingest, 16 senders", Value: rate, Unit: "events/s", Baseline: b.rawRate, Ratio: ratio, Goal: "ratio >= 0.8", Pass: ratio >= 0.8})
	p50, p99 := percentile(lats, 0.5), percentile(lats, 0.99)
	b.add(row{Scenario: "distinct-CR ingest ack p50", Value: ms(p50), Unit: "ms", Goal: "-", Pass: true})
	b.add(row{Scenario: "distinct-CR ingest ack p99", Value: ms(p99), Unit: "ms", Baseline: ms(b.rawP99), Ratio: ms(p99) / ms(b.rawP99),
		Goal: "< 50 ms", Pass: p99 < 50*time.Millisecond})

	writes, bytesPer, msPer := meter.since(m0)
	if writes < int64(n) || intakeSrv.count < float64(n) {
		return fmt.Errorf("the intake made %d status writes (API server counted %.0f) for %d events, want at least %d", writes, intakeSrv.count, n, n)
	}
	intakeSrvMs := intakeSrv.sum / intakeSrv.count * 1000
	b.add(row{Scenario: "write cost: intake's write, request bytes", Value: bytesPer, Unit: "B", Goal: "-", Pass: true,
		Note: fmt.Sprintf("%d writes for %d events", writes, n)})
	b.add(row{Scenario: "write cost: intake's write, client time", Value: msPer, Unit: "ms", Goal: "-", Pass: true})
	if !paired {
		b.add(row{Scenario: "write cost: intake's write, API server time", Value: intakeSrvMs, Unit: "ms", Goal: "-", Pass: true})
		return nil
	}
	for i, ft := range b.rawObjs[:n] {
		if ft.Status.Loss == nil || fmt.Sprintf(`{"status":{"loss":%g}}`, *ft.Status.Loss) != string(minimalPatch(i, 1)) {
			return fmt.Errorf("minimal patch of %s beside the intake missing", ft.Name)
		}
	}
	minRate, minP99 := float64(n)/minTime.Seconds(), percentile(minLats, 0.99)
	_, minBytes, minMs := b.minMeter.since(mm0)
	minSrvMs := minSrv.sum / minSrv.count * 1000
	b.add(row{Scenario: "minimal status patch beside the ingest, 16 writers", Value: minRate, Unit: "writes/s", Goal: "baseline", Pass: true,
		Note: "takes turns with the ingest in slices of 250"})
	b.add(row{Scenario: "minimal status patch p99 beside the ingest", Value: ms(minP99), Unit: "ms", Goal: "baseline", Pass: true})
	r := rate / minRate
	b.add(row{Scenario: "distinct-CR ingest vs minimal patch", Value: rate, Unit: "events/s", Baseline: minRate, Ratio: r, Goal: "ratio >= 0.9", Pass: r >= 0.9})
	pr := ms(p99) / ms(minP99)
	b.add(row{Scenario: "distinct-CR ingest ack p99 vs minimal patch p99", Value: ms(p99), Unit: "ms", Baseline: ms(minP99), Ratio: pr, Goal: "ratio <= 1.25", Pass: pr <= 1.25})
	b.add(row{Scenario: "write cost: intake's write / minimal patch, request bytes", Value: bytesPer, Unit: "B", Baseline: minBytes, Ratio: bytesPer / minBytes, Goal: "-", Pass: true})
	b.add(row{Scenario: "write cost: intake's write / minimal patch, client time", Value: msPer, Unit: "ms", Baseline: minMs, Ratio: msPer / minMs, Goal: "-", Pass: true})
	b.add(row{Scenario: "write cost: intake's write / minimal patch, API server time", Value: intakeSrvMs, Unit: "ms", Baseline: minSrvMs, Ratio: intakeSrvMs / minSrvMs, Goal: "-", Pass: true,
		Note: "apiserver_request_duration_seconds, status subresource, read around each slice"})
	b.add(row{Scenario: "write cost: intake's write / minimal patch, client time p99", Value: ms(meter.p99Since(m0)), Unit: "ms", Baseline: ms(b.minMeter.p99Since(mm0)),
		Ratio: ms(meter.p99Since(m0)) / ms(b.minMeter.p99Since(mm0)), Goal: "-", Pass: true})
	b.add(row{Scenario: "ack mean / minimal patch mean latency", Value: ms(mean(lats)), Unit: "ms", Baseline: ms(mean(minLats)), Ratio: ms(mean(lats)) / ms(mean(minLats)), Goal: "-", Pass: true})
	// CPU per event of each process while each side ran: on two shared
	// cores the endpoint's and the senders' CPU is taken from the API
	// server's.
	perEvent := func(d time.Duration) float64 { return ms(d) / float64(n) }
	for _, c := range []struct {
		what       string
		intake, mn time.Duration
	}{
		{"bench process (senders, endpoint, intake, informer)", intakeCPU.self, minCPU.self},
		{"kube-apiserver", intakeCPU.apiserver, minCPU.apiserver},
		{"etcd", intakeCPU.etcd, minCPU.etcd},
		{"all three", intakeCPU.self + intakeCPU.apiserver + intakeCPU.etcd, minCPU.self + minCPU.apiserver + minCPU.etcd},
	} {
		if c.mn <= 0 {
			continue
		}
		b.add(row{Scenario: "write cost: CPU per event / per minimal patch, " + c.what, Value: perEvent(c.intake), Unit: "ms", Baseline: perEvent(c.mn),
			Ratio: float64(c.intake) / float64(c.mn), Goal: "-", Pass: true, Note: "user+system time while each side's slices ran"})
	}
	b.minRate = minRate
	return nil
}

// checkDistinct verifies that every fine-tune d-i holds exactly the events
// d-i-1..d-i-upto, in order, and is at step upto: every acknowledged event's
// effect is present and nothing else is.
func (b *bench) checkDistinct(ctx context.Context, ns string, n int, upto int64) error {
	var list togetherv1.TogetherFineTuneList
	if err := b.k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	seen := 0
	for _, ft := range list.Items {
		if len(ft.Name) < 2 || ft.Name[:2] != "d-" {
			continue
		}
		seen++
		want := make([]string, 0, upto)
		for k := int64(1); k <= upto; k++ {
			want = append(want, fmt.Sprintf("%s-%d", ft.Name, k))
		}
		if ft.Status.Step != upto || !slices.Equal(ft.Status.ProcessedEvents, want) || ft.Status.Phase != togetherv1.FineTuneRunning {
			return fmt.Errorf("%s: step %d, phase %s, processed %v; want step %d, Running, %v",
				ft.Name, ft.Status.Step, ft.Status.Phase, ft.Status.ProcessedEvents, upto, want)
		}
	}
	if seen != n {
		return fmt.Errorf("found %d fine-tunes, want %d", seen, n)
	}
	return nil
}

// burst is a checkpoint storm: each of a few fine-tunes gets burstPerCR
// checkpoints from stormSenders concurrent deliveries (a storm is many
// deliveries in flight at once, as a sender retrying a backlog produces).
// Group commit merges what arrives during a write into the next one, so the
// rate can exceed the raw write rate; with one closed-loop sender per write
// slot it could not.
func (b *bench) burst(ctx context.Context, s *sender, path, ns string) error {
	crs, per := b.sz.burstCRs, b.sz.burstPerCR
	total := crs * per
	start := time.Now()
	// Event i goes to CR i%crs with step i/crs+1: every CR's steps arrive
	// roughly in order but from many senders at once.
	if err := parallel(total, b.sz.stormSenders, func(i int) error {
		cr, step := i%crs, int64(i/crs+1)
		code, _, err := s.post(ctx, path, checkpoint(fmt.Sprintf("burst-%d-%d", cr, step), fmt.Sprintf("burst-%d", cr), step))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("burst event answered %d", code)
		}
		return nil
	}); err != nil {
		return err
	}
	rate := float64(total) / time.Since(start).Seconds()
	for c := 0; c < crs; c++ {
		ft := &togetherv1.TogetherFineTune{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("burst-%d", c)}, ft); err != nil {
			return err
		}
		if ft.Status.Step != int64(per) {
			return fmt.Errorf("burst-%d ends at step %d, want the last checkpoint %d", c, ft.Status.Step, per)
		}
		cps := ft.Status.Checkpoints
		// A running job (no final step known) keeps a few more than
		// MaxCheckpoints; see lattice.CheckpointSlack.
		keep := togetherv1.MaxCheckpoints + lattice.CheckpointSlack
		if len(cps) != keep || cps[len(cps)-1].Step != int64(per) || cps[0].Step != int64(per-keep+1) {
			return fmt.Errorf("burst-%d keeps checkpoints %v, want the last %d", c, cps, keep)
		}
	}
	ratio := rate / b.rawRate
	b.add(row{Scenario: fmt.Sprintf("same-CR burst, %d CRs x %d checkpoints, %d senders", crs, per, b.sz.stormSenders), Value: rate, Unit: "events/s",
		Baseline: b.rawRate, Ratio: ratio, Goal: "ratio >= 3", Pass: ratio >= 3})
	if b.minRate > 0 {
		r := rate / b.minRate
		b.add(row{Scenario: "same-CR burst vs minimal patch", Value: rate, Unit: "events/s", Baseline: b.minRate, Ratio: r, Goal: "ratio >= 5", Pass: r >= 5})
	}
	return nil
}

// steady sends a second checkpoint to each distinct fine-tune at a fixed
// rate, open loop: a slow answer does not slow the next send, so queueing
// shows up in the latency instead of hiding in a lower rate. Its baseline is
// plain status updates of the raw objects at the same rate; the two take
// turns in one-second slices, so that both meet the same API server, whose
// own stalls (etcd's fsync on a shared disk) would otherwise land in
// whichever happened to run at the time.
func (b *bench) steady(ctx context.Context, s *sender, path, ns string, n int) error {
	count := min(n, len(b.rawObjs), int(float64(b.sz.steadyRate)*b.sz.steadyFor.Seconds()))
	raw := make([]time.Duration, count)
	lats := make([]time.Duration, count)
	for from := 0; from < count; from += b.sz.steadyRate {
		to := min(from+b.sz.steadyRate, count)
		if err := openLoop(b.sz.steadyRate, from, to, raw, func(i int) error {
			ft := b.rawObjs[i]
			rawCheckpoint(ft, 2)
			return b.k8s.Status().Update(ctx, ft)
		}); err != nil {
			return fmt.Errorf("raw steady writes: %w", err)
		}
		if err := openLoop(b.sz.steadyRate, from, to, lats, func(i int) error {
			code, _, err := s.post(ctx, path, checkpoint(fmt.Sprintf("d-%d-2", i), fmt.Sprintf("d-%d", i), 2))
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("steady event %d answered %d", i, code)
			}
			return err
		}); err != nil {
			return err
		}
	}
	// The first count fine-tunes are at step 2, the rest still at 1.
	var list togetherv1.TogetherFineTuneList
	if err := b.k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, ft := range list.Items {
		var i int
		if _, err := fmt.Sscanf(ft.Name, "d-%d", &i); err != nil {
			continue
		}
		want := []string{ft.Name + "-1"}
		if i < count {
			want = append(want, ft.Name+"-2")
		}
		if ft.Status.Step != int64(len(want)) || !slices.Equal(ft.Status.ProcessedEvents, want) {
			return fmt.Errorf("%s after the steady run: step %d, processed %v; want %v", ft.Name, ft.Status.Step, ft.Status.ProcessedEvents, want)
		}
	}
	p50, p99, rawP99 := percentile(lats, 0.5), percentile(lats, 0.99), percentile(raw, 0.99)
	b.add(row{Scenario: fmt.Sprintf("raw status update p99 at %d writes/s", b.sz.steadyRate), Value: ms(rawP99), Unit: "ms", Goal: "baseline", Pass: true})
	b.add(row{Scenario: fmt.Sprintf("ack p50 at %d events/s", b.sz.steadyRate), Value: ms(p50), Unit: "ms", Goal: "-", Pass: true})
	b.add(row{Scenario: fmt.Sprintf("ack p99 at %d events/s", b.sz.steadyRate), Value: ms(p99), Unit: "ms", Baseline: ms(rawP99), Ratio: ms(p99) / ms(rawP99),
		Goal: "< 50 ms", Pass: p99 < 50*time.Millisecond})
	return nil
}
