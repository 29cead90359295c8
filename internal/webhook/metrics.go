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
