// Package poller turns the state of the real Together API into events. The
// public API pushes nothing today, so this is what makes the operator work
// against it: every cycle it reads the list endpoints (one call each,
// whatever the number of jobs), synthesizes the events the state implies with
// deterministic IDs, and hands them to the same apply step as pushed events.
// A pushed and a polled event for the same transition converge to one effect.
package poller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/together-operator/together-operator/internal/together"

	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
)

// API is the part of the Together client the poller reads.
type API interface {
	ListFineTunes(ctx context.Context) ([]together.FineTune, error)
	ListFineTuneEvents(ctx context.Context, id string) ([]together.FineTuneEvent, error)
	GetFineTuneMetrics(ctx context.Context, id string) (*together.FineTuneMetrics, error)
	ListBatches(ctx context.Context) ([]together.Batch, error)
	ListModels(ctx context.Context) ([]together.Model, error)
}

// Poller reads the Together API on an adaptive interval. It runs only on the
// leader: one reader is enough, and the apply step is safe either way.
type Poller struct {
	Client client.Client
	// API reads Together when Accounts is nil, and the model catalogue.
	API API
	// Accounts, when set, reads each namespace's resources with that
	// namespace's own account, one list call per account and cycle.
	Accounts Accounts
	Applier  *intake.Applier
	Recorder events.EventRecorder
	// Interval is the cycle while work is moving (default 30s).
	Interval time.Duration
	// IdleInterval is the cycle when the previous one changed nothing
	// (default 4 × Interval).
	IdleInterval time.Duration
	// ModelsInterval is how often the model catalogue is read for
	// deprecations (default 1h).
	ModelsInterval time.Duration
	Now            func() time.Time

	mu         sync.Mutex
	seen       map[string]seenJob // job ID → updated_at and status last read events for
	lastPolled map[types.NamespacedName]time.Time
	lastModels time.Time
	warned     map[string]bool // namespace/model → warned about at-risk workloads
}

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
// the next; they never stop the manager.
func (p *Poller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("poller")
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		stats, err := p.PollOnce(ctx)
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

// PollOnce runs one cycle: fine-tunes, batches, and (when due) the models
// catalogue.
func (p *Poller) PollOnce(ctx context.Context) (Stats, error) {
	var s Stats
	var errs []error
	if err := p.pollFineTunes(ctx, &s); err != nil {
		errs = append(errs, err)
	}
	if err := p.pollBatches(ctx, &s); err != nil {
		errs = append(errs, err)
	}
	if p.modelsDue() {
		if err := p.pollModels(ctx, &s); err != nil {
			errs = append(errs, err)
		}
	}
	cycleCalls.Observe(float64(s.APICalls))
	if len(errs) > 0 {
		return s, fmt.Errorf("poll cycle: %v", errs)
	}
	return s, nil
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// due reports whether a resource's own poll interval has passed.
func (p *Poller) due(nn types.NamespacedName, interval time.Duration) bool {
	if interval <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastPolled == nil {
		p.lastPolled = map[types.NamespacedName]time.Time{}
	}
	now := p.now()
	if last, ok := p.lastPolled[nn]; ok && now.Sub(last) < interval {
		return false
	}
	p.lastPolled[nn] = now
	return true
}

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
