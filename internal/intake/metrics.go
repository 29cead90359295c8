package intake

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// EventsTotal counts events by type and outcome (applied, duplicate,
	// stale, ignored, unmatched, rejected, failed), whichever source they
	// came from.
	EventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "together_events_total",
		Help: "Events handled, by type, source (push or poll) and outcome.",
	}, []string{"type", "source", "outcome"})

	groupCommitSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "together_events_group_commit_size",
		Help:    "Events merged into one status write.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
)

func init() {
	metrics.Registry.MustRegister(EventsTotal, groupCommitSize)
}
