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

package together_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// v2Fixtures are the v2 golden answers, each written field by field from the
// type it names (every field of the type, so that a strict decode fails
// when the client lacks one).
var v2Fixtures = []struct {
	file, source string
	into         func() any
}{
	{"v2_whoami.json", "together-go@862b8ae together.go WhoamiResponse", func() any { return &together.Whoami{} }},
	{"v2_endpoint.json", "together-go@862b8ae betaendpoint.go Endpoint, EndpointDeploymentSummary, DeploymentAutoscaling; together-typescript@5d7f323 src/resources/beta/endpoints/endpoints.ts Endpoint", func() any { return &together.V2Endpoint{} }},
	{"v2_endpoint_list.json", "together-go@862b8ae packages/pagination/pagination.go CursorPagination[Endpoint]; together-typescript@5d7f323 src/core/pagination.ts", func() any {
		return &struct {
			Data       []together.V2Endpoint `json:"data"`
			NextCursor string                `json:"next_cursor"`
		}{}
	}},
	{"v2_deployment.json", "together-go@862b8ae betaendpoint.go EndpointDeployment, DeploymentStatus, EndpointDeploymentPlacementUnion, EndpointDeploymentRuntimeInfo", func() any { return &together.V2Deployment{} }},
	{"v2_config_list.json", "together-go@862b8ae betamodelconfig.go Config, ConfigCertification, ConfigSelector (CursorPagination)", func() any {
		return &struct {
			Data       []together.V2Config `json:"data"`
			NextCursor string              `json:"next_cursor"`
		}{}
	}},
}

func v2Golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v2DecodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// TestV2GoldenDecodeStrict decodes every v2 fixture with the client's types,
// refusing unknown keys: a field the published type has and the client
// lacks fails here.
func TestV2GoldenDecodeStrict(t *testing.T) {
	for _, f := range v2Fixtures {
		t.Run(f.file, func(t *testing.T) {
			v := f.into()
			if err := v2DecodeStrict(v2Golden(t, f.file), v); err != nil {
				t.Fatalf("%s (from %s): %v", f.file, f.source, err)
			}
		})
	}
	var e together.V2Endpoint
	_ = v2DecodeStrict(v2Golden(t, "v2_endpoint.json"), &e)
	if e.Name != "acme/support-bot" || e.BareName() != "support-bot" || e.Deployments[0].State != together.DeploymentReady ||
		e.Deployments[0].Autoscaling.ScalingMetrics[0].Target != 8 {
		t.Errorf("v2_endpoint.json decoded to %+v", e)
	}
	if w, ok := e.Weight("dep_abc123"); !ok || w != 1 {
		t.Errorf("Weight(dep_abc123) = %v, %v", w, ok)
	}
	var d together.V2Deployment
	_ = v2DecodeStrict(v2Golden(t, "v2_deployment.json"), &d)
	if d.Status.State != together.DeploymentProvisioning || d.Placement == nil || d.Placement.Inline.Regions[0] != "us-central-1" || d.BareName() != "live" {
		t.Errorf("v2_deployment.json decoded to %+v", d)
	}
	var cl struct {
		Data []together.V2Config `json:"data"`
	}
	_ = v2DecodeStrict(v2Golden(t, "v2_config_list.json"), &cl)
	c := cl.Data[0]
	if c.ResourceName() != "projects/proj_platform/configs/cr_abc123" || c.Selector(together.SelectorAcceleratorType) != "nvidia-h100-80gb" || c.Selector(together.SelectorAcceleratorCount) != "1" {
		t.Errorf("v2_config_list.json decoded to %+v", c)
	}
	// A key the client does not know is refused: the decode is strict.
	if err := v2DecodeStrict([]byte(`{"id":"ep_1","surprise":true}`), &together.V2Endpoint{}); err == nil {
		t.Error("an unknown key decoded without error")
	}
}

func v2Raw(t *testing.T, method, u string, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
	}
	return b
}

// completedFineTune runs a LoRA fine-tune on the simulator to completion.
func completedFineTune(t *testing.T, sim *togethersim.Server, c *together.Client) *together.FineTune {
	t.Helper()
	ctx := context.Background()
	f := upload(t, c, "train.jsonl", together.FilePurposeFineTune, `{"text":"hi"}`+"\n")
	ft, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID, Suffix: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	var job *together.FineTune
	advanceUntil(t, sim, func() bool { job, _ = c.GetFineTune(ctx, ft.ID); return job.Status.Terminal() })
	if job.ModelObjectID == "" || job.ModelObjectRevisionID == "" || job.AdapterObjectID == "" {
		t.Fatalf("completed LoRA job names no registry objects: %+v", job)
	}
	return job
}

// TestV2SimulatorMatchesGoldenShapes compares every v2 answer of the
// simulator with its fixture both ways: the simulator may not send a key
// the published type lacks, and must send every key the type requires; the
// client then decodes the answer strictly.
func TestV2SimulatorMatchesGoldenShapes(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	job := completedFineTune(t, sim, c)
	who, err := c.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	model := together.ModelResource(who.ProjectID, job.ModelObjectID, job.ModelObjectRevisionID)
	cfgs, err := c.ListV2Configs(ctx, who.ProjectID, together.ModelResource(who.ProjectID, job.ModelObjectID, ""))
	if err != nil || len(cfgs) == 0 {
		t.Fatalf("configs = %+v, %v", cfgs, err)
	}
	ep, err := c.CreateV2Endpoint(ctx, who.ProjectID, together.CreateV2EndpointRequest{Name: "golden"})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := c.CreateV2Deployment(ctx, who.ProjectID, ep.ID, together.CreateV2DeploymentRequest{
		Name: "live", Model: model, Config: cfgs[0].ResourceName(), Autoscaling: together.V2Autoscaling{MinReplicas: 1, MaxReplicas: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetV2TrafficSplit(ctx, who.ProjectID, ep.ID, ep.Etag, []together.TrafficSplitEntry{{DeploymentID: dep.ID, Weight: 1}}); err != nil {
		t.Fatal(err)
	}

	base := strings.TrimSuffix(sim.URL(), "/v1")
	proj := base + "/v2/projects/" + who.ProjectID
	cases := []struct {
		fixture, url string
		required     []string
	}{
		{"v2_whoami.json", sim.URL() + "/whoami", []string{"api_key_id", "organization_id", "organization_name", "project_id", "project_name", "project_slug"}},
		{"v2_endpoint.json", proj + "/endpoints/" + ep.ID, []string{"id", "createdAt", "deployments", "endpointType", "etag", "name", "projectId", "trafficSplit", "updatedAt", "visibility",
			"deployments.id", "deployments.autoscaling", "deployments.createdAt", "deployments.estimatedEffectiveTrafficShare", "deployments.model", "deployments.modelId", "deployments.name", "deployments.state", "deployments.trafficMode",
			"trafficSplit.deploymentId", "trafficSplit.weight"}},
		{"v2_endpoint_list.json", proj + "/endpoints", []string{"data", "next_cursor", "data.id", "data.name", "data.etag", "data.trafficSplit"}},
		{"v2_deployment.json", proj + "/endpoints/" + ep.ID + "/deployments/" + dep.ID, []string{"id", "autoscaling", "config", "configId", "createdAt", "endpointId", "etag", "hardware", "model", "modelId", "modelRevisionId",
			"name", "projectId", "status", "status.message", "status.state", "trafficMode", "updatedAt"}},
		{"v2_config_list.json", proj + "/configs?referenceModel=" + together.ModelResource(who.ProjectID, job.ModelObjectID, ""), []string{"data", "next_cursor", "data.id", "data.certifications", "data.projectId",
			"data.referenceModel", "data.referenceModelId", "data.selectors", "data.selectors.key", "data.selectors.value"}},
	}
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			want := jsonKeys(t, v2Golden(t, tc.fixture))
			body := v2Raw(t, http.MethodGet, tc.url, "")
			got := jsonKeys(t, body)
			for _, k := range got {
				if !slices.Contains(want, k) {
					t.Errorf("simulator sends %q, which the published type lacks", k)
				}
			}
			for _, k := range tc.required {
				if !slices.Contains(want, k) {
					t.Errorf("fixture lacks required %q", k)
				}
				if !slices.Contains(got, k) {
					t.Errorf("simulator omits required %q", k)
				}
			}
			for _, f := range v2Fixtures {
				if f.file == tc.fixture {
					if err := v2DecodeStrict(body, f.into()); err != nil {
						t.Errorf("client cannot decode the simulator's answer strictly: %v", err)
					}
				}
			}
		})
	}
}

// TestV2Lifecycle walks an endpoint and deployment through the client
// against the simulator: create, route, ready, stop, unroute, delete in the
// order the API requires.
func TestV2Lifecycle(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	job := completedFineTune(t, sim, c)
	who, err := c.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := who.ProjectID
	cfgs, _ := c.ListV2Configs(ctx, p, together.ModelResource(p, job.ModelObjectID, ""))
	ep, err := c.CreateV2Endpoint(ctx, p, together.CreateV2EndpointRequest{Name: "life"})
	if err != nil || ep.Name != who.ProjectSlug+"/life" || len(ep.TrafficSplit) != 0 {
		t.Fatalf("create endpoint = %+v, %v", ep, err)
	}
	if _, err := c.CreateV2Endpoint(ctx, p, together.CreateV2EndpointRequest{Name: "life"}); !together.IsConflict(err) {
		t.Errorf("second endpoint with the same name: %v, want 409", err)
	}
	found, err := c.FindV2EndpointByName(ctx, p, "life")
	if err != nil || found == nil || found.ID != ep.ID {
		t.Errorf("FindV2EndpointByName = %+v, %v", found, err)
	}
	if none, err := c.FindV2EndpointByName(ctx, p, "lif"); err != nil || none != nil {
		t.Errorf("FindV2EndpointByName(lif) = %+v, %v", none, err)
	}
	dep, err := c.CreateV2Deployment(ctx, p, ep.ID, together.CreateV2DeploymentRequest{
		Name: "live", Model: together.ModelResource(p, job.ModelObjectID, job.ModelObjectRevisionID), Config: cfgs[0].ResourceName(),
		Autoscaling: together.V2Autoscaling{MinReplicas: 1, MaxReplicas: 1}})
	if err != nil || dep.Status.State != together.DeploymentProvisioning {
		t.Fatalf("create deployment = %+v, %v", dep, err)
	}
	if _, err := c.SetV2TrafficSplit(ctx, p, ep.ID, "W/\"999\"", []together.TrafficSplitEntry{{DeploymentID: dep.ID, Weight: 1}}); !together.IsConflict(err) {
		t.Errorf("split with a stale etag: %v, want 409", err)
	}
	ep, err = c.SetV2TrafficSplit(ctx, p, ep.ID, ep.Etag, []together.TrafficSplitEntry{{DeploymentID: dep.ID, Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	advanceUntil(t, sim, func() bool {
		d, err := c.GetV2Deployment(ctx, p, ep.ID, dep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) == 0 || states[len(states)-1] != d.Status.State {
			states = append(states, d.Status.State)
		}
		return d.Status.State == together.DeploymentReady
	})
	if want := []string{together.DeploymentProvisioning, together.DeploymentScaling, together.DeploymentReady}; !slices.Equal(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	if err := c.DeleteV2Deployment(ctx, p, ep.ID, dep.ID); !together.IsInvalidRequest(err) {
		t.Errorf("deleting a running deployment: %v, want 400", err)
	}
	if err := c.DeleteV2Endpoint(ctx, p, ep.ID); !together.IsInvalidRequest(err) {
		t.Errorf("deleting an endpoint with a deployment: %v, want 400", err)
	}
	if _, err := c.ScaleV2Deployment(ctx, p, ep.ID, dep.ID, 0, 0); err != nil {
		t.Fatal(err)
	}
	advanceUntil(t, sim, func() bool {
		d, _ := c.GetV2Deployment(ctx, p, ep.ID, dep.ID)
		return d.Status.State == together.DeploymentStopped
	})
	ep, _ = c.GetV2Endpoint(ctx, p, ep.ID)
	if _, err := c.SetV2TrafficSplit(ctx, p, ep.ID, ep.Etag, nil); err != nil {
		t.Fatalf("emptying the split: %v", err)
	}
	if err := c.DeleteV2Deployment(ctx, p, ep.ID, dep.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteV2Endpoint(ctx, p, ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetV2Endpoint(ctx, p, ep.ID); !together.IsNotFound(err) {
		t.Errorf("endpoint after delete: %v", err)
	}
}

// TestV2URLs checks where v2 calls go for the configured v1 base.
func TestV2URLs(t *testing.T) {
	for base, want := range map[string]string{
		"/v1":     "/v2/projects/p/endpoints/e",
		"/api/v1": "/api/v2/projects/p/endpoints/e",
		"":        "/v2/projects/p/endpoints/e",
	} {
		var got string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.URL.Path
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(v2Golden(t, "v2_endpoint.json"))
		}))
		c, err := together.New(together.Options{BaseURL: srv.URL + base, APIKey: testKey, RateLimit: rate.Inf, Metrics: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetV2Endpoint(context.Background(), "p", "e"); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		if got != want {
			t.Errorf("base %q: v2 call went to %s, want %s", base, got, want)
		}
	}
}
