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
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"time"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"

	"github.com/together-operator/together-operator/pkg/push"
)

const (
	key    = "sim-key"
	secret = "whsec-test"
)

func start(t *testing.T, o togethersim.Options) *togethersim.Server {
	t.Helper()
	o.APIKey = key
	o.DeliveryRetryMin, o.DeliveryRetryMax = time.Millisecond, 5*time.Millisecond
	s := togethersim.New(o)
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *togethersim.Server) *together.Client {
	t.Helper()
	c, err := together.New(together.Options{BaseURL: s.URL(), APIKey: key, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// receiver verifies both signature forms and hands each verified envelope
// to the channel; status decides each answer (nil: 200).
func receiver(t *testing.T, status func(n int64) int) (string, <-chan push.Envelope) {
	t.Helper()
	ch := make(chan push.Envelope, 100)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !push.VerifyHex(r.Header.Get(push.HeaderSignature), body, []byte(secret)) ||
			!push.VerifyStandard(r.Header.Get(push.HeaderWebhookID), r.Header.Get(push.HeaderWebhookTimestamp),
				r.Header.Get(push.HeaderWebhookSignature), body, time.Now(), time.Minute, []byte(secret)) {
			t.Errorf("delivery with bad signatures: %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if status != nil {
			if code := status(n.Add(1)); code != http.StatusOK {
				w.WriteHeader(code)
				return
			}
		}
		var env push.Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			t.Errorf("bad envelope: %v", err)
		}
		ch <- env
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func recv(t *testing.T, ch <-chan push.Envelope) push.Envelope {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
		return push.Envelope{}
	}
}

func TestRequiresKey(t *testing.T) {
	s := start(t, togethersim.Options{})
	resp, err := http.Get(s.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"invalid_api_key"`) {
		t.Errorf("no key: %d %s", resp.StatusCode, body)
	}
}

func TestFineTuneEventsAreDelivered(t *testing.T) {
	ctx := context.Background()
	s := start(t, togethersim.Options{TotalSteps: 2})
	url, ch := receiver(t, nil)
	s.RegisterWebhook(url, nil, secret)
	c := client(t, s)
	f := s.AddFile("t.jsonl", "fine-tune", []byte(`{"text":"x"}`))
	ft, err := c.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "org/base", TrainingFile: f.ID, ValidationFile: f.ID, NEvals: 1, Suffix: "sfx"})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s.Advance()
	}
	var types []string
	var completed push.FineTuneCompleted
	for range 3 {
		e := recv(t, ch)
		types = append(types, e.Type)
		if e.Type == "fine_tune.completed" {
			_ = json.Unmarshal(e.Data, &completed)
		}
	}
	if strings.Join(types, ",") != "fine_tune.checkpoint,fine_tune.checkpoint,fine_tune.completed" {
		t.Errorf("event types = %v", types)
	}
	if completed.FineTuneID != ft.ID || !strings.Contains(completed.ModelName, "-sfx-") || completed.EvalLoss == nil {
		t.Errorf("completed = %+v", completed)
	}
}

func TestDeliveryRetriesNon2xx(t *testing.T) {
	s := start(t, togethersim.Options{})
	url, ch := receiver(t, func(n int64) int {
		if n <= 2 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	s.RegisterWebhook(url, []string{"model.deprecated"}, secret)
	s.DeprecateModel("m", "m2", "2027-01-01")
	e := recv(t, ch)
	var d push.ModelDeprecated
	_ = json.Unmarshal(e.Data, &d)
	if d.ModelID != "m" || d.ReplacementModel != "m2" || d.SunsetDate != "2027-01-01" {
		t.Errorf("data = %+v", d)
	}
}

func TestDeliveryFaults(t *testing.T) {
	t.Run("drop", func(t *testing.T) {
		s := start(t, togethersim.Options{})
		url, ch := receiver(t, nil)
		s.RegisterWebhook(url, nil, secret)
		s.Faults().SetDelivery(1, 0, 0, 0)
		s.DeprecateModel("dropped", "x", "2027-01-01")
		s.Faults().SetDelivery(0, 0, 0, 0)
		s.DeprecateModel("kept", "x", "2027-01-01")
		// The sender is sequential, so "kept" arriving first proves the
		// earlier one was dropped, not late.
		if e := recv(t, ch); !strings.Contains(string(e.Data), "kept") {
			t.Errorf("first delivery = %s, want the one after the drop", e.Data)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		s := start(t, togethersim.Options{})
		url, ch := receiver(t, nil)
		s.RegisterWebhook(url, nil, secret)
		s.Faults().SetDelivery(0, 1, 0, 0)
		s.DeprecateModel("m", "x", "2027-01-01")
		if a, b := recv(t, ch), recv(t, ch); a.ID != b.ID {
			t.Errorf("duplicate ids differ: %s %s", a.ID, b.ID)
		}
	})
	t.Run("reorder", func(t *testing.T) {
		s := start(t, togethersim.Options{})
		url, ch := receiver(t, nil)
		s.RegisterWebhook(url, nil, secret)
		s.Faults().SetDelivery(0, 0, 5, 0)
		var order []string
		for _, m := range []string{"m0", "m1", "m2", "m3", "m4"} {
			s.DeprecateModel(m, "x", "2027-01-01")
		}
		for range 5 {
			var d push.ModelDeprecated
			_ = json.Unmarshal(recv(t, ch).Data, &d)
			order = append(order, d.ModelID)
		}
		if strings.Join(order, ",") == "m0,m1,m2,m3,m4" {
			t.Errorf("deliveries kept their order with a reorder window: %v", order)
		}
	})
	t.Run("delay", func(t *testing.T) {
		s := start(t, togethersim.Options{})
		url, ch := receiver(t, nil)
		s.RegisterWebhook(url, nil, secret)
		s.Faults().SetDelivery(0, 0, 0, 150*time.Millisecond)
		begin := time.Now()
		s.DeprecateModel("m", "x", "2027-01-01")
		recv(t, ch)
		if d := time.Since(begin); d < 150*time.Millisecond {
			t.Errorf("delivered after %v, before the 150ms delay", d)
		}
	})
}

func TestRouteFaults(t *testing.T) {
	s := start(t, togethersim.Options{})
	c := client(t, s)
	ctx := context.Background()
	s.Faults().SetRoute(http.MethodGet, "/v1/batches", togethersim.RouteFault{Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 1})
	_, err := c.ListBatches(ctx)
	var api *together.APIError
	if !together.IsRateLimited(err) || !asAPI(err, &api) || api.RetryAfter != 2*time.Second {
		t.Errorf("429 fault: %v (%+v)", err, api)
	}
	if _, err := c.ListBatches(ctx); err != nil {
		t.Errorf("fault outlived Times: %v", err)
	}
	s.Faults().SetRoute("", "/v1/models", togethersim.RouteFault{Delay: 100 * time.Millisecond, Times: 1})
	begin := time.Now()
	if _, err := c.ListModels(ctx); err != nil || time.Since(begin) < 100*time.Millisecond {
		t.Errorf("slow route: err %v after %v", err, time.Since(begin))
	}
	s.Faults().RejectKey(true)
	if _, err := c.ListModels(ctx); !together.IsUnauthorized(err) {
		t.Errorf("rejected key: %v", err)
	}
	calls := s.Calls()
	if last := calls[len(calls)-1]; last.Status != http.StatusUnauthorized || last.Path != "/v1/models" {
		t.Errorf("last call = %+v", last)
	}
}

func asAPI(err error, target **together.APIError) bool {
	e, ok := err.(*together.APIError)
	*target = e
	return ok
}

func TestBatchScripts(t *testing.T) {
	ctx := context.Background()
	s := start(t, togethersim.Options{})
	c := client(t, s)
	url, ch := receiver(t, nil)
	s.RegisterWebhook(url, []string{"batch.done"}, secret)
	s.SetBatchScript(func(r togethersim.BatchRequest) bool { return r.ModelID == "fail" }, togethersim.BatchOutcome{Fail: "invalid input format"})
	s.SetBatchScript(func(r togethersim.BatchRequest) bool { return r.ModelID == "slow" }, togethersim.BatchOutcome{Expire: true})
	f := s.AddFile("in.jsonl", "batch-api", []byte(`{"custom_id":"a","body":{}}`))
	want := map[string]together.BatchStatus{}
	for _, m := range []string{"fail", "slow"} {
		b, err := c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", ModelID: m})
		if err != nil {
			t.Fatal(err)
		}
		want[b.ID] = map[string]together.BatchStatus{"fail": together.BatchFailed, "slow": together.BatchExpired}[m]
	}
	for range 10 {
		s.Advance()
	}
	for range 2 {
		var d push.BatchDone
		_ = json.Unmarshal(recv(t, ch).Data, &d)
		if together.BatchStatus(d.Status) != want[d.BatchID] || d.Error == "" {
			t.Errorf("batch.done = %+v, want status %s", d, want[d.BatchID])
		}
	}
	if _, err := c.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: "missing", Endpoint: "/v1/chat/completions"}); !together.IsInvalidRequest(err) {
		t.Errorf("missing input file: %v", err)
	}
}

func TestClockAdvancesOnItsOwn(t *testing.T) {
	s := start(t, togethersim.Options{StepInterval: 5 * time.Millisecond})
	c := client(t, s)
	e, err := s.AddV1Endpoint(togethersim.V1EndpointRequest{Model: "m", Hardware: "h", MinReplicas: 1, MaxReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func() (together.EndpointState, error) {
		got, err := c.GetEndpoint(context.Background(), e.ID)
		if err != nil {
			return "", err
		}
		return got.State, nil
	}, 5*time.Second, 5*time.Millisecond).Should(Equal(together.EndpointStarted), "waiting for the endpoint to start")
}

func TestListEndpoints(t *testing.T) {
	ctx := context.Background()
	s := start(t, togethersim.Options{})
	c := client(t, s)
	var created []string
	for _, m := range []string{"sim-user/a-ft", "sim-user/b-ft"} {
		e, err := s.AddV1Endpoint(togethersim.V1EndpointRequest{Model: m, Hardware: "h", DisplayName: "d", MinReplicas: 1, MaxReplicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, e.ID)
	}

	mine, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Mine: true, Type: together.EndpointTypeDedicated})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range mine {
		ids = append(ids, e.ID)
		if e.Type != "dedicated" || e.Owner != "sim-user" || !strings.HasPrefix(e.Model, "sim-user/") || e.Hardware != "" {
			t.Errorf("mine, dedicated item = %+v", e)
		}
	}
	NewWithT(t).Expect(ids).To(ConsistOf(created))
	all, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	models, _ := c.ListModels(ctx)
	if len(all) != 2+len(models) {
		t.Errorf("unfiltered list has %d endpoints, want 2 dedicated + %d serverless", len(all), len(models))
	}
	serverless, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Type: together.EndpointTypeServerless})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range serverless {
		if e.Type != "serverless" || e.Owner != "together" || e.State != together.EndpointStarted {
			t.Errorf("serverless item = %+v", e)
		}
	}
	if len(serverless) != len(models) {
		t.Errorf("type=serverless lists %d, want %d", len(serverless), len(models))
	}
	if none, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Mine: true, Type: together.EndpointTypeServerless}); err != nil || len(none) != 0 {
		t.Errorf("mine, serverless = %+v, %v", none, err)
	}

	t.Run("items drop display_name, hardware and autoscaling", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/endpoints?mine=true&type=dedicated", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Object string           `json:"object"`
			Data   []map[string]any `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.Object != "list" || len(body.Data) != 2 {
			t.Fatalf("envelope = %+v", body)
		}
		for _, k := range []string{"display_name", "hardware", "autoscaling"} {
			if _, ok := body.Data[0][k]; ok {
				t.Errorf("list item carries %q: %v", k, body.Data[0])
			}
		}
	})

	t.Run("bad filter", func(t *testing.T) {
		if _, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Type: "shared"}); !together.IsInvalidRequest(err) {
			t.Errorf("type=shared: %v", err)
		}
	})

	t.Run("route faults apply", func(t *testing.T) {
		s.Faults().SetRoute(http.MethodGet, "/v1/endpoints", togethersim.RouteFault{Status: 429, RetryAfter: time.Second, Times: 1})
		if _, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Mine: true}); !together.IsRateLimited(err) {
			t.Errorf("429 fault: %v", err)
		}
		if _, err := c.ListEndpoints(ctx, together.ListEndpointsOptions{Mine: true}); err != nil {
			t.Errorf("fault outlived Times: %v", err)
		}
	})
}

// TestIDsAreRandomUUIDs: IDs are in Together's formats (ft-<uuid>,
// file-<uuid>, a bare UUID for a batch) and drawn at random, so a restarted
// simulator, even with the same seed, cannot hand out an ID it gave before.
func TestIDsAreRandomUUIDs(t *testing.T) {
	uuid := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	formats := map[string]*regexp.Regexp{
		"ft": regexp.MustCompile(`^ft-` + uuid + `$`), "file": regexp.MustCompile(`^file-` + uuid + `$`), "batch": regexp.MustCompile(`^` + uuid + `$`),
	}
	seen := map[string]bool{}
	for run := range 2 { // two runs with the same seed, as a restart
		s := start(t, togethersim.Options{Seed: 7})
		c := client(t, s)
		for range 5 {
			f := s.AddFile("t.jsonl", "fine-tune", []byte(`{"text":"x"}`))
			ft, err := c.CreateFineTune(context.Background(), together.CreateFineTuneRequest{Model: "m", TrainingFile: f.ID})
			if err != nil {
				t.Fatal(err)
			}
			bf := s.AddFile("b.jsonl", "batch-api", []byte(`{"custom_id":"a","body":{}}`))
			b, err := c.CreateBatch(context.Background(), together.CreateBatchRequest{InputFileID: bf.ID, Endpoint: "/v1/chat/completions"})
			if err != nil {
				t.Fatal(err)
			}
			for kind, id := range map[string]string{"ft": ft.ID, "file": f.ID, "batch": b.ID} {
				if !formats[kind].MatchString(id) {
					t.Errorf("%s id %q is not in Together's format %s", kind, id, formats[kind])
				}
				if seen[id] {
					t.Errorf("run %d handed out %s again", run, id)
				}
				seen[id] = true
			}
		}
		s.Close()
	}
}
