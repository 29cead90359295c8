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

package togethersim_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/together-operator/together-operator/internal/togethersim"
)

// raw sends one request with the key and decodes the JSON answer.
func raw(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s answered %d with non-JSON %q", method, u, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// The v2 wire JSON is written in v2endpoints.go from the published shapes,
// not borrowed from the client, so that the two can disagree.
func TestV2EndpointsDoesNotImportTheClient(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "v2endpoints.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); strings.HasSuffix(p, "/internal/together") {
			t.Errorf("v2endpoints.go imports %s", p)
		}
	}
}

func TestV1EndpointCreateIsRetired(t *testing.T) {
	s := start(t, togethersim.Options{APIKey: key})
	status, body := raw(t, http.MethodPost, s.URL()+"/endpoints", `{"model":"m","hardware":"1x_nvidia_a100_80gb_sxm","autoscaling":{"min_replicas":1,"max_replicas":1}}`)
	e, _ := body["error"].(map[string]any)
	if status != http.StatusForbidden || e["code"] != "endpoints_v1_create_access_disabled" || e["message"] == "" {
		t.Errorf("POST /v1/endpoints = %d %v", status, body)
	}
}

func TestV2ListPagesAndFilters(t *testing.T) {
	s := start(t, togethersim.Options{APIKey: key})
	base := strings.TrimSuffix(s.URL(), "/v1") + "/v2/projects/" + togethersim.SimProjectID + "/endpoints"
	for _, n := range []string{"a", "b", "c"} {
		if status, body := raw(t, http.MethodPost, base, `{"name":"`+n+`"}`); status != http.StatusOK || body["name"] != togethersim.SimProjectSlug+"/"+n {
			t.Fatalf("create %s = %d %v", n, status, body)
		}
	}
	_, p1 := raw(t, http.MethodGet, base+"?limit=2", "")
	if len(p1["data"].([]any)) != 2 || p1["next_cursor"] == "" {
		t.Fatalf("first page = %v", p1)
	}
	_, p2 := raw(t, http.MethodGet, base+"?limit=2&after="+p1["next_cursor"].(string), "")
	if len(p2["data"].([]any)) != 1 || p2["next_cursor"] != "" {
		t.Errorf("second page = %v", p2)
	}
	_, f := raw(t, http.MethodGet, base+"?filter="+strings.ReplaceAll(`name = "b"`, " ", "%20"), "")
	if d := f["data"].([]any); len(d) != 1 || d[0].(map[string]any)["name"] != togethersim.SimProjectSlug+"/b" {
		t.Errorf("filtered = %v", f)
	}
	if status, _ := raw(t, http.MethodGet, base+"?filter=bogus", ""); status != http.StatusBadRequest {
		t.Errorf("bad filter answered %d", status)
	}
	if status, _ := raw(t, http.MethodPost, base, `{"name":"a"}`); status != http.StatusConflict {
		t.Errorf("duplicate name answered %d", status)
	}
	if status, _ := raw(t, http.MethodGet, strings.Replace(base, togethersim.SimProjectID, "proj_other", 1), ""); status != http.StatusNotFound {
		t.Errorf("another project answered %d", status)
	}
}
