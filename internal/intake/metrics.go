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
