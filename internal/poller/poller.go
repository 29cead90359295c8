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

// Package poller turns the state of the real Together API into events. The
// public API pushes nothing today, so this is what makes the operator work
// against it: every cycle it reads the list endpoints (one call each,
// whatever the number of jobs), synthesizes the events the state implies with
// deterministic IDs, and hands them to the same apply step as pushed events.
// A pushed and a polled event for the same transition converge to one effect.
package poller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/together"
)

// Event reasons the poller records on resources (defined in api/).
const (
	ReasonPollFailed    = togetherv1.ReasonPollFailed
	ReasonPollRecovered = togetherv1.ReasonPollRecovered
)

// API is the part of the Together client the poller reads.
type API interface {
	ListFineTunesReport(ctx context.Context) ([]together.FineTune, []together.MalformedItem, error)
	ListFineTuneEvents(ctx context.Context, id string) ([]together.FineTuneEvent, error)
	ListFineTuneMetrics(ctx context.Context, id string, q together.MetricsQuery) (*together.FineTuneMetrics, error)
	ListBatchesReport(ctx context.Context) ([]together.Batch, []together.MalformedItem, error)
	ListSupportedModels(ctx context.Context) ([]together.SupportedModel, error)
}

// Poller reads the Together API on an adaptive interval. It runs only on the
// leader: one reader is enough, and the apply step is safe either way.
type Poller struct {
	Client client.Client
	// API reads Together when Accounts is nil, and the model catalogue.
	API API
	// Accounts, when set, reads each resource with its own account (the
	// Secret it names, or its namespace's), one list call per account and
	// cycle.
	Accounts Accounts
	Applier  *intake.Applier
	Recorder events.EventRecorder
	// Interval is the cycle while work is moving (default 30s).
	Interval time.Duration
	// IdleInterval is the cycle when the previous one changed nothing
	// (default 4 × Interval).
	IdleInterval time.Duration
	// ModelsInterval is how often the model catalogue is read for
	// deprecations (default 1h). The scan runs in its own goroutine, so
	// it never delays fine-tune and batch polling.
	ModelsInterval time.Duration
	Now            func() time.Time

	mu sync.Mutex
	// seen maps a job ID to the fingerprint of the state last applied;
	// entries of jobs no resource follows any more are pruned each cycle.
	seen map[string]string
	// lastPolled and failing are keyed by resource (kind/namespace/name),
	// pruned the same way.
	lastPolled map[resourceKey]time.Time
	failing    map[resourceKey]string
	lastModels time.Time
	warned     map[string]bool // namespace/model → warned about at-risk workloads
}

// resourceKey names a resource of one kind.
type resourceKey struct {
	kind string
	types.NamespacedName
}

const (
	kindFineTune = "finetune"
	kindBatch    = "batch"
)

// Stats describes one cycle, for logs, tests and the benchmark.
type Stats struct {
	APICalls int
	Events   int
	// ShortestOverride is the shortest spec.pollInterval among resources
	// still moving, zero when none sets one.
	ShortestOverride time.Duration
	Applied          int
}

var (
	cycleCalls = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "together_poller_api_calls_per_cycle",
		Help:    "Together API calls made by one poll cycle.",
		Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128},
	})
	deprecatedInUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "together_deprecated_model_workloads",
		Help: "Workloads using a model the catalogue marks deprecated, for which no replacement is known.",
	}, []string{"namespace", "model"})
	// lastSuccess lets an alert tell a poller that keeps failing (or a
	// Together API that keeps refusing it) from one that is merely idle.
	lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "together_poller_last_success_timestamp_seconds",
		Help: "Unix time at which the poller last completed a cycle without error (0 on replicas that are not the leader).",
	})
)

func init() { metrics.Registry.MustRegister(cycleCalls, deprecatedInUse, lastSuccess) }

// NeedLeaderElection is true: only the leader polls.
func (p *Poller) NeedLeaderElection() bool { return true }

// Start polls until ctx ends. Errors of one cycle are logged and retried on
// the next; they never stop the manager. The deprecation scan runs beside
// the cycle in its own goroutine.
func (p *Poller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("poller")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.runModels(ctx, logger)
	}()
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		stats, err := p.PollJobs(ctx)
		if err != nil {
			logger.Error(err, "poll cycle failed; retrying next cycle")
		} else {
			lastSuccess.SetToCurrentTime()
		}
		interval := p.nextInterval(stats)
		logger.V(1).Info("poll cycle", "apiCalls", stats.APICalls, "events", stats.Events, "applied", stats.Applied, "next", interval)
		timer.Reset(interval)
	}
}

// runModels reads the catalogue every ModelsInterval. A failed scan is
// retried after a shorter wait (a minute, or the interval if shorter), so
// that one failure does not leave deprecations unseen for an hour.
func (p *Poller) runModels(ctx context.Context, logger logr.Logger) {
	every := p.modelsInterval()
	retry := min(time.Minute, every)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var s Stats
		next := every
		if err := p.pollModels(ctx, &s); err != nil {
			logger.Error(err, "deprecation scan failed; retrying", "in", retry)
			next = retry
		}
		timer.Reset(next)
	}
}

func (p *Poller) modelsInterval() time.Duration {
	if p.ModelsInterval > 0 {
		return p.ModelsInterval
	}
	return time.Hour
}

func (p *Poller) interval() time.Duration {
	if p.Interval > 0 {
		return p.Interval
	}
	return 30 * time.Second
}

// nextInterval is the moving interval while events were applied, the idle
// one otherwise, and never longer than the shortest per-resource override.
func (p *Poller) nextInterval(s Stats) time.Duration {
	next := p.interval()
	if s.Applied == 0 {
		next = p.IdleInterval
		if next == 0 {
			next = 4 * p.interval()
		}
	}
	if s.ShortestOverride > 0 && s.ShortestOverride < next {
		next = s.ShortestOverride
	}
	return next
}

// noteOverride records a resource's own poll interval for nextInterval.
func (s *Stats) noteOverride(d time.Duration) {
	if d > 0 && (s.ShortestOverride == 0 || d < s.ShortestOverride) {
		s.ShortestOverride = d
	}
}

// PollJobs runs one cycle of fine-tunes and batches. A failure in one does
// not stop the other.
func (p *Poller) PollJobs(ctx context.Context) (Stats, error) {
	var s Stats
	errFT := p.pollFineTunes(ctx, &s)
	errB := p.pollBatches(ctx, &s)
	cycleCalls.Observe(float64(s.APICalls))
	if err := errors.Join(errFT, errB); err != nil {
		return s, fmt.Errorf("poll cycle: %w", err)
	}
	return s, nil
}

// PollOnce runs one cycle and, when due, the deprecation scan, in line: for
// tests and the benchmark, which want one call to do everything.
func (p *Poller) PollOnce(ctx context.Context) (Stats, error) {
	s, err := p.PollJobs(ctx)
	if p.modelsDue() {
		if merr := p.pollModels(ctx, &s); merr != nil {
			err = errors.Join(err, merr)
		}
	}
	return s, err
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// due reports whether a resource's own poll interval has passed.
func (p *Poller) due(nn types.NamespacedName, interval time.Duration) bool {
	return p.dueKey(resourceKey{kindFineTune, nn}, interval)
}

func (p *Poller) dueKey(k resourceKey, interval time.Duration) bool {
	if interval <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastPolled == nil {
		p.lastPolled = map[resourceKey]time.Time{}
	}
	now := p.now()
	if last, ok := p.lastPolled[k]; ok && now.Sub(last) < interval {
		return false
	}
	p.lastPolled[k] = now
	return true
}

// prune forgets jobs no live resource of this kind follows and resources of
// this kind that are gone or finished, so the poller's memory follows the
// cluster instead of growing with every job it ever saw.
func (p *Poller) prune(kind string, liveJobs map[string]bool, liveKeys map[types.NamespacedName]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kind == kindFineTune {
		for id := range p.seen {
			if !liveJobs[id] {
				delete(p.seen, id)
			}
		}
	}
	for k := range p.lastPolled {
		if k.kind == kind && !liveKeys[k.NamespacedName] {
			delete(p.lastPolled, k)
		}
	}
	for k := range p.failing {
		if k.kind == kind && !liveKeys[k.NamespacedName] {
			delete(p.failing, k)
		}
	}
}

// MemoryEntries reports how many entries the poller's per-job and
// per-resource maps hold, so a test can see that they shrink.
func (p *Poller) MemoryEntries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen) + len(p.lastPolled) + len(p.failing)
}

// reportFailure makes a poll failure visible on the resource it concerns:
// one Warning Event per distinct message (not one per cycle).
func (p *Poller) reportFailure(obj client.Object, err error) {
	k := keyOf(obj)
	msg := err.Error()
	p.mu.Lock()
	if p.failing == nil {
		p.failing = map[resourceKey]string{}
	}
	same := p.failing[k] == msg
	p.failing[k] = msg
	p.mu.Unlock()
	if same || p.Recorder == nil {
		return
	}
	hint := ""
	if together.IsUnauthorized(err) {
		hint = " Together rejected the API key: replace it where the manager reads it (--api-key-secret or TOGETHER_API_KEY)."
	}
	p.Recorder.Eventf(obj, nil, togetherv1.EventTypeWarning, ReasonPollFailed, "Poll",
		"Reading this job's state from Together failed; retrying every cycle: %s.%s", strings.TrimSuffix(msg, "."), hint)
}

// reportRecovered clears a failure and says so once.
func (p *Poller) reportRecovered(obj client.Object) {
	k := keyOf(obj)
	p.mu.Lock()
	_, was := p.failing[k]
	delete(p.failing, k)
	p.mu.Unlock()
	if was && p.Recorder != nil {
		p.Recorder.Eventf(obj, nil, togetherv1.EventTypeNormal, ReasonPollRecovered, "Poll", "Reading this job's state from Together works again.")
	}
}

func keyOf(obj client.Object) resourceKey {
	kind := kindBatch
	if _, ok := obj.(*togetherv1.TogetherFineTune); ok {
		kind = kindFineTune
	}
	return resourceKey{kind, client.ObjectKeyFromObject(obj)}
}

// apply hands evs to the apply step in order and stops at the first failure
// for this resource (its later events would build on the lost one); the
// caller moves on to the next resource.
func (p *Poller) apply(ctx context.Context, s *Stats, kind string, nn types.NamespacedName, evs []event.Event, logger logr.Logger) error {
	for _, ev := range evs {
		s.Events++
		res := p.Applier.ApplyTo(ctx, kind, nn, ev)
		intake.EventsTotal.WithLabelValues(string(ev.Type), "poll", string(res.Outcome)).Inc()
		if res.Outcome == lattice.Failed {
			return fmt.Errorf("applying %s to %s: %w", ev.ID, nn, res.Err)
		}
		if res.Outcome == lattice.Applied {
			s.Applied++
			logger.V(1).Info("applied polled event", "event", ev.ID, "object", nn.String())
		}
	}
	return nil
}
