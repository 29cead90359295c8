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
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

const testKey = "tok-SECRET-0123456789"

// logBuffer collects every log line, at every verbosity.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.buf.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newSim(t *testing.T) *togethersim.Server {
	t.Helper()
	sim := togethersim.New(togethersim.Options{APIKey: testKey, TotalSteps: 3})
	if _, err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

func newClient(t *testing.T, base, key string, logs *logBuffer) *together.Client {
	t.Helper()
	o := together.Options{BaseURL: base, APIKey: key, RateLimit: rate.Inf, MaxRetries: 3,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, Metrics: prometheus.NewRegistry()}
	if logs != nil {
		o.Logger = logs.logger()
	}
	c, err := together.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// advanceUntil steps the simulator until done reports true, failing after
// a bound so a broken lifecycle cannot loop forever.
func advanceUntil(t *testing.T, sim *togethersim.Server, done func() bool) {
	t.Helper()
	for range 50 {
		if done() {
			return
		}
		sim.Advance()
	}
	t.Fatal("lifecycle did not reach the expected state in 50 steps")
}

func upload(t *testing.T, c *together.Client, name string, p together.FilePurpose, body string) *together.File {
	t.Helper()
	f, err := c.UploadFile(context.Background(), name, p, strings.NewReader(body))
	if err != nil {
		t.Fatalf("UploadFile: %v", err)
	}
	return f
}

func TestFineTuneLifecycle(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	f := upload(t, c, "train.jsonl", together.FilePurposeFineTune, `{"text":"hello"}`+"\n")
	if f.Bytes != 17 || f.Purpose != "fine-tune" || f.FileType != "jsonl" {
		t.Fatalf("uploaded file = %+v", f)
	}
	advanceUntil(t, sim, func() bool {
		got, err := c.GetFile(ctx, f.ID)
		return err == nil && got.ProcessingStatus == together.FileCompleted
	})
	ft, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", TrainingFile: f.ID, ValidationFile: f.ID, NEvals: 3, Suffix: "tr-abc"})
	if err != nil {
		t.Fatal(err)
	}
	if ft.Status != together.FineTunePending {
		t.Fatalf("new job status = %s", ft.Status)
	}
	seen := map[together.FineTuneStatus]bool{}
	advanceUntil(t, sim, func() bool {
		got, err := c.GetFineTune(ctx, ft.ID)
		if err != nil {
			t.Fatal(err)
		}
		seen[got.Status] = true
		ft = got
		return got.Status.Terminal()
	})
	for _, st := range []together.FineTuneStatus{together.FineTuneQueued, together.FineTuneRunning, together.FineTuneCompleted} {
		if !seen[st] {
			t.Errorf("job never reported %s (saw %v)", st, seen)
		}
	}
	if !strings.HasPrefix(ft.ModelOutputName, "sim-user/Meta-Llama-3.1-8B-Instruct-Reference-tr-abc-") {
		t.Errorf("model_output_name = %q", ft.ModelOutputName)
	}
	list, err := c.ListFineTunes(ctx)
	if err != nil || len(list) != 1 || list[0].Suffix != "tr-abc" {
		t.Fatalf("ListFineTunes = %+v, %v", list, err)
	}
	evs, err := c.ListFineTuneEvents(ctx, ft.ID)
	if err != nil {
		t.Fatal(err)
	}
	var saves []int64
	for _, e := range evs {
		if e.Type == "checkpoint_save" {
			saves = append(saves, e.Step)
		}
	}
	// n_checkpoints defaults to 1: one checkpoint_save, at the last step.
	if len(saves) != 1 || saves[0] != 3 {
		t.Errorf("checkpoint_save steps = %v, want [3]", saves)
	}
	cps, err := c.ListFineTuneCheckpoints(ctx, ft.ID)
	if err != nil || len(cps) != 1 || cps[0].Step != 3 {
		t.Errorf("checkpoints = %+v, %v", cps, err)
	}
	m, err := c.GetFineTuneMetrics(ctx, ft.ID)
	if err != nil || len(m.Train) != 3 {
		t.Fatalf("metrics = %+v, %v", m, err)
	}
	for i, r := range m.Train {
		if r.Step != int64(i+1) || r.Loss == nil || (i > 0 && *r.Loss >= *m.Train[i-1].Loss) {
			t.Errorf("train row %d = step %d loss %v, want step %d and a falling loss", i, r.Step, r.Loss, i+1)
		}
	}
	if m.EvalLoss == nil || *m.EvalLoss != 0.42 || m.EvalStep != 3 {
		t.Errorf("eval loss = %v at step %d, want 0.42 at 3 (the job has a validation file and n_evals 3)", m.EvalLoss, m.EvalStep)
	}
	// The API's own filters: rows from a step on, and a cap on training rows.
	from, err := c.ListFineTuneMetrics(ctx, ft.ID, together.MetricsQuery{GlobalStepFrom: 3})
	if last, ok := from.Last(); err != nil || len(from.Train) != 1 || !ok || last.Step != 3 {
		t.Errorf("metrics from step 3 = %+v, %v", from, err)
	}
	capped, err := c.ListFineTuneMetrics(ctx, ft.ID, together.MetricsQuery{Resolution: 1})
	if last, ok := capped.Last(); err != nil || len(capped.Train) != 1 || !ok || last.Step != 3 || capped.EvalLoss == nil {
		t.Errorf("metrics at resolution 1 = %+v, %v", capped, err)
	}
}

func TestFineTuneFailureAndCancel(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	sim.SetFineTuneScript(func(r togethersim.FineTuneRequest) bool { return r.Suffix == "bad" },
		togethersim.FineTuneOutcome{FailAtStep: 2, FailMessage: "CUDA out of memory"})
	f := upload(t, c, "train.jsonl", together.FilePurposeFineTune, `{"text":"x"}`)
	bad, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID, Suffix: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	victim, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID, Suffix: "cancel-me"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.CancelFineTune(ctx, victim.ID); err != nil || got.Status != together.FineTuneCancelRequested {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	advanceUntil(t, sim, func() bool {
		b, _ := c.GetFineTune(ctx, bad.ID)
		v, _ := c.GetFineTune(ctx, victim.ID)
		return b.Status.Terminal() && v.Status.Terminal()
	})
	b, _ := c.GetFineTune(ctx, bad.ID)
	last := b.Events[len(b.Events)-1]
	if b.Status != together.FineTuneError || last.Type != "job_error" || last.Step != 2 || last.Message != "CUDA out of memory" {
		t.Errorf("failed job = %s, last event %+v", b.Status, last)
	}
	if v, _ := c.GetFineTune(ctx, victim.ID); v.Status != together.FineTuneCancelled {
		t.Errorf("cancelled job status = %s", v.Status)
	}
	if _, err := c.CancelFineTune(ctx, victim.ID); !together.IsInvalidRequest(err) {
		t.Errorf("cancelling a finished job: err = %v, want invalid request", err)
	}
	if _, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: "file-nope"}); !together.IsInvalidRequest(err) {
		t.Errorf("unknown training file: err = %v, want invalid request", err)
	}
}

func TestBatchLifecycle(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	input := `{"custom_id":"a","body":{"messages":[{"role":"user","content":"hi"}]}}
{"custom_id":"b","body":{"messages":[{"role":"user","content":"please fail"}]}}
{"custom_id":"c","body":{"messages":[{"role":"user","content":"ho"}]}}
`
	f := upload(t, c, "in.jsonl", together.FilePurposeBatch, input)
	b, err := c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h", ModelID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != together.BatchValidating || b.FileSizeBytes != int64(len(input)) {
		t.Fatalf("created batch = %+v", b)
	}
	sawProgress := false
	advanceUntil(t, sim, func() bool {
		got, err := c.GetBatch(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		sawProgress = sawProgress || (got.Status == together.BatchInProgress && got.Progress > 0 && got.Progress < 100)
		b = got
		return got.Status.Terminal()
	})
	if b.Status != together.BatchCompleted || !sawProgress || b.CompletedAt == nil {
		t.Fatalf("finished batch = %+v (saw progress %v)", b, sawProgress)
	}
	out := readAll(t, c, b.OutputFileID)
	errs := readAll(t, c, b.ErrorFileID)
	if !strings.Contains(out, `"custom_id":"a"`) || !strings.Contains(out, `"custom_id":"c"`) || strings.Contains(out, `"custom_id":"b"`) {
		t.Errorf("output file = %s", out)
	}
	if !strings.Contains(errs, `"custom_id":"b"`) || strings.Count(errs, "\n") != 1 {
		t.Errorf("error file = %s", errs)
	}
	list, err := c.ListBatches(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListBatches = %v, %v", list, err)
	}
	if _, err := c.CancelBatch(ctx, b.ID); !together.IsInvalidRequest(err) {
		t.Errorf("cancel of a completed batch: %v", err)
	}
	if _, err := c.GetBatch(ctx, "nope"); !together.IsNotFound(err) || !strings.Contains(err.Error(), "batch nope not found") {
		t.Errorf("GetBatch(nope) = %v, want not found with the server's message", err)
	}
}

func readAll(t *testing.T, c *together.Client, id string) string {
	t.Helper()
	rc, err := c.DownloadFile(context.Background(), id)
	if err != nil {
		t.Fatalf("DownloadFile(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFilesListAndGet(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	f := upload(t, c, "x.csv", together.FilePurposeBatch, "a,b\n")
	got, err := c.GetFile(ctx, f.ID)
	if err != nil || *got != *f || got.FileType != "csv" {
		t.Fatalf("GetFile = %+v, %v", got, err)
	}
	l, err := c.ListFiles(ctx)
	if err != nil || len(l) != 1 {
		t.Fatalf("ListFiles = %+v, %v", l, err)
	}
	if _, err := c.GetFile(ctx, "file-missing"); !together.IsNotFound(err) {
		t.Errorf("GetFile(missing) = %v", err)
	}
}

func TestEndpointLifecycle(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	// v1 creation is retired (403); an endpoint made before still serves.
	if _, err := c.CreateEndpoint(ctx, together.CreateEndpointRequest{Model: "m", Hardware: "1x_nvidia_a100_80gb_sxm", Autoscaling: together.Autoscaling{MinReplicas: 1, MaxReplicas: 2}}); !together.IsV1EndpointCreateDisabled(err) {
		t.Fatalf("v1 create = %v, want 403 %s", err, together.CodeV1EndpointCreateDisabled)
	}
	e, err := sim.AddV1Endpoint(togethersim.V1EndpointRequest{Model: "m", Hardware: "1x_nvidia_a100_80gb_sxm", MinReplicas: 1, MaxReplicas: 2})
	if err != nil || e.State != "PENDING" {
		t.Fatalf("create = %+v, %v", e, err)
	}
	var states []together.EndpointState
	advanceUntil(t, sim, func() bool {
		got, err := c.GetEndpoint(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) == 0 || states[len(states)-1] != got.State {
			states = append(states, got.State)
		}
		return got.State == together.EndpointStarted
	})
	if want := []together.EndpointState{"PENDING", "STARTING", "STARTED"}; !equal(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	up, err := c.UpdateEndpoint(ctx, e.ID, together.UpdateEndpointRequest{Autoscaling: &together.Autoscaling{MinReplicas: 2, MaxReplicas: 4}, State: "STOPPED"})
	if err != nil || up.Autoscaling.MaxReplicas != 4 || up.State != together.EndpointStopping {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if err := c.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEndpoint(ctx, e.ID); !together.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
	if _, err := c.CreateEndpoint(ctx, together.CreateEndpointRequest{Model: "m"}); !together.IsInvalidRequest(err) {
		t.Errorf("invalid create: %v", err)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestModelsAndDeprecation: v1 /models has no deprecation field; the
// deprecation is the v2 catalogue's status, read across its pages (the
// simulator serves three entries a page).
func TestModelsAndDeprecation(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	sim.DeprecateModel("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-8B", "2026-12-31")
	sim.DeprecateModel("org/extra", "", "")
	ms, err := c.ListModels(context.Background())
	if err != nil || len(ms) != 6 {
		t.Fatalf("ListModels = %v, %v", ms, err)
	}
	sms, err := c.ListSupportedModels(context.Background())
	if err != nil || len(sms) != 6 {
		t.Fatalf("ListSupportedModels = %d models, %v; want all 6 across pages", len(sms), err)
	}
	for _, m := range sms {
		want := m.ID == "Qwen/Qwen2.5-7B-Instruct" || m.ID == "org/extra"
		if m.IsDeprecated() != want {
			t.Errorf("model %s status = %s", m.ID, m.Status)
		}
	}
	if n := sim.CountCalls(http.MethodGet, "/v2/supported-models"); n != 2 {
		t.Errorf("GET /v2/supported-models served %d times, want 2 pages", n)
	}
}

func TestWebhookCRUD(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	w, err := c.CreateWebhook(ctx, together.WebhookRequest{URL: "https://example.test/hook", Events: []string{"batch.done"}, Secret: "whsec"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.UpdateWebhook(ctx, w.ID, together.WebhookRequest{Events: []string{"fine_tune.completed"}})
	if err != nil || up.Events[0] != "fine_tune.completed" || up.URL != w.URL {
		t.Fatalf("update = %+v, %v", up, err)
	}
	l, err := c.ListWebhooks(ctx)
	if err != nil || len(l) != 1 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	if err := c.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteWebhook(ctx, w.ID)
	if !together.IsNotFound(err) || errors.Is(err, together.ErrNotSupported) {
		t.Errorf("deleting a deleted webhook: %v, want not found and supported", err)
	}
}

// TestWebhooksNotSupported plays Together's real API, which has no webhook
// routes and answers 404 in its ErrorData shape.
func TestWebhooksNotSupported(t *testing.T) {
	real := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"message":"Not found","type":"invalid_request_error","param":null,"code":null}}`)
	}))
	defer real.Close()
	c := newClient(t, real.URL+"/v1", testKey, nil)
	_, err := c.CreateWebhook(context.Background(), together.WebhookRequest{URL: "https://x.test", Secret: "s"})
	if !errors.Is(err, together.ErrNotSupported) {
		t.Errorf("CreateWebhook = %v, want ErrNotSupported", err)
	}
	if _, err := c.ListWebhooks(context.Background()); !errors.Is(err, together.ErrNotSupported) {
		t.Errorf("ListWebhooks = %v, want ErrNotSupported", err)
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	sim.Faults().SetRoute(http.MethodGet, "/v1/fine-tunes", togethersim.RouteFault{Status: 429, RetryAfter: time.Second, Times: 1})
	start := time.Now()
	if _, err := c.ListFineTunes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := sim.CountCalls(http.MethodGet, "/v1/fine-tunes"); n != 2 {
		t.Errorf("calls = %d, want 2 (one 429, one success)", n)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v, before the server's Retry-After of 1s", d)
	}
}

func TestRetryPolicyByIdempotency(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	f := upload(t, c, "t.jsonl", together.FilePurposeFineTune, "{}")

	// A 500 on a create may mean the job exists: no retry.
	sim.Faults().SetRoute(http.MethodPost, "/v1/fine-tunes", togethersim.RouteFault{Status: 500, Times: 1})
	_, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID})
	if !together.IsServerError(err) || sim.CountCalls(http.MethodPost, "/v1/fine-tunes") != 1 {
		t.Errorf("create after 500: err %v, calls %d, want one call", err, sim.CountCalls(http.MethodPost, "/v1/fine-tunes"))
	}
	// A 429 means not processed: retried even for a create.
	sim.Faults().ClearRoutes()
	sim.Faults().SetRoute(http.MethodPost, "/v1/fine-tunes", togethersim.RouteFault{Status: 429, Times: 1})
	if _, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID}); err != nil {
		t.Errorf("create after 429: %v", err)
	}
	if n := sim.CountCalls(http.MethodPost, "/v1/fine-tunes"); n != 3 {
		t.Errorf("create calls = %d, want 3", n)
	}
	// Reads retry 5xx up to MaxRetries, then report a server error.
	sim.Faults().SetRoute(http.MethodGet, "/v1/batches", togethersim.RouteFault{Status: 503})
	_, err = c.ListBatches(ctx)
	if !together.IsServerError(err) || sim.CountCalls(http.MethodGet, "/v1/batches") != 4 {
		t.Errorf("list after 503s: err %v, calls %d, want 4", err, sim.CountCalls(http.MethodGet, "/v1/batches"))
	}
}

func TestTypedErrorsNeverLeakTheKey(t *testing.T) {
	ctx := context.Background()
	sim := newSim(t)
	logs := &logBuffer{}
	wrong := newClient(t, sim.URL(), "tok-WRONG-987654321", logs)
	_, err := wrong.ListFineTunes(ctx)
	if !together.IsUnauthorized(err) || strings.Contains(err.Error(), "tok-WRONG") {
		t.Errorf("wrong key: %v", err)
	}
	c := newClient(t, sim.URL(), testKey, logs)
	sim.Faults().SetRoute("", "/v1/models", togethersim.RouteFault{Status: 402, Times: 1})
	if _, err := c.ListModels(ctx); !together.IsQuotaExceeded(err) || strings.Contains(err.Error(), testKey) {
		t.Errorf("402: %v", err)
	}
	sim.Faults().SetRoute("", "/v1/files", togethersim.RouteFault{Status: 500})
	_, err = c.ListFiles(ctx)
	if !together.IsServerError(err) || strings.Contains(err.Error(), testKey) {
		t.Errorf("500: %v", err)
	}
	sim.Faults().RejectKey(true)
	if _, err := c.GetFineTune(ctx, "ft-x"); !together.IsUnauthorized(err) {
		t.Errorf("rejected key: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "/v1/files") {
		t.Fatalf("expected retry logs, got %q", out)
	}
	if strings.Contains(out, testKey) || strings.Contains(out, "tok-WRONG") {
		t.Errorf("an API key appeared in the logs:\n%s", out)
	}
}

func TestRequestsAreCounted(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	before := counterValue(t, "GetBatch", "not_found")
	_, _ = c.GetBatch(context.Background(), "nope")
	if got := counterValue(t, "GetBatch", "not_found"); got != before+1 {
		t.Errorf("together_api_requests_total{GetBatch,not_found} = %v, want %v", got, before+1)
	}
}

// counterValue reads the package's counter through a registry, as a scrape would.
func counterValue(t *testing.T, op, outcome string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := together.New(together.Options{Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == "together_api_requests_total" && labels["operation"] == op && labels["outcome"] == outcome {
				v = m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestLargeDownloadStreams downloads 100 MiB and checks both the content
// and that the process allocated far less than the file's size.
func TestLargeDownloadStreams(t *testing.T) {
	const size = 100 << 20
	sim := newSim(t)
	c := newClient(t, sim.URL(), testKey, nil)
	f := sim.AddGeneratedFile(size)
	want := sha256.New()
	if _, err := io.Copy(want, togethersim.GeneratedContent(size)); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc, err := c.DownloadFile(context.Background(), f.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, rc)
	_ = rc.Close()
	if err != nil || n != size {
		t.Fatalf("copied %d bytes, err %v", n, err)
	}
	runtime.ReadMemStats(&after)
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Error("downloaded content differs from the generated file")
	}
	// Client and simulator share this process, so this bounds both sides.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("allocated %d MiB while streaming 100 MiB; the body is being buffered", grew>>20)
	}
}

// TestRetryAfterHeaders: the wait a server asks for is read from
// Retry-After-Ms first, then Retry-After, then x-ratelimit-reset, as the
// SDKs and Together's rate-limit docs name them.
func TestRetryAfterHeaders(t *testing.T) {
	cases := []struct {
		header map[string]string
		want   time.Duration
	}{
		{map[string]string{"Retry-After-Ms": "1500", "Retry-After": "9"}, 1500 * time.Millisecond},
		{map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{map[string]string{"X-Ratelimit-Reset": "7"}, 7 * time.Second},
		{map[string]string{"Retry-After": "2", "X-Ratelimit-Reset": "7"}, 2 * time.Second},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			for k, v := range tc.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"message":"slow down","type":"rate_limit_exceeded"}}`))
		}))
		c, err := together.New(together.Options{BaseURL: srv.URL + "/v1", APIKey: testKey, MaxRetries: -1, Metrics: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListFineTunes(context.Background())
		var api *together.APIError
		if !errors.As(err, &api) || api.RetryAfter != tc.want {
			t.Errorf("headers %v: RetryAfter = %v (err %v), want %v", tc.header, api, err, tc.want)
		}
		srv.Close()
	}
}

// TestRetryHonoursRetryAfterMs: a 429 with Retry-After-Ms is retried after
// about that long (not the client's own, much longer, backoff).
func TestRetryHonoursRetryAfterMs(t *testing.T) {
	var n int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After-Ms", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{"data":[]}`))
	}))
	t.Cleanup(srv.Close)
	c, err := together.New(together.Options{BaseURL: srv.URL + "/v1", APIKey: testKey, MaxRetries: 1,
		RetryWaitMin: time.Hour, RetryWaitMax: time.Hour, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.ListFineTunes(ctx); err != nil {
		t.Fatalf("ListFineTunes after a 429 with Retry-After-Ms: 1: %v (the client waited its own hour-long backoff instead)", err)
	}
}

// TestEveryCallIsBounded: a server that accepts and then never answers, or
// answers headers and then stalls the body, cannot hold a call past the
// client's response-header timeout or per-call deadline.
func TestEveryCallIsBounded(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/batches" { // headers, then a body that never ends
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[`))
			w.(http.Flusher).Flush()
		}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	c, err := together.New(together.Options{BaseURL: srv.URL + "/v1", APIKey: testKey, MaxRetries: -1, Metrics: prometheus.NewRegistry(),
		ResponseHeaderTimeout: 100 * time.Millisecond, CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	outer, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ListFineTunes(outer); err == nil || outer.Err() != nil {
		t.Errorf("a hung response: err %v, outer context %v; want the header timeout to end the call", err, outer.Err())
	}
	if _, err := c.ListBatches(outer); err == nil || outer.Err() != nil {
		t.Errorf("a stalled body: err %v, outer context %v; want the call deadline to end the call", err, outer.Err())
	}
	if _, err := c.DownloadFile(outer, "file-1"); err == nil || outer.Err() != nil {
		t.Errorf("a download without headers: err %v, outer context %v", err, outer.Err())
	}
}

// TestDownloadSendsSDKAccept: the SDKs ask for file content as
// application/binary.
func TestDownloadSendsSDKAccept(t *testing.T) {
	var accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		_, _ = w.Write([]byte("line\n"))
	}))
	t.Cleanup(srv.Close)
	rc, err := newClient(t, srv.URL+"/v1", testKey, nil).DownloadFile(context.Background(), "file-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if accept != "application/binary" || string(b) != "line\n" {
		t.Errorf("Accept = %q, body %q; want application/binary", accept, b)
	}
}

// TestMalformedListItemIsSkipped: one job with a malformed timestamp skips
// that job, not the list.
func TestMalformedListItemIsSkipped(t *testing.T) {
	body := `{"data":[{"id":"ft-good","status":"running","user_id":"u","created_at":"2026-07-01T10:00:00Z","updated_at":"2026-07-01T10:00:00Z"},` +
		`{"id":"ft-bad","status":"running","user_id":"u","created_at":"yesterday","updated_at":"2026-07-01T10:00:00Z"}]}`
	u, _ := serveFixture(t, []byte(body), 200)
	c := newClient(t, u, testKey, nil)
	jobs, bad, err := c.ListFineTunesReport(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].ID != "ft-good" || len(bad) != 1 || bad[0].ID != "ft-bad" || bad[0].Err == nil {
		t.Errorf("ListFineTunesReport = %+v, %+v, %v; want ft-good kept and ft-bad reported", jobs, bad, err)
	}
	if jobs, err := c.ListFineTunes(context.Background()); err != nil || len(jobs) != 1 {
		t.Errorf("ListFineTunes = %+v, %v", jobs, err)
	}
}
