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

package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/workload"
)

// The plugin's commands run against a real API server with the project's
// CRDs, as they would against a cluster.
var (
	k8s     client.Client
	restCfg *rest.Config
)

func TestMain(m *testing.M) {
	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		panic("starting the API server (KUBEBUILDER_ASSETS, `make envtest`): " + err.Error())
	}
	restCfg = cfg
	k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "plugin-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// together runs `kubectl together ARGS...` in namespace ns and returns its
// output.
func together(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut, &env{c: k8s, namespace: ns})
	return out.String() + errOut.String(), err
}

func f(v float64) *float64 { return &v }

// createFineTune creates a fine-tune that adopts a job, then writes its status
// as the operator would.
func createFineTune(t *testing.T, ns, name string, st togetherv1.TogetherFineTuneStatus) {
	t.Helper()
	ctx := context.Background()
	ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-" + name}}
	if err := k8s.Create(ctx, ft); err != nil {
		t.Fatal(err)
	}
	ft.Status = st
	if err := k8s.Status().Update(ctx, ft); err != nil {
		t.Fatal(err)
	}
}

func checkpoints(losses ...float64) []togetherv1.Checkpoint {
	var cps []togetherv1.Checkpoint
	for i, l := range losses {
		cps = append(cps, togetherv1.Checkpoint{Step: int64(10 * (i + 1)), Loss: f(l)})
	}
	return cps
}

func TestStatusShowsEveryKindAndASparklinePerRunningFineTune(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	now := metav1.Now()
	createFineTune(t, ns, "support-bot", togetherv1.TogetherFineTuneStatus{
		Phase: togetherv1.FineTuneRunning, Step: 50, Loss: f(0.5), Checkpoints: checkpoints(2.0, 1.5, 1.0, 0.75, 0.5),
		Conditions: []metav1.Condition{{Type: togetherv1.ReadyCondition, Status: metav1.ConditionFalse, Reason: "Running", Message: "m", LastTransitionTime: now}},
	})
	createFineTune(t, ns, "done-bot", togetherv1.TogetherFineTuneStatus{
		Phase: togetherv1.FineTuneSucceeded, Step: 30, Loss: f(0.3), EvalLoss: f(0.4), Checkpoints: checkpoints(1, 0.5, 0.3),
		Conditions: []metav1.Condition{{Type: togetherv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: "Succeeded", Message: "m", LastTransitionTime: now}},
	})
	if err := k8s.Create(ctx, &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}, Spec: togetherv1.TogetherBatchSpec{BatchID: "batch-1"}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llama-old"},
		Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "meta/old", ReplacementModel: "meta/new", Strategy: togetherv1.MigrationManual}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "hook"}}}); err != nil {
		t.Fatal(err)
	}

	out, err := together(t, ns, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	t.Log("\n" + out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "KIND") {
		t.Fatalf("want a header and 5 rows, got:\n%s", out)
	}
	rowOf := func(name string) string {
		for _, l := range lines {
			if strings.Contains(l, " "+name+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s in:\n%s", name, out)
		return ""
	}
	for name, kind := range map[string]string{"default": "tws", "support-bot": "tft", "done-bot": "tft", "nightly": "tbatch", "llama-old": "tmm"} {
		if r := rowOf(name); !strings.HasPrefix(r, kind+" ") {
			t.Errorf("row %q: want kind %s", r, kind)
		}
	}
	// The running fine-tune's loss fell at every checkpoint: its sparkline
	// starts at the top block and ends at the bottom one.
	if r := rowOf("support-bot"); !strings.Contains(r, "█") || !strings.HasSuffix(strings.TrimSpace(r), "▁") || !strings.Contains(r, "step 50") || !strings.Contains(r, "loss 0.5") {
		t.Errorf("running fine-tune row lacks its step, loss or falling sparkline: %q", r)
	}
	if r := rowOf("done-bot"); strings.ContainsAny(r, string(sparks)) || !strings.Contains(r, "eval 0.4") || !strings.Contains(r, "True") {
		t.Errorf("a finished fine-tune shows its eval loss and no sparkline: %q", r)
	}
	if r := rowOf("llama-old"); !strings.Contains(r, "meta/old -> meta/new") {
		t.Errorf("migration row: %q", r)
	}

	other := newNamespace(t)
	if out, _ := together(t, other, "status"); !strings.Contains(out, "No together.ai resources") {
		t.Errorf("status in an empty namespace: %q", out)
	}
	if out, _ := together(t, other, "status", "-A"); !strings.Contains(out, "support-bot") {
		t.Errorf("status -A does not list other namespaces:\n%s", out)
	}
}

func TestPlotDrawsTheLossCurveAndEvalLoss(t *testing.T) {
	ns := newNamespace(t)
	createFineTune(t, ns, "curve", togetherv1.TogetherFineTuneStatus{
		Phase: togetherv1.FineTuneSucceeded, Step: 50, Loss: f(0.2), EvalLoss: f(1.1),
		Checkpoints: checkpoints(2.0, 1.6, 1.0, 0.5, 0.2),
	})
	out, err := together(t, ns, "plot", "tft/curve", "--width", "41", "--height", "10")
	if err != nil {
		t.Fatalf("plot: %v\n%s", err, out)
	}
	t.Log("\n" + out)
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if _, plotArea, ok := strings.Cut(l, "┤"); ok {
			rows = append(rows, plotArea)
		}
	}
	if len(rows) != 10 {
		t.Fatalf("want 10 plot rows, got %d:\n%s", len(rows), out)
	}
	top, bottom := []rune(rows[0]), []rune(rows[len(rows)-1])
	if top[0] != '*' {
		t.Errorf("the highest loss (first checkpoint) belongs top left: %q", rows[0])
	}
	if bottom[len(bottom)-1] != '*' {
		t.Errorf("the lowest loss (last checkpoint) belongs bottom right: %q", rows[len(rows)-1])
	}
	stars, evalRows := 0, 0
	for _, r := range rows {
		stars += strings.Count(r, "*")
		if strings.Count(r, "-") > 30 {
			evalRows++
		}
	}
	if stars != 5 || evalRows != 1 {
		t.Errorf("want 5 checkpoints and one eval-loss line, got %d and %d:\n%s", stars, evalRows, out)
	}
	if !strings.Contains(out, "step 10") || !strings.Contains(out, "50") || !strings.Contains(out, "eval loss 1.1") {
		t.Errorf("axis or legend missing:\n%s", out)
	}

	if _, err := together(t, ns, "plot", "tft/missing"); err == nil || !strings.Contains(err.Error(), "no TogetherFineTune missing") {
		t.Errorf("plot of a missing fine-tune: %v", err)
	}
	if _, err := together(t, ns, "plot", "tmm/curve"); err == nil {
		t.Error("plot of a migration must be refused")
	}
}

func TestSendSignsAsThePushContractSays(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	secret := "plugin-test-secret"
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, Data: map[string][]byte{"secret": []byte(secret)}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "hook"}}}); err != nil {
		t.Fatal(err)
	}
	type delivery struct {
		path string
		h    http.Header
		body []byte
	}
	got := make(chan delivery, 1)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.URL.Path, r.Header.Clone(), b}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"status":"applied"}`))
	}))
	defer recv.Close()

	out, err := together(t, ns, "send", "--url", recv.URL, "--subscription", "default", "--type", "fine_tune.checkpoint",
		"--data", `{"fine_tune_id":"ft-1","step":10,"loss":1.5}`, "--id", "evt_plugin_1")
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	d := <-got
	if d.path != "/webhooks/together/"+ns+"/default" {
		t.Errorf("posted to %s, want the subscription's path", d.path)
	}
	// Signatures computed here from the secret, independently of the code
	// under test: hex HMAC of the body, and Standard Webhooks' base64 HMAC
	// of id.timestamp.body.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(d.body)
	if want := hex.EncodeToString(mac.Sum(nil)); d.h.Get("X-Together-Signature") != want && d.h.Get("X-Together-Signature") != "sha256="+want {
		t.Errorf("X-Together-Signature %q, want the hex HMAC %s", d.h.Get("X-Together-Signature"), want)
	}
	mac = hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(d.h.Get("webhook-id") + "." + d.h.Get("webhook-timestamp") + "." + string(d.body)))
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); d.h.Get("webhook-signature") != want {
		t.Errorf("webhook-signature %q, want %q", d.h.Get("webhook-signature"), want)
	}
	var env struct {
		ID, Type  string
		CreatedAt time.Time `json:"created_at"`
		Data      map[string]any
	}
	if err := json.Unmarshal(d.body, &env); err != nil {
		t.Fatal(err)
	}
	if env.ID != "evt_plugin_1" || d.h.Get("webhook-id") != env.ID || env.Type != "fine_tune.checkpoint" || env.Data["loss"] != 1.5 || time.Since(env.CreatedAt) > time.Minute {
		t.Errorf("envelope %+v", env)
	}
	if !strings.Contains(out, "HTTP 200") {
		t.Errorf("output does not show the answer: %q", out)
	}

	// A refusal is reported with its code, and fails the command.
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"bad signature"}`))
	}))
	defer refuse.Close()
	out, err = together(t, ns, "send", "--url", refuse.URL+"/webhooks/together/x/y", "--secret", "wrong", "--type", "batch.done", "--data", `{}`)
	if err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "bad signature") {
		t.Errorf("a refused event: err %v, output %q", err, out)
	}
	if _, err := together(t, ns, "send", "--url", recv.URL, "--secret", "s", "--type", "batch.done", "--data", `{not json`); err == nil {
		t.Error("invalid --data must be refused before sending")
	}
}

func TestApproveAndRollback(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llama-old"},
		Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "meta/old", ReplacementModel: "meta/new", Strategy: togetherv1.MigrationManual}}
	if err := k8s.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	if out, err := together(t, ns, "approve", "tmm/llama-old"); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		t.Fatal(err)
	}
	if m.Annotations[togetherv1.ApproveMigrationAnnotation] != "true" {
		t.Fatalf("annotations after approve: %v", m.Annotations)
	}

	// Workloads as migrations leave them: the new model in their env, and
	// the rollback recorded in an annotation — in the current format, and in
	// the two formats earlier versions wrote (a migration's JSON patch, a
	// fine-tune's previous value), which the rollback still reads.
	record := func(key string) string {
		return `[{"op":"test","path":"/spec/template/spec/containers/0/env/0/value","value":"meta/new"},` +
			`{"op":"replace","path":"/spec/template/spec/containers/0/env/0/value","value":"meta/old"},` +
			`{"op":"remove","path":"/metadata/annotations/` + strings.ReplaceAll(key, "/", "~1") + `"}]`
	}
	deploy := func(name, model string, annotations map[string]string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: model}}}}},
			}},
		}
	}
	migrated := deploy("chat-app", "meta/new", map[string]string{togetherv1.RollbackAnnotation: record(togetherv1.RollbackAnnotation)})
	changed := deploy("edited-by-hand", "meta/other", map[string]string{togetherv1.RollbackAnnotation: record(togetherv1.RollbackAnnotation)})
	oldMigration := deploy("old-migration", "meta/new", map[string]string{
		togetherv1.LegacyMigrationRollbackAnnotation:      record(togetherv1.LegacyMigrationRollbackAnnotation),
		togetherv1.LegacyMigrationPreviousModelAnnotation: "meta/old",
	})
	oldFineTune := deploy("old-fine-tune", "meta/new", map[string]string{"together.ai/previous-model.app.TOGETHER_MODEL": "meta/old"})
	for _, d := range []*appsv1.Deployment{migrated, changed, oldMigration, oldFineTune} {
		if err := k8s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	now := metav1.Now()
	m.Status.Targets = []togetherv1.MigrationTarget{
		{Kind: "Deployment", Name: "chat-app", Container: "app", Field: "env[TOGETHER_MODEL]", From: "meta/old", To: "meta/new", PatchedAt: &now},
		{Kind: "Deployment", Name: "edited-by-hand", Container: "app", Field: "env[TOGETHER_MODEL]", From: "meta/old", To: "meta/new", PatchedAt: &now},
		{Kind: "Deployment", Name: "old-migration", Container: "app", Field: "env[TOGETHER_MODEL]", From: "meta/old", To: "meta/new", PatchedAt: &now},
		{Kind: "Deployment", Name: "old-fine-tune", Container: "app", Field: "env[TOGETHER_MODEL]", From: "meta/old", To: "meta/new", PatchedAt: &now},
	}
	if err := k8s.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}

	out, err := together(t, ns, "rollback", "tmm/llama-old")
	t.Log("\n" + out)
	if err == nil || !strings.Contains(err.Error(), "1 workloads") {
		t.Errorf("a workload changed since the migration must be reported as not restored: err %v", err)
	}
	for _, d := range []*appsv1.Deployment{migrated, oldMigration, oldFineTune} {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			t.Fatal(err)
		}
		if v := d.Spec.Template.Spec.Containers[0].Env[0].Value; v != "meta/old" {
			t.Errorf("%s's model after rollback = %q, want meta/old", d.Name, v)
		}
		if len(d.Annotations) != 0 {
			t.Errorf("%s: the applied rollback removes its own record; annotations left: %v", d.Name, d.Annotations)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(changed), changed); err != nil {
		t.Fatal(err)
	}
	if v := changed.Spec.Template.Spec.Containers[0].Env[0].Value; v != "meta/other" {
		t.Errorf("a workload edited since the migration must be left alone, has %q", v)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		t.Fatal(err)
	}
	if !m.Spec.DryRun {
		t.Error("rollback must stop the migration (spec.dryRun=true) so it does not migrate the workloads again")
	}
	// A second rollback finds nothing left to restore on chat-app.
	out, _ = together(t, ns, "rollback", "llama-old")
	if !strings.Contains(out, "chat-app: no rollback record") {
		t.Errorf("second rollback: %q", out)
	}
}

// A fine-tune's rollback applies its Deployment's one record — written by
// the operator's deploy step, or by an earlier version in the old
// previous-value annotation — and says so; a fine-tune that deployed
// nothing is refused.
func TestRollbackFineTune(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	mk := func(name, model string, annotations map[string]string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app",
					Env: []corev1.EnvVar{{Name: "A", Value: "a"}, {Name: "TOGETHER_MODEL", Value: model}}}}},
			}},
		}
		if err := k8s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// "current": deployed by the operator's own patch (the deploy step's
	// helper), against the real API server.
	cur := mk("current", "org/base", nil)
	w := workload.Workload{Annotations: cur.Annotations, Template: &cur.Spec.Template, ResourceVersion: cur.ResourceVersion}
	ch, err := workload.SetEnv(w, "app", "TOGETHER_MODEL", "me/ft-model")
	if err != nil {
		t.Fatal(err)
	}
	patch, err := workload.Patch(w, []workload.Change{ch}, workload.Options{PinVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := workload.Apply(ctx, k8s, cur, patch); err != nil {
		t.Fatalf("deploying: %v", err)
	}
	old := mk("old", "me/ft-model", map[string]string{"together.ai/previous-model.app.TOGETHER_MODEL": "org/base"})

	for _, d := range []string{"current", "old", ""} {
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ft-" + d},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1"}}
		if d == "" {
			ft.Name = "nothing"
		}
		if err := k8s.Create(ctx, ft); err != nil {
			t.Fatal(err)
		}
		if d != "" {
			ft.Status.Deployment = &togetherv1.DeploymentStatus{Name: d, Container: "app", PreviousValue: "org/base"}
			if err := k8s.Status().Update(ctx, ft); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []*appsv1.Deployment{cur, old} {
		out, err := together(t, ns, "rollback", "tft/ft-"+d.Name)
		if err != nil {
			t.Fatalf("rollback tft/ft-%s: %v\n%s", d.Name, err, out)
		}
		if !strings.Contains(out, "Deployment/"+d.Name+": restored") {
			t.Errorf("rollback output: %q", out)
		}
		got := &appsv1.Deployment{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
			t.Fatal(err)
		}
		if env := got.Spec.Template.Spec.Containers[0].Env; len(env) != 2 || env[1].Value != "org/base" {
			t.Errorf("%s: env after rollback = %v, want TOGETHER_MODEL=org/base", d.Name, env)
		}
		if len(got.Annotations) != 0 {
			t.Errorf("%s: annotations after rollback = %v, want none", d.Name, got.Annotations)
		}
	}
	if _, err := together(t, ns, "rollback", "tft/nothing"); err == nil || !strings.Contains(err.Error(), "status.deployment") {
		t.Errorf("rollback of a fine-tune that deployed nothing: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	if out, err := together(t, "default", "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v %q", err, out)
	}
	if _, err := together(t, "default", "approve"); err == nil {
		t.Error("approve without a name must fail")
	}
	if out, err := together(t, "default", "help"); err != nil || !strings.Contains(out, "rollback tmm/NAME") {
		t.Errorf("help: %v %q", err, out)
	}
}
