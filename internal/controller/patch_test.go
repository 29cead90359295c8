package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
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
