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

// Package observability holds what a platform team watches the operator
// with: the Prometheus alerting rules (with their runbooks), the
// ServiceMonitor that scrapes the metrics endpoint and the Grafana
// dashboard, all built as typed values and exported into the Helm chart by
// `make observability`. A test checks that every metric they query is one the
// operator registers, and that the exported files are fresh.
package observability

import (
	"fmt"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// RunbookBase is where each alert's runbook lives; the anchor is the alert's
// name in lower case (a heading in docs/runbooks.md).
const RunbookBase = "https://github.com/together-operator/together-operator/blob/main/docs/runbooks.md#"

// DeprecationWarningDays is how many days before a model's sunset date the
// rules warn about workloads still on it.
const DeprecationWarningDays = 14

func duration(d string) *monitoringv1.Duration {
	v := monitoringv1.Duration(d)
	return &v
}

func alert(name, severity, forDur, expr, summary, description string) monitoringv1.Rule {
	r := monitoringv1.Rule{
		Alert:  name,
		Expr:   intstr.FromString(strings.TrimSpace(expr)),
		Labels: map[string]string{"severity": severity},
		Annotations: map[string]string{
			"summary":     summary,
			"description": description,
			"runbook_url": RunbookBase + strings.ToLower(name),
		},
	}
	if forDur != "" {
		r.For = duration(forDur)
	}
	return r
}

// RuleSpec returns the operator's alerting rules. Gauges derived from status
// are exported by every replica, so rules on them aggregate with max;
// counters are per replica, so rules on them sum.
func RuleSpec() monitoringv1.PrometheusRuleSpec {
	return monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{
		{
			Name: "together-operator.events",
			Rules: []monitoringv1.Rule{
				alert("TogetherEventsRejectedSignatures", "warning", "10m", `
sum(rate(together_webhook_requests_total{code="401"}[5m])) > 0.1`,
					"The events endpoint is rejecting signed pushes",
					"{{ $value | humanize }} requests/s are answered 401 (bad or missing signature, or a stale timestamp): a sender has the wrong secret, or someone is probing the endpoint."),
				alert("TogetherEventsUnavailable", "critical", "5m", `
sum(rate(together_webhook_requests_total{code="503"}[5m]))
  / sum(rate(together_webhook_requests_total[5m])) > 0.05`,
					"The events endpoint cannot record events",
					"{{ $value | humanizePercentage }} of pushes are answered 503: their effect could not be written to the API server. Senders retry, but nothing moves until writes succeed."),
			},
		},
		{
			Name: "together-operator.api",
			Rules: []monitoringv1.Rule{
				alert("TogetherPollerFailing", "critical", "5m", `
time() - max(together_poller_last_success_timestamp_seconds) > 900`,
					"The poller has not completed a cycle for 15 minutes",
					"No poll cycle succeeded for {{ $value | humanizeDuration }}: resource status no longer follows Together. Check the leader's logs and together_api_requests_total by outcome."),
				alert("TogetherAPIUnauthorized", "critical", "", `
sum by (operation) (increase(together_api_requests_total{outcome="unauthorized"}[10m])) > 0`,
					"Together rejects the operator's API key",
					"Together answered 401 to {{ $labels.operation }} in the last 10 minutes: the API key is missing, revoked or wrong."),
			},
		},
		{
			Name: "together-operator.resources",
			Rules: []monitoringv1.Rule{
				alert("TogetherFineTuneStalled", "warning", "5m", `
max by (namespace, name, reason) (together_resource_stalled{kind="TogetherFineTune"}) == 1`,
					"Fine-tune {{ $labels.namespace }}/{{ $labels.name }} is Stalled",
					"The fine-tune stopped making progress ({{ $labels.reason }}) and needs a person: `kubectl describe tft -n {{ $labels.namespace }} {{ $labels.name }}` says what to do."),
				alert("TogetherBatchFailed", "warning", "", fmt.Sprintf(`
max by (namespace, name, reason) (together_resource_stalled{kind="TogetherBatch",reason=~"%s|%s"}) == 1`,
					togetherv1.ReasonBatchFailed, togetherv1.ReasonBatchExpired),
					"Batch {{ $labels.namespace }}/{{ $labels.name }} {{ $labels.reason }}",
					"Together did not finish the batch ({{ $labels.reason }}); its output will not arrive. `kubectl describe tbatch -n {{ $labels.namespace }} {{ $labels.name }}`."),
				alert("TogetherWorkloadsOnDeprecatedModel", "warning", "1h", fmt.Sprintf(`
max by (namespace, migration) (together_migration_workloads_pending) > 0
  and on (namespace, migration)
max by (namespace, migration) (together_migration_sunset_timestamp_seconds - time()) < %d * 86400`, DeprecationWarningDays),
					fmt.Sprintf("Workloads still on a model that sunsets within %d days", DeprecationWarningDays),
					"Migration {{ $labels.namespace }}/{{ $labels.migration }} has {{ $value }} workload fields on the old model and its sunset is less than "+fmt.Sprint(DeprecationWarningDays)+" days away: approve it, or fix what blocks it."),
				alert("TogetherWorkloadsAtRisk", "critical", "", `
max by (namespace, migration) (together_migration_workloads_at_risk) > 0`,
					"Workloads still on a model past its sunset date",
					"Migration {{ $labels.namespace }}/{{ $labels.migration }}: {{ $value }} workloads use a model that no longer serves; their requests fail."),
				alert("TogetherDeprecatedModelWithoutReplacement", "warning", "1h", `
max by (namespace, model) (together_deprecated_model_workloads) > 0`,
					"Workloads use a deprecated model with no known replacement",
					"{{ $value }} workloads in {{ $labels.namespace }} use {{ $labels.model }}, which Together marks deprecated, and no subscription names a replacement."),
			},
		},
	}}
}

// ServiceMonitorSpec scrapes the metrics Service over HTTPS with the
// Prometheus service account's token (the metrics endpoint authorizes it
// with a TokenReview and SubjectAccessReview: bind that account to the
// metrics-reader ClusterRole). The serving certificate is the manager's
// self-signed one, so it is not verified.
func ServiceMonitorSpec() monitoringv1.ServiceMonitorSpec {
	return monitoringv1.ServiceMonitorSpec{
		Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "together-operator"}},
		Endpoints: []monitoringv1.Endpoint{{
			Port:            "https",
			Scheme:          ptr(monitoringv1.SchemeHTTPS),
			Path:            "/metrics",
			BearerTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
			HTTPConfigWithProxyAndTLSFiles: monitoringv1.HTTPConfigWithProxyAndTLSFiles{
				HTTPConfigWithTLSFiles: monitoringv1.HTTPConfigWithTLSFiles{
					// The manager serves metrics with a self-signed certificate.
					TLSConfig: &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{InsecureSkipVerify: ptr(true)}},
				},
			},
		}},
	}
}

func ptr[T any](v T) *T { return &v }
