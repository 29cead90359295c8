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
	connsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "together_webhook_connections_refused_total",
		Help: "Connections to the events endpoint closed on accept because their source address held --webhook-max-connections-per-source already.",
	})
	rejectedAPIRequests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "together_webhook_rejected_api_requests_total",
		Help: "API-server requests made while handling deliveries that were then refused (4xx, 429, 503) or answered as replays: what bad traffic costs the API server.",
	})
	replaysTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "together_webhook_replays_total",
		Help: "Verified deliveries whose webhook-id was already acknowledged (answered 200 without being applied again).",
	})
)

var lastEventWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "together_webhook_last_event_writes_total",
	Help: "Writes of a subscription's status.lastEventTime, by outcome: written, failed (logged; the next delivery tries again), dropped (too many subscriptions waiting) or gone (the subscription was deleted).",
}, []string{"outcome"})

func init() {
	metrics.Registry.MustRegister(budgetSpent, replaysTotal, connsRefused, rejectedAPIRequests, lastEventWrites)
}
