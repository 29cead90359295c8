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
	"encoding/json"
	"fmt"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// statusPatcher writes only the status fields a reconcile changed. Like
// fluxcd's serial patcher it re-bases itself on what it wrote after every
// write, so a reconcile can write status several times (a submission marker
// before a paid call, then the final summary) and each write carries only
// what changed since the previous one.
type statusPatcher struct {
	c        client.Client
	before   client.Object
	statusOf func(client.Object) any
	// written runs once the status is durable: what must happen once per
	// recorded transition (a counter, an Event) waits for the write, so
	// that a lost write, which the next reconcile repeats, is not counted
	// twice.
	written []func()
	// check, when set, sees every status patch before it is sent (the
	// ownership test uses it).
	check func(before, after client.Object, patch map[string]any) error
}

func newStatusPatcher(c client.Client, obj client.Object, statusOf func(client.Object) any) *statusPatcher {
	return &statusPatcher{c: c, before: obj.DeepCopyObject().(client.Object), statusOf: statusOf}
}

// afterWrite defers fn until the next successful status write; a failed
// write drops it along with the transition it belongs to.
func (p *statusPatcher) afterWrite(fn func()) { p.written = append(p.written, fn) }

// patch writes the difference between the last written (or read) status
// and obj's status as a JSON merge patch of the status subresource, then
// re-bases on obj. It is guarded by obj's resourceVersion (what this
// reconcile last read or wrote), so a concurrent writer such as the event
// intake is never overwritten: on conflict the reconcile is retried with
// fresh state. Metadata changes are never part of it, and a status that
// serialises the same is not written at all.
func (p *statusPatcher) patch(ctx context.Context, obj client.Object) error {
	hooks := p.written
	p.written = nil
	if err := p.write(ctx, obj); err != nil {
		return err
	}
	p.before = obj.DeepCopyObject().(client.Object)
	for _, fn := range hooks {
		fn()
	}
	return nil
}

func (p *statusPatcher) write(ctx context.Context, obj client.Object) error {
	before, err := json.Marshal(map[string]any{"status": p.statusOf(p.before)})
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	after, err := json.Marshal(map[string]any{"status": p.statusOf(obj)})
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	diff, err := jsonpatch.CreateMergePatch(before, after)
	if err != nil {
		return fmt.Errorf("computing status patch: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(diff, &m); err != nil {
		return fmt.Errorf("decoding status patch: %w", err)
	}
	if len(m) == 0 {
		return nil
	}
	if p.check != nil {
		if err := p.check(p.before, obj, m); err != nil {
			return err
		}
	}
	m["metadata"] = map[string]any{"resourceVersion": obj.GetResourceVersion()}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding status patch: %w", err)
	}
	if err := p.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, data)); err != nil {
		return fmt.Errorf("writing status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// conflictRequeuer retries a reconcile that lost an optimistic-concurrency
// race (the event intake or another writer updated the object first) without
// reporting it as an error: it is the expected outcome of two writers, and
// logging each one with a stack trace would drown real failures.
type conflictRequeuer struct {
	reconcile.Reconciler
}

func requeueConflicts(r reconcile.Reconciler) reconcile.Reconciler { return conflictRequeuer{r} }

func (c conflictRequeuer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := c.Reconciler.Reconcile(ctx, req)
	if err != nil && apierrors.IsConflict(err) {
		log.FromContext(ctx).V(1).Info("object changed while reconciling; retrying with fresh state", "reason", err.Error())
		return reconcile.Result{RequeueAfter: conflictRetryDelay}, nil
	}
	return res, err
}

// conflictRetryDelay lets the cache catch up with the write that won.
const conflictRetryDelay = 100 * time.Millisecond
