package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// statusPatcher snapshots an object when a reconcile starts and, when the
// reconcile ends, writes only the status fields that changed. Reconcilers
// defer it right after the Get, the way cluster-api's patch helper is used.
type statusPatcher struct {
	c      client.Client
	before client.Object
}

func newStatusPatcher(c client.Client, obj client.Object) *statusPatcher {
	return &statusPatcher{c: c, before: obj.DeepCopyObject().(client.Object)}
}

// patch writes obj's status as a merge patch against the snapshot, guarded by
// the snapshot's resourceVersion so that a concurrent writer (the event
// intake) is never overwritten: on conflict the reconcile is retried with
// fresh state.
func (p *statusPatcher) patch(ctx context.Context, obj client.Object, statusOf func(client.Object) any) error {
	if equality.Semantic.DeepEqual(statusOf(p.before), statusOf(obj)) {
		return nil
	}
	patch := client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	if err := p.c.Status().Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("writing status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
