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

	"github.com/together-operator/together-operator/internal/together"
)

// The golden fixtures are the real API's response shapes, written from
// Together's public reference. Each is decoded strictly with the client's
// types, and the simulator's answer on the same route must use only the
// fixture's field names (plus the documented extensions) and every field
// the reference marks required, so client and simulator cannot drift apart
// from the real API together.

// extensions are fields the simulator sends that Together does not document.
var extensions = []string{"loss", "total_tokens", "deprecated"}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeStrict(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decoding into %T: %v", v, err)
	}
}

func TestGoldenDecode(t *testing.T) {
	var ft together.FineTune
	decodeStrict(t, readGolden(t, "fine_tune.json"), &ft)
	if ft.BatchSize != together.BatchSizeMax || ft.Status != together.FineTuneCompleted || ft.Events[0].Step != 1 || ft.TrainingType.LoraR != 8 {
		t.Errorf("fine_tune.json decoded to %+v", ft)
	}
	var fl struct{ Data []together.FineTune }
	decodeStrict(t, readGolden(t, "fine_tune_list.json"), &fl)
	if fl.Data[0].BatchSize != 16 || fl.Data[0].Suffix != "demo" {
		t.Errorf("fine_tune_list.json decoded to %+v", fl)
	}
	var cps struct{ Data []together.FineTuneCheckpoint }
	decodeStrict(t, readGolden(t, "fine_tune_checkpoints.json"), &cps)
	var bc struct {
		Job     together.Batch
		Warning string
	}
	decodeStrict(t, readGolden(t, "batch_create.json"), &bc)
	if bc.Job.Status != together.BatchValidating || bc.Job.JobDeadline == nil {
		t.Errorf("batch_create.json decoded to %+v", bc)
	}
	var bl []together.Batch
	decodeStrict(t, readGolden(t, "batch_list.json"), &bl)
	if bl[0].OutputFileID != "file-out" || bl[0].CompletedAt == nil {
		t.Errorf("batch_list.json decoded to %+v", bl)
	}
	var f together.File
	decodeStrict(t, readGolden(t, "file.json"), &f)
	if f.FileType != "jsonl" || !f.Processed || f.CreatedAt != 1751364000 {
		t.Errorf("file.json decoded to %+v", f)
	}
	var e together.Endpoint
	decodeStrict(t, readGolden(t, "endpoint.json"), &e)
	if e.Autoscaling.MaxReplicas != 2 || e.State != together.EndpointStarted {
		t.Errorf("endpoint.json decoded to %+v", e)
	}
	var el struct {
		Object string
		Data   []together.Endpoint
	}
	decodeStrict(t, readGolden(t, "endpoint_list.json"), &el)
	if el.Object != "list" || el.Data[0].Type != together.EndpointTypeDedicated || el.Data[0].Hardware != "" || el.Data[1].Type != together.EndpointTypeServerless {
		t.Errorf("endpoint_list.json decoded to %+v", el)
	}
	var ms []together.Model
	decodeStrict(t, readGolden(t, "models.json"), &ms)
	if ms[0].ContextLength != 131072 || ms[0].Deprecated != nil {
		t.Errorf("models.json decoded to %+v", ms)
	}
}

// TestGoldenMetrics decodes the metrics fixture through the client, served
// verbatim, since the client reduces it rather than mapping it to a struct.
func TestGoldenMetrics(t *testing.T) {
	srv := serveBody(t, readGolden(t, "fine_tune_metrics.json"))
	m, err := newClient(t, srv+"/v1", testKey, nil).GetFineTuneMetrics(context.Background(), "ft-1")
	if err != nil || *m.TrainLoss != 1.8 || *m.EvalLoss != 1.9 {
		t.Errorf("metrics = %+v, %v", m, err)
	}
}

// TestGoldenEndpointList serves the list fixture verbatim and checks the
// filters ListEndpoints puts in the query string.
func TestGoldenEndpointList(t *testing.T) {
	body := readGolden(t, "endpoint_list.json")
	var gotPath, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.Path, r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL+"/v1", testKey, nil)
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
		if gotPath != "/v1/endpoints" || gotQuery != tc.wantQuery {
			t.Errorf("ListEndpoints(%+v) asked %s?%s, want /v1/endpoints?%s", tc.opts, gotPath, gotQuery, tc.wantQuery)
		}
		if len(es) != 2 || es[0].ID != "endpoint-1" || es[0].Model != "user-1/m-demo-abc123" || es[0].State != together.EndpointStarted || es[1].Owner != "together" {
			t.Errorf("ListEndpoints decoded %+v", es)
		}
	}
}

func TestSimulatorMatchesGoldenShapes(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	f := upload(t, c, "in.jsonl", together.FilePurposeBatch, `{"custom_id":"a","body":{}}`+"\n")
	ft, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID, Suffix: "s", TrainingType: &together.TrainingType{Type: "Lora", LoraR: 8, LoraAlpha: 16}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", ModelID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.AddV1Endpoint(together.CreateEndpointRequest{Model: "m", Hardware: "h", DisplayName: "d", Autoscaling: together.Autoscaling{MinReplicas: 1, MaxReplicas: 1}})
	if err != nil {
		t.Fatal(err)
	}
	advanceUntil(t, sim, func() bool { got, _ := c.GetFineTune(ctx, ft.ID); return got.Status.Terminal() })

	cases := []struct {
		golden, path string
		required     []string
	}{
		{"fine_tune.json", "/fine-tunes/" + ft.ID, []string{"id", "status", "user_id", "created_at", "updated_at", "model_output_name", "events"}},
		{"fine_tune_list.json", "/fine-tunes", []string{"data", "data.id", "data.status", "data.created_at", "data.updated_at", "data.user_id", "data.suffix"}},
		{"fine_tune_checkpoints.json", "/fine-tunes/" + ft.ID + "/checkpoints", []string{"data", "data.checkpoint_type", "data.created_at", "data.path", "data.step"}},
		{"fine_tune_metrics.json", "/fine-tunes/" + ft.ID + "/metrics", []string{"metrics"}},
		{"batch_list.json", "/batches", []string{"id", "status", "input_file_id", "progress", "created_at"}},
		{"file.json", "/files/" + f.ID, []string{"id", "object", "created_at", "filename", "bytes", "purpose", "FileType", "Processed"}},
		{"endpoint.json", "/endpoints/" + e.ID, []string{"id", "object", "name", "display_name", "model", "hardware", "type", "owner", "state", "autoscaling", "created_at", "autoscaling.min_replicas"}},
		{"models.json", "/models", []string{"id", "object", "created", "type"}},
		{"endpoint_list.json", "/endpoints", []string{"object", "data", "data.id", "data.object", "data.name", "data.model", "data.type", "data.owner", "data.state", "data.created_at"}},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			want := keys(t, readGolden(t, tc.golden))
			got := keys(t, simGet(t, sim.URL()+tc.path))
			for _, k := range got {
				if !slices.Contains(want, k) && !slices.Contains(extensions, k[strings.LastIndex(k, ".")+1:]) {
					t.Errorf("simulator sends %q, which the real API does not document", k)
				}
			}
			for _, k := range tc.required {
				if !slices.Contains(got, k) {
					t.Errorf("simulator omits required field %q", k)
				}
			}
		})
	}
	t.Run("batch_create.json", func(t *testing.T) {
		want := keys(t, readGolden(t, "batch_create.json"))
		for _, k := range []string{"job", "warning", "job.id", "job.status", "job.input_file_id"} {
			if !slices.Contains(want, k) {
				t.Fatalf("fixture lacks %q", k)
			}
		}
	})
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

// keys lists the dotted key paths of a JSON document, looking into every
// array element and nested object (array levels add no path segment).
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
				if prefix == "" || strings.Count(p, ".") < 1 {
					walk(p, val)
				}
			}
		case []any:
			for _, e := range x {
				walk(prefix, e)
			}
		}
	}
	walk("", v)
	return out
}

func serveBody(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
