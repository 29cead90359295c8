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

// Package statusmetrics exports, at each scrape, gauges derived from the
// status of the together.ai resources in the manager's cache: which
// resources are Stalled and why, each fine-tune's eval loss, and each
// migration's pending workloads and sunset date. Deriving them when scraped,
// instead of setting gauges in the reconcilers, means a deleted resource's
// series disappear with it and every replica reports the same values.
package statusmetrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

var (
	stalledDesc = prometheus.NewDesc("together_resource_stalled",
		"1 for each together.ai resource whose Stalled condition is True, with the condition's reason.",
		[]string{"kind", "namespace", "name", "reason"}, nil)
	evalLossDesc = prometheus.NewDesc("together_finetune_eval_loss",
		"Evaluation loss Together reported for a fine-tune's finished model.",
		[]string{"namespace", "name"}, nil)
	pendingDesc = prometheus.NewDesc("together_migration_workloads_pending",
		"Workload fields a TogetherModelMigration found on the old model and has not patched yet (dry runs and manual approvals included).",
		[]string{"namespace", "migration"}, nil)
	sunsetDesc = prometheus.NewDesc("together_migration_sunset_timestamp_seconds",
		"Sunset date of a TogetherModelMigration's old model, as a Unix time (midnight UTC).",
		[]string{"namespace", "migration"}, nil)
)

// collector reads the cache through whichever reader the running manager
// set: it is registered once per process, while tests start many managers.
type collector struct {
	mu     sync.Mutex
	reader client.Reader
}

var global = &collector{}

func init() { metrics.Registry.MustRegister(global) }

// SetReader makes the collector read resources through r (the manager's
// cached client); nil stops it reporting.
func SetReader(r client.Reader) {
	global.mu.Lock()
	defer global.mu.Unlock()
	global.reader = r
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stalledDesc, evalLossDesc, pendingDesc, sunsetDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	r := c.reader
	c.mu.Unlock()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The lists are only read, so the cache's objects are not copied: a
	// scrape of a cluster with 10,000 fine-tunes would otherwise copy them
	// all, every scrape.

	stalled := func(kind string, meta metav1.Object, conds []metav1.Condition) {
		if cond := apimeta.FindStatusCondition(conds, togetherv1.StalledCondition); cond != nil && cond.Status == metav1.ConditionTrue {
			ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, 1, kind, meta.GetNamespace(), meta.GetName(), cond.Reason)
		}
	}
	var fts togetherv1.TogetherFineTuneList
	if err := r.List(ctx, &fts, client.UnsafeDisableDeepCopy); err == nil {
		for i := range fts.Items {
			ft := &fts.Items[i]
			stalled("TogetherFineTune", ft, ft.Status.Conditions)
			if ft.Status.EvalLoss != nil {
				ch <- prometheus.MustNewConstMetric(evalLossDesc, prometheus.GaugeValue, *ft.Status.EvalLoss, ft.Namespace, ft.Name)
			}
		}
	}
	var batches togetherv1.TogetherBatchList
	if err := r.List(ctx, &batches, client.UnsafeDisableDeepCopy); err == nil {
		for i := range batches.Items {
			stalled("TogetherBatch", &batches.Items[i], batches.Items[i].Status.Conditions)
		}
	}
	var subs togetherv1.TogetherWebhookSubscriptionList
	if err := r.List(ctx, &subs, client.UnsafeDisableDeepCopy); err == nil {
		for i := range subs.Items {
			stalled("TogetherWebhookSubscription", &subs.Items[i], subs.Items[i].Status.Conditions)
		}
	}
	var migs togetherv1.TogetherModelMigrationList
	if err := r.List(ctx, &migs, client.UnsafeDisableDeepCopy); err == nil {
		for i := range migs.Items {
			m := &migs.Items[i]
			stalled("TogetherModelMigration", m, m.Status.Conditions)
			pending := 0
			for _, t := range m.Status.Targets {
				if t.PatchedAt == nil {
					pending++
				}
			}
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending), m.Namespace, m.Name)
			if sunset, err := time.Parse(time.DateOnly, m.Spec.SunsetDate); err == nil {
				ch <- prometheus.MustNewConstMetric(sunsetDesc, prometheus.GaugeValue, float64(sunset.Unix()), m.Namespace, m.Name)
			}
		}
	}
}
