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

package validation_test

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/testenv"
)

// These tests hand the API server the specs a user could get wrong and check
// that the CRD schema (OpenAPI and CEL rules) rejects each one with a message
// naming the field, and accepts the well-formed ones.

var k8s client.Client

func TestMain(m *testing.M) {
	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		panic("starting envtest (run `make envtest` or set KUBEBUILDER_ASSETS): " + err.Error())
	}
	scheme := runtime.NewScheme()
	if err := togetherv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	if code != 0 {
		panic("tests failed")
	}
}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default"}
}

type schemaCase struct {
	name    string
	obj     client.Object
	wantErr []string // substrings the rejection must contain; empty = accepted
}

func runCases(t *testing.T, cases []schemaCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tc.obj)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("expected the spec to be accepted, got: %v", err)
				}
				_ = k8s.Delete(context.Background(), tc.obj)
				return
			}
			if err == nil {
				_ = k8s.Delete(context.Background(), tc.obj)
				t.Fatalf("expected rejection mentioning %q, but the API server accepted it", tc.wantErr)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("expected an Invalid error, got %v", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("rejection %q does not mention %q", err.Error(), want)
				}
			}
		})
	}
}

func TestFineTuneSchema(t *testing.T) {
	training := &togetherv1.TrainingSpec{Model: "meta-llama/x", TrainingFile: "file-1"}
	runCases(t, []schemaCase{
		{"adopt by job id", &togetherv1.TogetherFineTune{ObjectMeta: meta("ok-adopt"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1"}}, nil},
		{"submit", &togetherv1.TogetherFineTune{ObjectMeta: meta("ok-submit"), Spec: togetherv1.TogetherFineTuneSpec{Training: training}}, nil},
		{"neither jobID nor training", &togetherv1.TogetherFineTune{ObjectMeta: meta("neither")},
			[]string{"spec.jobID", "spec.training"}},
		{"both jobID and training", &togetherv1.TogetherFineTune{ObjectMeta: meta("both"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", Training: training}},
			[]string{"exactly one of spec.jobID"}},
		{"training file and data", &togetherv1.TogetherFineTune{ObjectMeta: meta("two-sources"), Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{
			Model: "m", TrainingFile: "f", TrainingData: &togetherv1.ConfigMapKeyRef{Name: "cm", Key: "k"}}}},
			[]string{"spec.training.trainingFile"}},
		{"adopted job with Cancel", &togetherv1.TogetherFineTune{ObjectMeta: meta("adopt-cancel"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", DeletionPolicy: togetherv1.DeletionPolicyCancel}},
			[]string{"spec.deletionPolicy Cancel cannot apply to an adopted job (spec.jobID)", "Remove spec.deletionPolicy"}},
		{"adopted job with Retain", &togetherv1.TogetherFineTune{ObjectMeta: meta("adopt-retain"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", DeletionPolicy: togetherv1.DeletionPolicyRetain}}, nil},
		{"adopted job with Cancel for its own endpoint", &togetherv1.TogetherFineTune{ObjectMeta: meta("adopt-cancel-ep"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", DeletionPolicy: togetherv1.DeletionPolicyCancel,
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb", MinReplicas: 1, MaxReplicas: 1}}}}, nil},
		{"submitted job with Cancel", &togetherv1.TogetherFineTune{ObjectMeta: meta("submit-cancel"), Spec: togetherv1.TogetherFineTuneSpec{Training: training, DeletionPolicy: togetherv1.DeletionPolicyCancel}}, nil},
		{"bad deletion policy", &togetherv1.TogetherFineTune{ObjectMeta: meta("bad-policy"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", DeletionPolicy: "Delete"}},
			[]string{"spec.deletionPolicy", "Unsupported value"}},
		{"learning rate out of range", &togetherv1.TogetherFineTune{ObjectMeta: meta("bad-lr"), Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{
			Model: "m", TrainingFile: "f", LearningRate: ptr.To(2.0)}}},
			[]string{"spec.training.learningRate"}},
		{"endpoint max below min", &togetherv1.TogetherFineTune{ObjectMeta: meta("bad-replicas"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb", MinReplicas: 3, MaxReplicas: 1}}}},
			[]string{"maxReplicas must be at least minReplicas"}},
		{"endpoint on a v2 instance type", &togetherv1.TogetherFineTune{ObjectMeta: meta("ok-endpoint"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "2xnvidia-h100-80gb", MinReplicas: 1, MaxReplicas: 2}}}}, nil},
		{"endpoint on a pinned config", &togetherv1.TogetherFineTune{ObjectMeta: meta("ok-config"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Config: "projects/proj_x/configs/cr_abc", MinReplicas: 1, MaxReplicas: 1}}}}, nil},
		{"endpoint with a v1 hardware id", &togetherv1.TogetherFineTune{ObjectMeta: meta("v1-hardware"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "1x_nvidia_a100_80gb_sxm", MinReplicas: 1, MaxReplicas: 1}}}},
			[]string{"spec.deploy.endpoint.hardware"}},
		{"endpoint with neither hardware nor config", &togetherv1.TogetherFineTune{ObjectMeta: meta("no-hardware"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{MinReplicas: 1, MaxReplicas: 1}}}},
			[]string{"set spec.deploy.endpoint.hardware"}},
		{"endpoint scaled to zero", &togetherv1.TogetherFineTune{ObjectMeta: meta("zero-min"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb", MinReplicas: 0, MaxReplicas: 1}}}},
			[]string{"spec.deploy.endpoint.minReplicas"}},
		{"retry attempts too many", &togetherv1.TogetherFineTune{ObjectMeta: meta("bad-retry"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1",
			Retry: &togetherv1.RetrySpec{MaxAttempts: 99}}},
			[]string{"spec.retry.maxAttempts"}},
	})
}

func TestFineTuneJobIDIsImmutable(t *testing.T) {
	ctx := context.Background()
	ft := &togetherv1.TogetherFineTune{ObjectMeta: meta("immutable"), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1"}}
	if err := k8s.Create(ctx, ft); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(ctx, ft) }()
	ft.Spec.JobID = "ft-2"
	err := k8s.Update(ctx, ft)
	if err == nil || !strings.Contains(err.Error(), "spec.jobID cannot be changed") {
		t.Fatalf("expected the change of jobID to be refused, got %v", err)
	}
}

func TestMigrationSchema(t *testing.T) {
	spec := func(mut func(*togetherv1.TogetherModelMigrationSpec)) togetherv1.TogetherModelMigrationSpec {
		s := togetherv1.TogetherModelMigrationSpec{ModelID: "old/m", ReplacementModel: "new/m", SunsetDate: "2027-01-31"}
		mut(&s)
		return s
	}
	runCases(t, []schemaCase{
		{"valid", &togetherv1.TogetherModelMigration{ObjectMeta: meta("ok"), Spec: spec(func(*togetherv1.TogetherModelMigrationSpec) {})}, nil},
		{"bad date", &togetherv1.TogetherModelMigration{ObjectMeta: meta("bad-date"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) { s.SunsetDate = "31/01/2027" })},
			[]string{"spec.sunsetDate"}},
		{"bad strategy", &togetherv1.TogetherModelMigration{ObjectMeta: meta("bad-strategy"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) { s.Strategy = "Later" })},
			[]string{"spec.strategy", "Unsupported value"}},
		{"before sunset without date", &togetherv1.TogetherModelMigration{ObjectMeta: meta("no-date"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.Strategy = togetherv1.MigrationBeforeSunset
			s.SunsetDate = ""
		})}, []string{"spec.sunsetDate is required"}},
		{"replacement equals model", &togetherv1.TogetherModelMigration{ObjectMeta: meta("same"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) { s.ReplacementModel = "old/m" })},
			[]string{"spec.replacementModel must differ"}},
		{"missing model", &togetherv1.TogetherModelMigration{ObjectMeta: meta("no-model"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) { s.ModelID = "" })},
			[]string{"spec.modelID"}},
		// Issue 13: values that are not model IDs must not be nameable.
		{"url as model", &togetherv1.TogetherModelMigration{ObjectMeta: meta("url"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.ModelID, s.ReplacementModel = "https://api.together.xyz/v1", "https://attacker.example/v1"
		})}, []string{"spec.modelID", "spec.replacementModel"}},
		{"command as model", &togetherv1.TogetherModelMigration{ObjectMeta: meta("cmd"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.ModelID, s.ReplacementModel = "python", "sh"
		})}, []string{"spec.modelID", "spec.replacementModel"}},
		{"empty selector", &togetherv1.TogetherModelMigration{ObjectMeta: meta("all"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.Selector = &metav1.LabelSelector{}
		})}, []string{"spec.selector must select something"}},
		{"bad env name", &togetherv1.TogetherModelMigration{ObjectMeta: meta("env"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.EnvNames = []string{"NOT A NAME"}
		})}, []string{"spec.envNames"}},
		{"selector and env names", &togetherv1.TogetherModelMigration{ObjectMeta: meta("ok-sel"), Spec: spec(func(s *togetherv1.TogetherModelMigrationSpec) {
			s.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
			s.EnvNames = []string{"CHAT_MODEL"}
		})}, nil},
	})
}

func TestBatchSchema(t *testing.T) {
	in := &togetherv1.BatchInput{FileID: "file-1"}
	keyRef := &togetherv1.APIKeySecretRef{Name: "together-key"}
	runCases(t, []schemaCase{
		{"adopt", &togetherv1.TogetherBatch{ObjectMeta: meta("ok-adopt"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b-1"}}, nil},
		{"submit", &togetherv1.TogetherBatch{ObjectMeta: meta("ok-submit"), Spec: togetherv1.TogetherBatchSpec{Input: in, Model: "m",
			Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "out"}}}}, nil},
		{"neither", &togetherv1.TogetherBatch{ObjectMeta: meta("neither")}, []string{"spec.batchID", "spec.input"}},
		{"adopted batch with Cancel", &togetherv1.TogetherBatch{ObjectMeta: meta("adopt-cancel"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b-1", DeletionPolicy: togetherv1.DeletionPolicyCancel}},
			[]string{"spec.deletionPolicy Cancel cannot apply to an adopted batch (spec.batchID)"}},
		{"adopted batch with Retain", &togetherv1.TogetherBatch{ObjectMeta: meta("adopt-retain"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b-1", DeletionPolicy: togetherv1.DeletionPolicyRetain}}, nil},
		{"both", &togetherv1.TogetherBatch{ObjectMeta: meta("both"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Input: in, Model: "m"}},
			[]string{"exactly one of spec.batchID"}},
		{"input without model", &togetherv1.TogetherBatch{ObjectMeta: meta("no-model"), Spec: togetherv1.TogetherBatchSpec{Input: in}},
			[]string{"spec.model is required"}},
		{"two outputs", &togetherv1.TogetherBatch{ObjectMeta: meta("two-out"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Output: &togetherv1.BatchOutput{
			ConfigMap: &togetherv1.ConfigMapOutput{Name: "o"}, PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "c", APIKeySecretRef: keyRef}}}},
			[]string{"exactly one of spec.output.configMap"}},
		{"path escapes volume", &togetherv1.TogetherBatch{ObjectMeta: meta("escape"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Output: &togetherv1.BatchOutput{
			PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "c", Path: "a/../../etc", APIKeySecretRef: keyRef}}}},
			[]string{"spec.output.persistentVolumeClaim.path"}},
		{"volume output with the deprecated key Secret", &togetherv1.TogetherBatch{ObjectMeta: meta("pvc-ok"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Output: &togetherv1.BatchOutput{
			PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "c", APIKeySecretRef: keyRef}}}}, nil},
		// The fetch Job uses the batch's own account's Secret: the output
		// needs none of its own.
		{"volume output without a key Secret", &togetherv1.TogetherBatch{ObjectMeta: meta("pvc-nokey"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Output: &togetherv1.BatchOutput{
			PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "c"}}}}, nil},
		{"bad endpoint", &togetherv1.TogetherBatch{ObjectMeta: meta("bad-endpoint"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Endpoint: "/v1/embeddings"}},
			[]string{"spec.endpoint", "Unsupported value"}},
		{"completions is not a batch endpoint", &togetherv1.TogetherBatch{ObjectMeta: meta("completions"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Endpoint: "/v1/completions"}},
			[]string{"spec.endpoint", "Unsupported value"}},
		{"audio transcriptions", &togetherv1.TogetherBatch{ObjectMeta: meta("transcriptions"), Spec: togetherv1.TogetherBatchSpec{BatchID: "b", Endpoint: "/v1/audio/transcriptions"}}, nil},
	})
}

func TestSubscriptionSchema(t *testing.T) {
	ref := togetherv1.WebhookSecretRef{Name: "s"}
	runCases(t, []schemaCase{
		{"valid", &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta("ok"), Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: ref,
			Events: []togetherv1.EventType{togetherv1.EventBatchDone}}}, nil},
		{"unknown event type", &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta("bad-type"), Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: ref,
			Events: []togetherv1.EventType{"fine_tune.started"}}}, []string{"spec.events[0]", "Unsupported value"}},
		{"register without url", &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta("no-url"), Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: ref, Register: true}},
			[]string{"spec.url is required when spec.register is true"}},
		{"url not http", &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta("bad-url"), Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: ref, URL: "ftp://x"}},
			[]string{"spec.url"}},
		{"missing secret name", &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta("no-secret")},
			[]string{"spec.secretRef.name"}},
	})
}

// spec.apiKeySecretRef names a Secret of the resource's own namespace (there
// is no namespace field to fill in): the name must be one a Secret can have,
// the key one a Secret's data can hold, and the key defaults to api-key as in
// the namespace default Secret.
func TestAPIKeySecretRefSchema(t *testing.T) {
	ft := func(name string, ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherFineTune {
		return &togetherv1.TogetherFineTune{ObjectMeta: meta(name), Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-1", APIKeySecretRef: ref}}
	}
	sub := func(name string, ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherWebhookSubscription {
		return &togetherv1.TogetherWebhookSubscription{ObjectMeta: meta(name), Spec: togetherv1.TogetherWebhookSubscriptionSpec{
			SecretRef: togetherv1.WebhookSecretRef{Name: "s"}, APIKeySecretRef: ref}}
	}
	tb := func(name string, ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherBatch {
		return &togetherv1.TogetherBatch{ObjectMeta: meta(name), Spec: togetherv1.TogetherBatchSpec{BatchID: "b-1", APIKeySecretRef: ref}}
	}
	runCases(t, []schemaCase{
		{"fine-tune with a Secret", ft("key-ok", &togetherv1.APIKeySecretRef{Name: "team-a.keys", Key: "TOGETHER_API_KEY"}), nil},
		{"fine-tune Secret name not a DNS subdomain", ft("key-bad-name", &togetherv1.APIKeySecretRef{Name: "Team_A"}), []string{"spec.apiKeySecretRef.name"}},
		{"fine-tune Secret name with a namespace", ft("key-ns", &togetherv1.APIKeySecretRef{Name: "other/key"}), []string{"spec.apiKeySecretRef.name"}},
		{"fine-tune key not a Secret key", ft("key-bad-key", &togetherv1.APIKeySecretRef{Name: "k", Key: "a/b"}), []string{"spec.apiKeySecretRef.key"}},
		{"subscription Secret name empty", sub("key-empty", &togetherv1.APIKeySecretRef{}), []string{"spec.apiKeySecretRef.name"}},
		{"batch Secret name not a DNS subdomain", tb("key-bad-batch", &togetherv1.APIKeySecretRef{Name: "-x"}), []string{"spec.apiKeySecretRef.name"}},
		{"migration Secret name not a DNS subdomain", &togetherv1.TogetherModelMigration{ObjectMeta: meta("key-bad-migration"),
			Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "org/a", ReplacementModel: "org/b",
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: "a b"}}},
			[]string{"spec.apiKeySecretRef.name"}},
	})

	got := ft("key-default", &togetherv1.APIKeySecretRef{Name: "team-a"})
	if err := k8s.Create(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(context.Background(), got) }()
	if got.Spec.APIKeySecretRef.Key != "api-key" {
		t.Errorf("spec.apiKeySecretRef.key defaulted to %q, want api-key", got.Spec.APIKeySecretRef.Key)
	}
}
