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
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// The golden fixtures hold every key of Together's published types, taken
// field by field from the SDK sources named in testdata/golden/SOURCES.md.
// Three checks hang on them, and each can fail on its own:
//
//   - the client reads only keys the published shapes have (an invented
//     field such as a batch's total_tokens or an event's loss fails);
//   - the client decodes each fixture through its real call, and reads the
//     values where the sources put them;
//   - the simulator, which does not import this package, answers every
//     route with keys the published shapes have, which the client decodes
//     strictly, and which cover every key the client reads.

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientKeys lists the dotted JSON key paths a client type declares,
// looking through pointers, slices and nested structs. Raw fields
// (json.RawMessage, any) end the walk.
func clientKeys(t reflect.Type) []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			if t == reflect.TypeOf(json.RawMessage{}) {
				return
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Time{}) {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			out = append(out, p)
			walk(p, f.Type)
		}
	}
	walk("", t)
	return out
}

// jsonKeys lists the dotted key paths of a JSON document, looking into every
// array element and nested object (array levels add no path segment).
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	seen := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				seen[p] = true
				walk(p, val)
			}
		case []any:
			for _, e := range x {
				walk(prefix, e)
			}
		}
	}
	walk("", v)
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// under returns the keys below prefix ("data" turns data.id into id), or
// all keys when prefix is empty.
func under(keys []string, prefix string) []string {
	if prefix == "" {
		return keys
	}
	var out []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out = append(out, rest)
		}
	}
	return out
}

func missing(want, have []string) []string {
	var out []string
	for _, k := range want {
		if !slices.Contains(have, k) {
			out = append(out, k)
		}
	}
	return out
}

// shapes maps each client type to the fixtures (and the part of each) that
// publish its keys.
var shapes = []struct {
	name     string
	typ      reflect.Type
	fixtures map[string]string // fixture file → key prefix of the shape in it
}{
	{"FineTune", reflect.TypeOf(together.FineTune{}), map[string]string{"fine_tune.json": "", "fine_tune_list.json": "data"}},
	{"FineTuneCheckpoint", reflect.TypeOf(together.FineTuneCheckpoint{}), map[string]string{"fine_tune_checkpoints.json": "data"}},
	{"Batch", reflect.TypeOf(together.Batch{}), map[string]string{"batch_list.json": "", "batch_create.json": "job"}},
	{"File", reflect.TypeOf(together.File{}), map[string]string{"file.json": "", "file_invalid.json": ""}},
	{"Endpoint", reflect.TypeOf(together.Endpoint{}), map[string]string{"endpoint.json": "", "endpoint_list.json": "data"}},
	{"Model", reflect.TypeOf(together.Model{}), map[string]string{"models.json": ""}},
	{"SupportedModel", reflect.TypeOf(together.SupportedModel{}), map[string]string{"supported_models.json": "data"}},
}

// TestClientReadsOnlyPublishedKeys fails when the client declares a key no
// published shape has (the way `deprecated` on a model, `total_tokens` on a
// batch or `loss` on an event once were).
func TestClientReadsOnlyPublishedKeys(t *testing.T) {
	for _, sh := range shapes {
		var published []string
		for file, prefix := range sh.fixtures {
			published = append(published, under(jsonKeys(t, readGolden(t, file)), prefix)...)
		}
		if m := missing(clientKeys(sh.typ), published); len(m) > 0 {
			t.Errorf("together.%s reads %v, which no published shape has", sh.name, m)
		}
	}
	metricKeys := jsonKeys(t, readGolden(t, "fine_tune_metrics.json"))
	for _, k := range []string{together.MetricTrainLoss, together.MetricTrainGlobalStep, together.MetricTrainLR, together.MetricEvalLoss} {
		if !slices.Contains(metricKeys, "metrics."+k) {
			t.Errorf("metric key %q is not in the published metrics rows %v", k, metricKeys)
		}
	}
}

// serveFixture answers every request with a fixture and records the last
// request, so a test can also check what the client asked.
func serveFixture(t *testing.T, body []byte, status int) (string, *http.Request) {
	t.Helper()
	var last http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last = *r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", &last
}

// TestGoldenDecode reads each fixture through the client's own call.
func TestGoldenDecode(t *testing.T) {
	ctx := context.Background()
	client := func(name string, status int) (*together.Client, *http.Request) {
		u, last := serveFixture(t, readGolden(t, name), status)
		return newClient(t, u, testKey, nil), last
	}
	c, _ := client("fine_tune.json", 200)
	ft, err := c.GetFineTune(ctx, "ft-1")
	if err != nil || ft.BatchSize != together.BatchSizeMax || ft.Status != together.FineTuneCompleted || len(ft.Events) != 2 ||
		ft.Events[0].Step != 12 || ft.TrainingType.LoraR != 8 || ft.ModelObjectID != "ml_model123" || ft.Progress == nil || !ft.Progress.EstimateAvailable {
		t.Errorf("GetFineTune(fine_tune.json) = %+v, %v", ft, err)
	}
	c, _ = client("fine_tune_list.json", 200)
	fts, err := c.ListFineTunes(ctx)
	if err != nil || len(fts) != 2 || fts[1].TrainingType.Type != "Lora" || fts[0].BatchSize != 16 || fts[0].Suffix != "demo" || fts[0].Progress.SecondsRemaining != 840 {
		t.Errorf("ListFineTunes(fine_tune_list.json) = %+v, %v", fts, err)
	}
	c, last := client("fine_tune_metrics.json", 200)
	m, err := c.ListFineTuneMetrics(ctx, "ft-1", together.MetricsQuery{GlobalStepFrom: 7, Resolution: 20})
	if err != nil || len(m.Train) != 2 || m.Train[1].Step != 14 || *m.Train[1].Loss != 0.45 || m.EvalLoss == nil || *m.EvalLoss != 0.48 || m.EvalStep != 14 {
		t.Errorf("ListFineTuneMetrics(fine_tune_metrics.json) = %+v, %v", m, err)
	}
	if q := last.URL.Query(); last.URL.Path != "/v1/fine-tunes/ft-1/metrics" || q.Get("global_step_from") != "7" || q.Get("resolution") != "20" {
		t.Errorf("metrics asked %s, want the filters as query parameters (as together-go sends them)", last.URL)
	}
	c, _ = client("fine_tune_checkpoints.json", 200)
	if cps, err := c.ListFineTuneCheckpoints(ctx, "ft-1"); err != nil || len(cps) != 1 || cps[0].Step != 12 {
		t.Errorf("ListFineTuneCheckpoints = %+v, %v", cps, err)
	}
	c, _ = client("batch_create.json", 201)
	if b, err := c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: "f", Endpoint: "/v1/chat/completions"}); err != nil || b.Status != together.BatchValidating || b.JobDeadline == nil {
		t.Errorf("CreateBatch(batch_create.json) = %+v, %v", b, err)
	}
	c, _ = client("batch_list.json", 200)
	if bs, err := c.ListBatches(ctx); err != nil || len(bs) != 1 || bs[0].OutputFileID != "file-out" || bs[0].CompletedAt == nil {
		t.Errorf("ListBatches(batch_list.json) = %+v, %v", bs, err)
	}
	c, _ = client("file.json", 200)
	if f, err := c.GetFile(ctx, "file-aaaa"); err != nil || f.FileType != "jsonl" || f.ProcessingStatus != together.FileCompleted || f.ValidationReport == nil || !f.ValidationReport.Valid {
		t.Errorf("GetFile(file.json) = %+v, %v", f, err)
	}
	c, _ = client("file_invalid.json", 200)
	if f, err := c.GetFile(ctx, "file-bbbb"); err != nil || !f.ProcessingStatus.Rejected() || !strings.HasPrefix(f.ValidationReport.Error, "Line 7:") {
		t.Errorf("GetFile(file_invalid.json) = %+v, %v", f, err)
	}
	c, _ = client("endpoint.json", 200)
	if e, err := c.GetEndpoint(ctx, "endpoint-1"); err != nil || e.Autoscaling.MaxReplicas != 2 || e.State != together.EndpointStarted {
		t.Errorf("GetEndpoint(endpoint.json) = %+v, %v", e, err)
	}
	c, _ = client("models.json", 200)
	if ms, err := c.ListModels(ctx); err != nil || len(ms) != 1 || ms[0].ContextLength != 131072 {
		t.Errorf("ListModels(models.json) = %+v, %v", ms, err)
	}
	c, last = client("supported_models.json", 200)
	sms, err := c.ListSupportedModels(ctx)
	if err != nil || len(sms) != 1 || !sms[0].IsDeprecated() || sms[0].ModelName() != "Qwen/Qwen2.5-7B-Instruct" {
		t.Errorf("ListSupportedModels(supported_models.json) = %+v, %v", sms, err)
	}
	if last.URL.Path != "/v2/supported-models" {
		t.Errorf("ListSupportedModels asked %s, want /v2/supported-models", last.URL.Path)
	}
}

// TestGoldenEndpointList serves the list fixture verbatim and checks the
// filters ListEndpoints puts in the query string.
func TestGoldenEndpointList(t *testing.T) {
	u, last := serveFixture(t, readGolden(t, "endpoint_list.json"), 200)
	c := newClient(t, u, testKey, nil)
	cases := []struct {
		opts      together.ListEndpointsOptions
		wantQuery string
	}{
		{together.ListEndpointsOptions{Mine: true, Type: together.EndpointTypeDedicated}, "mine=true&type=dedicated"},
		{together.ListEndpointsOptions{Type: together.EndpointTypeServerless}, "type=serverless"},
		{together.ListEndpointsOptions{}, ""},
	}
	for _, tc := range cases {
		es, err := c.ListEndpoints(context.Background(), tc.opts)
		if err != nil {
			t.Fatalf("ListEndpoints(%+v): %v", tc.opts, err)
		}
		if last.URL.Path != "/v1/endpoints" || last.URL.RawQuery != tc.wantQuery {
			t.Errorf("ListEndpoints(%+v) asked %s?%s, want /v1/endpoints?%s", tc.opts, last.URL.Path, last.URL.RawQuery, tc.wantQuery)
		}
		if len(es) != 2 || es[0].ID != "endpoint-1" || es[0].Model != "user-1/m-demo-abc123" || es[0].State != together.EndpointStarted || es[1].Owner != "together" {
			t.Errorf("ListEndpoints decoded %+v", es)
		}
	}
}

// notPlayed are keys the client reads that the simulator never sends, each
// with the reason; everything else the client reads, the simulator must
// send somewhere, or the client would be tested against nothing.
var notPlayed = map[string]string{
	"FineTune.events.token_count":                   "the simulator's events carry no token count",
	"FineTune.events.model_path":                    "covered by job_complete only when the job completed; checked on the full job",
	"Batch.error":                                   "no failed batch in the run",
	"File.validation_report.error":                  "the run's files are valid",
	"File.validation_report.error_type":             "the run's files are valid",
	"SupportedModel.contextLength":                  "optional; not played",
	"SupportedModel.architecture":                   "optional; not played",
	"SupportedModel.description":                    "optional; not played",
	"SupportedModel.familyId":                       "optional; not played",
	"SupportedModel.features":                       "optional; not played",
	"SupportedModel.inputFormat":                    "optional; not played",
	"SupportedModel.outputFormat":                   "optional; not played",
	"SupportedModel.serverlessEndpoint":             "optional; not played",
	"SupportedModel.tags":                           "optional; not played",
	"Model.link":                                    "optional; not played",
	"Model.license":                                 "optional; not played",
	"Model.pricing.cached_input":                    "optional; not played",
	"FineTune.training_type.lora_dropout":           "the run submits no dropout",
	"FineTune.training_type.lora_trainable_modules": "the run submits none",
	"Endpoint.display_name":                         "list items lack it; the full form is fetched too",
}

// TestSimulatorAgreesWithClient runs jobs through the simulator and decodes
// every answer with the client's types strictly: a key the simulator sends
// that the client lacks fails, a key the client reads that the simulator
// never sends fails (unless notPlayed says why), and a key the simulator
// sends that no published shape has fails.
func TestSimulatorAgreesWithClient(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	train := upload(t, c, "train.jsonl", together.FilePurposeFineTune, `{"text":"x"}`+"\n")
	batchIn := upload(t, c, "in.jsonl", together.FilePurposeBatch, `{"custom_id":"a","body":{"messages":[]}}`+"\n"+`{"custom_id":"b","body":{"fail":true}}`+"\n")
	advanceUntil(t, sim, func() bool { f, _ := c.GetFile(ctx, train.ID); return f.ProcessingStatus == together.FileCompleted })
	ft, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: train.ID, ValidationFile: train.ID, NEvals: 1,
		Suffix: "s", TrainingType: &together.TrainingType{Type: "Lora", LoraR: 8, LoraAlpha: 16}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: batchIn.ID, Endpoint: "/v1/chat/completions", ModelID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.AddV1Endpoint(togethersim.V1EndpointRequest{Model: "m", Hardware: "h", DisplayName: "d", MinReplicas: 1, MaxReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	sim.DeprecateModel("Qwen/Qwen2.5-7B-Instruct", "", "")
	// Read the running job's list item (with its progress) before it ends.
	advanceUntil(t, sim, func() bool { got, _ := c.GetFineTune(ctx, ft.ID); return got.Status == together.FineTuneRunning })
	running := simGet(t, sim.URL()+"/fine-tunes")
	advanceUntil(t, sim, func() bool {
		got, _ := c.GetFineTune(ctx, ft.ID)
		bb, _ := c.GetBatch(ctx, b.ID)
		return got.Status.Terminal() && bb.Status.Terminal()
	})
	done, _ := c.GetBatch(ctx, b.ID)
	v2 := strings.TrimSuffix(sim.URL(), "/v1") + "/v2"

	type answer struct {
		shape, fixture, prefix string
		body                   []byte
		decode                 any
	}
	answers := []answer{
		{"FineTune", "fine_tune.json", "", simGet(t, sim.URL()+"/fine-tunes/"+ft.ID), &together.FineTune{}},
		{"FineTune", "fine_tune_list.json", "data", simGet(t, sim.URL()+"/fine-tunes"), &struct{ Data []together.FineTune }{}},
		{"FineTune", "fine_tune_list.json", "data", running, &struct{ Data []together.FineTune }{}},
		{"FineTuneCheckpoint", "fine_tune_checkpoints.json", "data", simGet(t, sim.URL()+"/fine-tunes/"+ft.ID+"/checkpoints"), &struct{ Data []together.FineTuneCheckpoint }{}},
		{"Batch", "batch_list.json", "", simGet(t, sim.URL()+"/batches"), &[]together.Batch{}},
		{"Batch", "batch_list.json", "", simGet(t, sim.URL()+"/batches/"+b.ID), &together.Batch{}},
		{"File", "file.json", "", simGet(t, sim.URL()+"/files/"+train.ID), &together.File{}},
		{"File", "file.json", "data", simGet(t, sim.URL()+"/files"), &struct{ Data []together.File }{}},
		{"Endpoint", "endpoint.json", "", simGet(t, sim.URL()+"/endpoints/"+e.ID), &together.Endpoint{}},
		{"Endpoint", "endpoint_list.json", "data", simGet(t, sim.URL()+"/endpoints"), &struct {
			Object string
			Data   []together.Endpoint
		}{}},
		{"Model", "models.json", "", simGet(t, sim.URL()+"/models"), &[]together.Model{}},
		{"SupportedModel", "supported_models.json", "data", simGet(t, v2+"/supported-models?limit=100"), &struct {
			Data       []together.SupportedModel
			NextCursor string `json:"next_cursor"`
		}{}},
	}
	sent := map[string][]string{}
	for _, a := range answers {
		t.Run(a.shape+"/"+a.fixture, func(t *testing.T) {
			d := json.NewDecoder(bytes.NewReader(a.body))
			d.DisallowUnknownFields()
			if err := d.Decode(a.decode); err != nil {
				t.Errorf("the client cannot decode the simulator's answer strictly: %v\n%s", err, a.body)
			}
			got := under(jsonKeys(t, a.body), a.prefix)
			var published []string
			for _, sh := range shapes {
				if p, ok := sh.fixtures[a.fixture]; ok && sh.name == a.shape {
					published = under(jsonKeys(t, readGolden(t, a.fixture)), p)
				}
			}
			if m := missing(got, published); len(m) > 0 {
				t.Errorf("the simulator sends %v, which the published shape (%s) lacks", m, a.fixture)
			}
			sent[a.shape] = append(sent[a.shape], got...)
		})
	}
	for _, sh := range shapes {
		for _, k := range missing(clientKeys(sh.typ), sent[sh.name]) {
			if _, ok := notPlayed[sh.name+"."+k]; !ok {
				t.Errorf("the client reads %s.%s, which the simulator never sent", sh.name, k)
			}
		}
	}

	// Metrics rows and batch output lines are maps and lines, not structs:
	// their keys must be the published ones.
	metrics := jsonKeys(t, simGet(t, sim.URL()+"/fine-tunes/"+ft.ID+"/metrics"))
	if m := missing(metrics, jsonKeys(t, readGolden(t, "fine_tune_metrics.json"))); len(m) > 0 {
		t.Errorf("the simulator's metrics rows have %v, which the published rows lack", m)
	}
	for _, k := range []string{"metrics." + together.MetricTrainLoss, "metrics." + together.MetricTrainGlobalStep, "metrics." + together.MetricEvalLoss} {
		if !slices.Contains(metrics, k) {
			t.Errorf("the simulator's metrics rows lack %s", k)
		}
	}
	line := bytes.TrimSpace(simGet(t, sim.URL()+"/files/"+done.OutputFileID+"/content"))
	if m := missing(jsonKeys(t, line), jsonKeys(t, readGolden(t, "batch_output_line.json"))); len(m) > 0 {
		t.Errorf("the simulator's output line has %v, which the published line lacks: %s", m, line)
	}
}

func simGet(t *testing.T, u string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return b
}
