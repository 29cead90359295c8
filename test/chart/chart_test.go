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

package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/together-operator/together-operator/internal/observability"
	"github.com/together-operator/together-operator/internal/testenv"
)

// allOn turns on every optional object of the chart.
func allOn() map[string]any {
	return map[string]any{
		"events": map[string]any{
			"service": map[string]any{"type": "LoadBalancer", "loadBalancerSourceRanges": []any{"203.0.113.0/24"}},
			"tls": map[string]any{"enabled": true, "certManager": map[string]any{
				"enabled": true, "issuerRef": map[string]any{"name": "letsencrypt", "kind": "ClusterIssuer"},
			}},
			"ingress":   map[string]any{"enabled": true, "className": "nginx", "host": "events.example.com"},
			"httpRoute": map[string]any{"enabled": true, "parentRefs": []any{map[string]any{"name": "public", "namespace": "gateways"}}, "hostnames": []any{"events.example.com"}},
		},
		"networkPolicy": map[string]any{"enabled": true, "metricsFrom": []any{map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
		}}},
		"serviceMonitor": map[string]any{"enabled": true, "interval": "30s", "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"prometheusRule": map[string]any{"enabled": true},
		"dashboards":     map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "Together"}},
		"together":       map[string]any{"sharedAPIKeyNamespaces": []any{"team-a", "team-b"}},
	}
}

func TestChartLints(t *testing.T) {
	for name, vals := range map[string]map[string]any{"defaults": nil, "everything on": allOn()} {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(Dir(), vals, ReleaseNamespace)
			for _, m := range res.Messages {
				t.Log(m.Error())
			}
			if res.HighestSeverity >= support.WarningSev {
				t.Fatalf("helm lint found problems (see above)")
			}
		})
	}
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// helmOnly are the labels the chart adds for Helm's bookkeeping; they do not
// change what the objects do.
var helmOnly = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/name"}

// normalize removes what legitimately differs between the chart and the
// kustomize tree: Helm's labels, and the image (a release's choice, checked
// separately to be the same in both places of the Deployment).
func normalize(t *testing.T, u *unstructured.Unstructured) map[string]any {
	t.Helper()
	o := u.DeepCopy()
	strip := func(fields ...string) {
		labels, _, _ := unstructured.NestedStringMap(o.Object, fields...)
		for _, l := range helmOnly {
			delete(labels, l)
		}
		if len(labels) == 0 {
			unstructured.RemoveNestedField(o.Object, fields...)
		} else {
			_ = unstructured.SetNestedStringMap(o.Object, labels, fields...)
		}
	}
	strip("metadata", "labels")
	if o.GetKind() == "Deployment" {
		strip("spec", "template", "metadata", "labels")
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		c := &d.Spec.Template.Spec.Containers[0]
		for i := range c.Env {
			if c.Env[i].Name == "OPERATOR_IMAGE" {
				if c.Env[i].Value != c.Image {
					t.Errorf("%s: OPERATOR_IMAGE %q differs from the container's image %q: fetch Jobs would run another image", key(u), c.Env[i].Value, c.Image)
				}
				c.Env[i].Value = "IMAGE"
			}
		}
		c.Image = "IMAGE"
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&d)
		if err != nil {
			t.Fatal(err)
		}
		o.Object = m
		unstructured.RemoveNestedField(o.Object, "status")
		unstructured.RemoveNestedField(o.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(o.Object, "spec", "template", "metadata", "creationTimestamp")
	}
	return o.Object
}

func kustomizeBuild(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	bin := os.Getenv("KUSTOMIZE")
	if bin == "" {
		bin = filepath.Join(testenv.RepoRoot(), "bin", "kustomize")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kustomize not found at %s: run `make kustomize` (make test does this)", bin)
	}
	cmd := exec.Command(bin, "build", filepath.Join(testenv.RepoRoot(), "config", "default"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build config/default: %v\n%s", err, stderr.String())
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestChartDefaultsMatchConfigDefault renders the chart with its default
// values and compares each object with `kustomize build config/default`, so
// that a change to one (a flag, a permission, a probe, a CRD field) that is
// not made to the other fails here. Only the Namespace object is the
// kustomize tree's alone: Helm installs into a namespace it is given.
func TestChartDefaultsMatchConfigDefault(t *testing.T) {
	chartObjs, err := Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*unstructured.Unstructured{}
	for _, u := range kustomizeBuild(t) {
		if u.GetKind() == "Namespace" {
			continue
		}
		want[key(u)] = u
	}
	got := map[string]*unstructured.Unstructured{}
	for _, u := range chartObjs {
		if _, dup := got[key(u)]; dup {
			t.Errorf("the chart renders %s twice", key(u))
		}
		got[key(u)] = u
	}
	if len(want) < 15 {
		t.Fatalf("kustomize rendered only %d objects", len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("config/default has %s; the chart does not render it", k)
			continue
		}
		if d := cmp.Diff(normalize(t, w), normalize(t, g)); d != "" {
			t.Errorf("%s differs between config/default (-) and the chart (+):\n%s", k, d)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s by default; config/default does not have it", k)
		}
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, nameSuffix string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && strings.HasSuffix(u.GetName(), nameSuffix) {
			return u
		}
	}
	t.Fatalf("the chart rendered no %s named *%s", kind, nameSuffix)
	return nil
}

// strictInto decodes u into a typed object and fails on any field the type
// does not know, so a misspelt field in a template is caught here instead
// of being pruned by the API server.
func strictInto(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s does not decode into its type: %v", key(u), err)
	}
}

// TestChartOptionalObjects renders every optional object and checks what
// each must do: typed monitoring objects that select the operator's metrics
// Service, the dashboard in a sidecar-labelled ConfigMap, the events
// endpoint's TLS wired from the certificate's Secret to the manager's flag,
// and exposure of the events path only.
func TestChartOptionalObjects(t *testing.T) {
	objs, err := Render(allOn())
	if err != nil {
		t.Fatal(err)
	}

	var sm monitoringv1.ServiceMonitor
	strictInto(t, find(t, objs, "ServiceMonitor", "together-operator"), &sm)
	metricsSvc := find(t, objs, "Service", "-metrics")
	for k, v := range sm.Spec.Selector.MatchLabels {
		if metricsSvc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service does not carry", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "https" || sm.Spec.Endpoints[0].Interval != "30s" {
		t.Errorf("ServiceMonitor endpoints = %+v; want the https port every 30s", sm.Spec.Endpoints)
	}
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("serviceMonitor.labels were not applied: %v", sm.Labels)
	}

	var pr monitoringv1.PrometheusRule
	strictInto(t, find(t, objs, "PrometheusRule", "together-operator"), &pr)
	if d := cmp.Diff(observability.RuleSpec(), pr.Spec); d != "" {
		t.Errorf("the PrometheusRule differs from the rules built in internal/observability (run `make observability`):\n%s", d)
	}

	cm := find(t, objs, "ConfigMap", "-dashboards")
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "Together" {
		t.Errorf("dashboards ConfigMap labels %v, annotations %v: the Grafana sidecar would not pick it up as asked", cm.GetLabels(), cm.GetAnnotations())
	}
	wantDash, err := observability.DashboardJSON()
	if err != nil {
		t.Fatal(err)
	}
	gotDash, _, _ := unstructured.NestedString(cm.Object, "data", "together-operator.json")
	if gotDash != string(wantDash) {
		t.Errorf("the dashboards ConfigMap does not hold the dashboard built in internal/observability")
	}

	var dep appsv1.Deployment
	strictInto(t, find(t, objs, "Deployment", "-controller-manager"), &dep)
	c := dep.Spec.Template.Spec.Containers[0]
	certPath := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--events-cert-path="); ok {
			certPath = v
		}
	}
	if certPath == "" {
		t.Fatalf("events.tls.enabled but the manager has no --events-cert-path: %v", c.Args)
	}
	// The credentials policy reaches the manager as the flag it reads
	// (cmd/main.go); the defaults allow no namespace (checked against
	// config/default by TestChartDefaultsMatchConfigDefault).
	if !slices.Contains(c.Args, "--shared-api-key-namespaces=team-a,team-b") {
		t.Errorf("together.sharedAPIKeyNamespaces did not reach the manager as --shared-api-key-namespaces: %v", c.Args)
	}
	var mountedSecret string
	for _, m := range c.VolumeMounts {
		if m.MountPath == certPath {
			for _, v := range dep.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					mountedSecret = v.Secret.SecretName
				}
			}
		}
	}
	cert := find(t, objs, "Certificate", "-events")
	certSecret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	if mountedSecret == "" || mountedSecret != certSecret {
		t.Errorf("the manager reads its certificate from Secret %q at %s, but the Certificate writes %q", mountedSecret, certPath, certSecret)
	}

	var svc corev1.Service
	strictInto(t, find(t, objs, "Service", "-events"), &svc)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.LoadBalancerSourceRanges) != 1 {
		t.Errorf("events Service type %s, ranges %v", svc.Spec.Type, svc.Spec.LoadBalancerSourceRanges)
	}

	ing := find(t, objs, "Ingress", "-events")
	paths, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
	if len(paths) != 1 || !strings.Contains(mustJSON(t, paths), `"path":"/webhooks/together/"`) {
		t.Errorf("the Ingress must route only /webhooks/together/: %s", mustJSON(t, paths))
	}
	route := find(t, objs, "HTTPRoute", "-events")
	if r := mustJSON(t, route.Object["spec"]); !strings.Contains(r, `"value":"/webhooks/together/"`) || !strings.Contains(r, `"name":"`+svc.Name+`"`) {
		t.Errorf("the HTTPRoute must send only /webhooks/together/ to the events Service: %s", r)
	}
	find(t, objs, "NetworkPolicy", "-controller-manager")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChartRefusesIncompleteExposure fails the render, with a message naming
// the value, when TLS from cert-manager has no issuer or an HTTPRoute has no
// Gateway.
func TestChartRefusesIncompleteExposure(t *testing.T) {
	for name, c := range map[string]struct {
		vals map[string]any
		want string
	}{
		"cert-manager without issuer": {map[string]any{"events": map[string]any{"tls": map[string]any{"enabled": true, "certManager": map[string]any{"enabled": true}}}}, "events.tls.certManager.issuerRef.name"},
		"HTTPRoute without Gateway":   {map[string]any{"events": map[string]any{"httpRoute": map[string]any{"enabled": true}}}, "events.httpRoute.parentRefs"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Render(c.vals)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("render error = %v; want one naming %s", err, c.want)
			}
		})
	}
}
