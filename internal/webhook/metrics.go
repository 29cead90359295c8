package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "together_webhook_requests_total",
		Help: "Requests to the events endpoint, by HTTP status code.",
	}, []string{"code"})

	ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "together_webhook_ack_seconds",
		Help:    "Time from receiving a push to acknowledging it (after its effect is written).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, ackLatency)
}

var (
	budgetSpent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "together_webhook_budget_exhausted_total",
		Help: "Requests answered 503 because the body bytes in flight reached --webhook-max-inflight-bytes.",
	})
	replaysTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "together_webhook_replays_total",
		Help: "Verified deliveries whose webhook-id was already acknowledged (answered 200 without being applied again).",
	})
)

func init() {
	metrics.Registry.MustRegister(budgetSpent, replaysTotal)
}
