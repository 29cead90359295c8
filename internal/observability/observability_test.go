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

package observability

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	// The operator's wiring imports every package that registers a metric,
	// as the manager binary does.
	_ "github.com/together-operator/together-operator/internal/operator"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
)

// registered tells whether the operator's registry (the one its /metrics
// endpoint serves) holds a metric of that name: registering a probe of the
// same name succeeds only when none is there.
func registered(t *testing.T, name string) bool {
	t.Helper()
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
	if err := metrics.Registry.Register(probe); err != nil {
		return true
	}
	metrics.Registry.Unregister(probe)
	return false
}

var metricName = regexp.MustCompile(`\b(?:together|controller_runtime|workqueue)_[a-z0-9_]+\b`)

// queriedMetrics returns every metric name the exported rules and dashboard
// mention, with a histogram's _bucket, _sum and _count series named by the
// histogram.
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, content := range files {
		for _, m := range metricName.FindAllString(string(content), -1) {
			seen[m] = true
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func TestEveryQueriedMetricIsRegistered(t *testing.T) {
	// The Together client registers its counter when the manager creates it.
	if _, err := together.New(together.Options{BaseURL: "http://127.0.0.1:1/v1"}); err != nil {
		t.Fatal(err)
	}
	if registered(t, "together_no_such_metric") {
		t.Fatal("the probe reports an unregistered metric as registered; the check below would prove nothing")
	}
	names := queriedMetrics(t)
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in the rules and dashboard: %v", len(names), names)
	}
	for _, name := range names {
		if registered(t, name) {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if base != name && registered(t, base) {
			continue
		}
		t.Errorf("the rules or dashboard query %s, which the operator does not register", name)
	}
}

// TestDashboardCoversTheIssue checks that each panel a platform team asked
// for is there, by the metric it must query.
func TestDashboardCoversTheIssue(t *testing.T) {
	dash, err := DashboardJSON()
	if err != nil {
		t.Fatal(err)
	}
	for what, metric := range map[string]string{
		"events by outcome":                       "together_events_total",
		"ack latency":                             "together_webhook_ack_seconds_bucket",
		"group-commit size":                       "together_events_group_commit_size",
		"Together API calls by operation":         "together_api_requests_total",
		"per fine-tune loss":                      "together_finetune_loss",
		"per fine-tune eval loss":                 "together_finetune_eval_loss",
		"batch tokens by namespace and model":     "together_batch_tokens_total",
		"workloads at risk":                       "together_migration_workloads_at_risk",
		"workloads pending before their sunset":   "together_migration_workloads_pending",
		"rejected signatures (answers by status)": "together_webhook_requests_total",
	} {
		if !bytes.Contains(dash, []byte(metric)) {
			t.Errorf("the dashboard has no panel for %s (metric %s)", what, metric)
		}
	}
}

func TestEveryRuleHasARunbook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			headings[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	alerts := 0
	for _, g := range RuleSpec().Groups {
		for _, r := range g.Rules {
			alerts++
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], RunbookBase)
			if !ok || !headings[anchor] {
				t.Errorf("alert %s: runbook_url %q has no section in docs/runbooks.md", r.Alert, r.Annotations["runbook_url"])
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s needs a severity, a summary and a description", r.Alert)
			}
			if strings.Contains(r.Annotations["summary"], "%!") || strings.Contains(r.Annotations["description"], "%!") {
				t.Errorf("alert %s has a badly formatted annotation", r.Alert)
			}
		}
	}
	if alerts < 7 {
		t.Fatalf("only %d alerts", alerts)
	}
}

// TestExportedFilesAreFresh fails when the files in the chart differ from
// what the code builds: run `make observability`.
func TestExportedFilesAreFresh(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), path))
		if err != nil {
			t.Errorf("%s: %v (run `make observability`)", path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make observability` and commit the result", path)
		}
	}
}
