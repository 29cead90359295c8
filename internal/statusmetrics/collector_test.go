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

package statusmetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/testenv"
)

func stalledCond(reason string) []metav1.Condition {
	return []metav1.Condition{{Type: togetherv1.StalledCondition, Status: metav1.ConditionTrue, Reason: reason, Message: "m", LastTransitionTime: metav1.Now()}}
}

// TestCollectorReportsStatus reads what a person would read in the
// resources' status, and a deleted resource's series go away with it.
func TestCollectorReportsStatus(t *testing.T) {
	loss := 0.42
	now := metav1.NewTime(time.Now())
	objs := []client.Object{
		&togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "bad"},
			Status: togetherv1.TogetherFineTuneStatus{Conditions: stalledCond("JobFailed")}},
		&togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "good"},
			Status: togetherv1.TogetherFineTuneStatus{EvalLoss: &loss, Conditions: []metav1.Condition{{Type: togetherv1.StalledCondition, Status: metav1.ConditionFalse, Reason: "X", LastTransitionTime: now}}}},
		&togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "nightly"},
			Status: togetherv1.TogetherBatchStatus{Conditions: stalledCond("BatchExpired")}},
		&togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "llama"},
			Spec: togetherv1.TogetherModelMigrationSpec{SunsetDate: "2027-01-15"},
			Status: togetherv1.TogetherModelMigrationStatus{Targets: []togetherv1.MigrationTarget{
				{Kind: "Deployment", Name: "a", Field: "f", From: "old", To: "new", PatchedAt: &now},
				{Kind: "Deployment", Name: "b", Field: "f", From: "old", To: "new"},
				{Kind: "StatefulSet", Name: "c", Field: "f", From: "old", To: "new"},
			}}},
	}
	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithObjects(objs...).WithStatusSubresource(objs...).Build()
	SetReader(c)
	t.Cleanup(func() { SetReader(nil) })

	// 1799971200 is 2027-01-15T00:00:00Z.
	want := `
# HELP together_finetune_eval_loss Evaluation loss Together reported for a fine-tune's finished model.
# TYPE together_finetune_eval_loss gauge
together_finetune_eval_loss{name="good",namespace="ml"} 0.42
# HELP together_migration_sunset_timestamp_seconds Sunset date of a TogetherModelMigration's old model, as a Unix time (midnight UTC).
# TYPE together_migration_sunset_timestamp_seconds gauge
together_migration_sunset_timestamp_seconds{migration="llama",namespace="apps"} 1.7999712e+09
# HELP together_migration_workloads_pending Workload fields a TogetherModelMigration found on the old model and has not patched yet (dry runs and manual approvals included).
# TYPE together_migration_workloads_pending gauge
together_migration_workloads_pending{migration="llama",namespace="apps"} 2
# HELP together_resource_stalled 1 for each together.ai resource whose Stalled condition is True, with the condition's reason.
# TYPE together_resource_stalled gauge
together_resource_stalled{kind="TogetherBatch",name="nightly",namespace="ml",reason="BatchExpired"} 1
together_resource_stalled{kind="TogetherFineTune",name="bad",namespace="ml",reason="JobFailed"} 1
`
	if err := testutil.CollectAndCompare(global, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	if err := c.Delete(t.Context(), objs[0]); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(global, "together_resource_stalled"); n != 1 {
		t.Fatalf("after deleting the stalled fine-tune, %d stalled series remain, want 1 (the batch)", n)
	}
	if err := prometheus.NewPedanticRegistry().Register(&collector{}); err != nil {
		t.Fatalf("the collector's descriptors are not valid: %v", err)
	}
}
