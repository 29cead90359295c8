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

package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

type stubReconciler struct{ err error }

func (s stubReconciler) Reconcile(context.Context, reconcile.Request) (reconcile.Result, error) {
	return reconcile.Result{}, s.err
}

func TestConflictsAreRequeuedNotReported(t *testing.T) {
	conflict := fmt.Errorf("writing status: %w", apierrors.NewConflict(schema.GroupResource{Group: "together.ai", Resource: "togetherfinetunes"}, "x", errors.New("modified")))
	res, err := requeueConflicts(stubReconciler{err: conflict}).Reconcile(context.Background(), reconcile.Request{})
	if err != nil || res.RequeueAfter == 0 {
		t.Fatalf("a conflict should be a quiet requeue, got %v, %v", res, err)
	}
	other := errors.New("API server unavailable")
	if _, err := requeueConflicts(stubReconciler{err: other}).Reconcile(context.Background(), reconcile.Request{}); !errors.Is(err, other) {
		t.Fatalf("other errors must pass through, got %v", err)
	}
}

func TestOwnershipCheckRefusesAnotherWritersField(t *testing.T) {
	check := fineTuneOwnership.check(ftStatusOf)
	before := &togetherv1.TogetherFineTune{}
	before.Status.JobID, before.Status.Step, before.Status.OutputModel = "ft-1", 10, "me/model-a"
	after := before.DeepCopy()

	after.Status.DeployedModel = "me/model-a"
	if err := check(before, after, map[string]any{"status": map[string]any{"deployedModel": "me/model-a"}}); err != nil {
		t.Fatalf("a reconciler field must pass: %v", err)
	}
	after.Status.Step = 5
	err := check(before, after, map[string]any{"status": map[string]any{"step": 5}})
	if err == nil || !strings.Contains(err.Error(), "status.step") {
		t.Fatalf("the intake's step written outside an attempt start must be refused, got %v", err)
	}
	if err := check(before, after, map[string]any{"status": map[string]any{"step": 0, "jobID": "ft-2"}}); err != nil {
		t.Fatalf("starting an attempt may reset the intake's fields: %v", err)
	}
	after.Status.OutputModel = "me/model-b"
	if err := check(before, after, map[string]any{"status": map[string]any{"outputModel": "me/model-b"}}); err == nil {
		t.Fatal("a fill-once field that already holds a value must be refused")
	}
	if err := check(&togetherv1.TogetherFineTune{}, after, map[string]any{"status": map[string]any{"outputModel": "me/model-b"}}); err != nil {
		t.Fatalf("a fill-once field that was empty may be filled: %v", err)
	}
}

func TestOwnershipCheckLetsBatchPartsBeFilledOnly(t *testing.T) {
	check := batchOwnership.check(batchStatusOf)
	before := &togetherv1.TogetherBatch{}
	before.Status.Parts = []togetherv1.BatchPart{{Index: 0, BatchID: "b0", Phase: togetherv1.BatchSucceeded}}
	after := before.DeepCopy()
	after.Status.Parts[0].OutputFileID = "file-out"
	patch := map[string]any{"status": map[string]any{"parts": []any{}}}
	if err := check(before, after, patch); err != nil {
		t.Fatalf("filling an empty output file ID is allowed: %v", err)
	}
	after.Status.Parts[0].Phase = togetherv1.BatchFailed
	if err := check(before, after, patch); err == nil {
		t.Fatal("changing a part's phase is the intake's")
	}
}
