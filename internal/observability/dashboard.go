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
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DashboardUID is the dashboard's stable identifier, so that links to it
// survive a re-import.
const DashboardUID = "together-operator"

// datasource is the dashboard's Prometheus, chosen with the $datasource
// variable.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend).Datasource(datasource)
}

func series(title, description, unit string, w, h uint32, queries ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(description).Unit(unit).
		Datasource(datasource).Span(w).Height(h).FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).Placement(common.LegendPlacementBottom).ShowLegend(true).Calcs([]string{"lastNotNull", "max"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for _, q := range queries {
		p = p.WithTarget(q)
	}
	return p
}

// Dashboard builds the operator's Grafana dashboard. Its panels, row by
// row, are described in the README ("Alerts and the dashboard"). Every
// replica is scraped, so per-resource gauges are aggregated by resource
// (max) and counters summed.
func Dashboard() (dashboard.Dashboard, error) {
	ns := `namespace=~"$namespace"`
	b := dashboard.NewDashboardBuilder("Together operator").
		Uid(DashboardUID).
		Description("Events intake, Together API calls, fine-tune loss curves, batch tokens and model deprecations of the together-operator.").
		Tags([]string{"together-operator", "kubernetes"}).
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("namespace").Label("Namespace").
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(together_finetune_step, namespace)")}).
			Datasource(datasource).Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Multi(true).IncludeAll(true).AllValue(".*")).
		WithRow(dashboard.NewRowBuilder("Events intake")).
		WithPanel(series("Events by outcome", "Events applied, duplicate, stale, ignored, unmatched, rejected or failed, per second, from pushes and polls alike.", "ops", 12, 8,
			query(`sum by (source, outcome) (rate(together_events_total[$__rate_interval]))`, "{{source}} {{outcome}}"))).
		WithPanel(series("Events endpoint answers", "Requests to the events endpoint by HTTP status: 401 is a rejected signature, 503 an effect that could not be written.", "reqps", 12, 8,
			query(`sum by (code) (rate(together_webhook_requests_total[$__rate_interval]))`, "{{code}}"))).
		WithPanel(series("Acknowledgement latency", "Time from receiving a push to acknowledging it, after its effect is written: median and 99th percentile.", "s", 12, 8,
			query(`histogram_quantile(0.5, sum by (le) (rate(together_webhook_ack_seconds_bucket[$__rate_interval])))`, "p50"),
			query(`histogram_quantile(0.99, sum by (le) (rate(together_webhook_ack_seconds_bucket[$__rate_interval])))`, "p99"))).
		WithPanel(series("Group-commit size", "Events merged into one status write: above 1 means a storm on one resource cost fewer writes than events.", "short", 12, 8,
			query(`sum(rate(together_events_group_commit_size_sum[$__rate_interval])) / sum(rate(together_events_group_commit_size_count[$__rate_interval]))`, "mean"),
			query(`histogram_quantile(0.99, sum by (le) (rate(together_events_group_commit_size_bucket[$__rate_interval])))`, "p99"))).
		WithRow(dashboard.NewRowBuilder("Together API")).
		WithPanel(series("Together API calls by operation and outcome", "Every call the operator makes to Together, by client operation and outcome (success, unauthorized, rate_limited, server_error...).", "reqps", 16, 8,
			query(`sum by (operation, outcome) (rate(together_api_requests_total[$__rate_interval]))`, "{{operation}} {{outcome}}"))).
		WithPanel(stat.NewPanelBuilder().Title("Since the last successful poll").
			Description("Time since the leader's poller last completed a cycle without error; above 15 minutes the TogetherPollerFailing alert fires.").
			Unit("s").Datasource(datasource).Span(8).Height(8).GraphMode(common.BigValueGraphModeNone).
			WithTarget(query(`time() - max(together_poller_last_success_timestamp_seconds)`, "")).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))).
		WithRow(dashboard.NewRowBuilder("Fine-tunes")).
		WithPanel(series("Training loss per fine-tune", "Loss at the newest checkpoint of each fine-tune's current attempt: over time, its loss curve.", "none", 12, 9,
			query(`max by (namespace, name) (together_finetune_loss{`+ns+`})`, "{{namespace}}/{{name}}"))).
		WithPanel(series("Eval loss per fine-tune", "Evaluation loss Together reported for each finished model.", "none", 12, 9,
			query(`max by (namespace, name) (together_finetune_eval_loss{`+ns+`})`, "{{namespace}}/{{name}}"))).
		WithPanel(series("Training step per fine-tune", "Step of the newest checkpoint of each fine-tune's current attempt.", "none", 12, 8,
			query(`max by (namespace, name) (together_finetune_step{`+ns+`})`, "{{namespace}}/{{name}}"))).
		WithPanel(table.NewPanelBuilder().Title("Stalled resources").
			Description("Resources whose Stalled condition is True, with its reason: each needs a person (kubectl describe says what to do).").
			Datasource(datasource).Span(12).Height(8).
			WithTarget(query(`max by (kind, namespace, name, reason) (together_resource_stalled{`+ns+`})`, "").Instant().Format(prometheus.PromQueryFormatTable))).
		WithRow(dashboard.NewRowBuilder("Batches")).
		WithPanel(bargauge.NewPanelBuilder().Title("Batch tokens by namespace and model").
			Description("Tokens used by finished batches over the dashboard's time range, counted once per batch.").
			Unit("short").Datasource(datasource).Span(24).Height(8).
			WithTarget(query(`sum by (namespace, model) (increase(together_batch_tokens_total{`+ns+`}[$__range]))`, "{{namespace}} {{model}}").Instant()).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))).
		WithRow(dashboard.NewRowBuilder("Model deprecations")).
		WithPanel(series("Workloads at risk", "Workloads still on a model past its sunset date, per migration: their requests fail.", "short", 8, 8,
			query(`max by (namespace, migration) (together_migration_workloads_at_risk{`+ns+`})`, "{{namespace}}/{{migration}}"))).
		WithPanel(series("Workloads pending migration", "Workload fields each migration found on the old model and has not patched yet.", "short", 8, 8,
			query(`max by (namespace, migration) (together_migration_workloads_pending{`+ns+`})`, "{{namespace}}/{{migration}}"))).
		WithPanel(series("Days to sunset", "Days until each migration's old model stops serving.", "d", 8, 8,
			query(`max by (namespace, migration) (together_migration_sunset_timestamp_seconds{`+ns+`} - time()) / 86400`, "{{namespace}}/{{migration}}"))).
		WithPanel(series("Deprecated models in use without a replacement", "Workloads on a model Together marks deprecated, for which no subscription names a replacement.", "short", 12, 8,
			query(`max by (namespace, model) (together_deprecated_model_workloads{`+ns+`})`, "{{namespace}} {{model}}"))).
		WithPanel(series("Reconcile errors", "Reconciles that returned an error, per controller.", "ops", 12, 8,
			query(`sum by (controller) (rate(controller_runtime_reconcile_errors_total[$__rate_interval]))`, "{{controller}}")))
	return b.Build()
}

// DashboardJSON is the dashboard as Grafana imports it.
func DashboardJSON() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, fmt.Errorf("building the dashboard: %w", err)
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the dashboard: %w", err)
	}
	return append(out, '\n'), nil
}
