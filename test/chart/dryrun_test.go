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
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/together-operator/together-operator/internal/testenv"
)

// needCRDsOfOthers are kinds whose CRDs belong to other projects
// (prometheus-operator, cert-manager, Gateway API) and are not installed in
// the test's API server; TestChartOptionalObjects decodes them strictly into
// their Go types instead.
var needCRDsOfOthers = map[string]bool{"ServiceMonitor": true, "PrometheusRule": true, "Certificate": true, "HTTPRoute": true}

// TestChartAppliesWithServerSideDryRun applies what `helm template` renders
// — with the defaults, and with every optional object whose kind the API
// server knows — to a real API server with a server-side dry run, so the
// API server's own validation (schemas, CRD structural rules, RBAC objects)
// judges the chart.
func TestChartAppliesWithServerSideDryRun(t *testing.T) {
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the API server (KUBEBUILDER_ASSETS, `make envtest`): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ReleaseNamespace}}); err != nil {
		t.Fatal(err)
	}
	apply := func(u *unstructured.Unstructured) error {
		return c.Patch(ctx, u.DeepCopy(), client.Apply, client.DryRunAll, client.FieldOwner("helm-template-test"), client.ForceOwnership)
	}

	builtIn := allOn()
	events := builtIn["events"].(map[string]any)
	events["tls"] = map[string]any{"enabled": true, "secretName": "events-tls-by-hand"}
	delete(events, "httpRoute")
	for name, vals := range map[string]map[string]any{"defaults": nil, "optional objects": builtIn} {
		t.Run(name, func(t *testing.T) {
			objs, err := Render(vals)
			if err != nil {
				t.Fatal(err)
			}
			applied := 0
			for _, u := range objs {
				if needCRDsOfOthers[u.GetKind()] {
					continue
				}
				if err := apply(u); err != nil {
					t.Errorf("server-side dry run of %s: %v", key(u), err)
				}
				applied++
			}
			if applied < 15 {
				t.Fatalf("only %d objects applied", applied)
			}
		})
	}

	// The dry run is a real judge: an object with a field its schema does
	// not have is refused.
	objs, err := Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		bad := u.DeepCopy()
		containers, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
		containers[0].(map[string]any)["imagePulPolicy"] = "Always"
		_ = unstructured.SetNestedSlice(bad.Object, containers, "spec", "template", "spec", "containers")
		if err := apply(bad); err == nil || !strings.Contains(err.Error(), "imagePulPolicy") {
			t.Errorf("a Deployment with a misspelt field was not refused by the dry run (err = %v)", err)
		}
	}
}
