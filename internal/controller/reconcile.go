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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
)

// EventRecorder is the events.k8s.io recorder the reconcilers emit Kubernetes
// Events through.
type EventRecorder = events.EventRecorder

// This file is the one reconcile shape of the four kinds. Every Reconcile is
//
//	get → (deleting? finalize, drop the finalizer) → ensure the finalizer →
//	steps, in order, until one returns an error → one deferred summary:
//	conditions, observedGeneration, status patch, Events, result.
//
// A kind is a declaration (kind[T]): its conditions, its finalizer rule, its
// clean-up and its typed list of steps. Steps never set Ready, Reconciling
// or Stalled themselves: they return a *reconcile.Error that says whether
// the resource waits, is stalled or must retry, and reconcile.Summarize
// turns that into conditions, the requeue, the Event and the log line.

// step is one small stage of a kind's reconcile. It returns nil to let the
// next step run, or an error that stops the reconcile: a *reconcile.Error
// (stall, wait, retry, with its reason) or any other error (retried with
// backoff). A finished step may ask for a periodic requeue in its result.
type step[T reconcile.Object] struct {
	// name is for reading and logs.
	name string
	// owns lists the conditions the step sets besides Ready, Reconciling and
	// Stalled (which only the summary writes).
	owns []string
	run  func(ctx context.Context, obj T, s *scope) (ctrl.Result, error)
}

// kind declares one resource kind for the shared skeleton.
type kind[T reconcile.Object] struct {
	// conditions declares the owned conditions and how Ready follows.
	conditions reconcile.Conditions
	// newObj returns an empty object to read into.
	newObj func() T
	// status returns the object's status value, for the patcher's diff.
	status func(T) any
	// needsFinalizer says whether the object holds remote state that its
	// deletion must clean up; nil means never. The finalizer is added
	// before the first step and removed once this turns false.
	needsFinalizer func(T) bool
	// finalize cleans up before the finalizer goes; nil means nothing to do.
	finalize func(ctx context.Context, obj T, s *scope) error
	// gone runs when the object no longer exists (metric series to drop).
	gone func(req ctrl.Request)
	// account, when set, resolves the Together account the reconcile acts
	// under (TogetherAccess.useAccount) before the finalizer or any step
	// runs. When the resource has none, missing says why: finalizers see it
	// and the steps start with requireAccount, so every kind stalls the
	// same way before anything would call Together.
	account func(ctx context.Context, obj client.Object) (missing, err error)
	// steps run in order.
	steps []step[T]
}

// scope is what steps share during one reconcile.
type scope struct {
	patcher *statusPatcher
	ready   *metav1.Condition
}

// succeeded records what Ready says when every step finishes: the last
// step of a kind (or the one that decides the resource is done) calls it.
func (s *scope) succeeded(status metav1.ConditionStatus, reason, message string) {
	s.ready = &metav1.Condition{Type: togetherv1.ReadyCondition, Status: status, Reason: reason, Message: message}
}

// afterWrite runs fn once the status that records what fn announces is
// written.
func (s *scope) afterWrite(fn func()) { s.patcher.afterWrite(fn) }

// persist writes status now rather than at the end of the reconcile, for
// writes whose order matters: a submission marker before a paid call, a
// "tokens accounted" mark before the counter moves. The patcher re-bases on
// the write, so the final summary writes only what changed after it.
func (s *scope) persist(ctx context.Context, obj client.Object) error {
	return s.patcher.patch(ctx, obj)
}

// run is the Reconcile of every kind.
func (k *kind[T]) run(ctx context.Context, c client.Client, rec EventRecorder, req ctrl.Request, check func(before, after client.Object, patch map[string]any) error) (result ctrl.Result, retErr error) {
	obj := k.newObj()
	if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			if k.gone != nil {
				k.gone(req)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading %s: %w", req.NamespacedName, err)
	}
	deleting := !obj.GetDeletionTimestamp().IsZero()
	if deleting && !controllerutil.ContainsFinalizer(obj, togetherv1.FinalizerName) {
		return ctrl.Result{}, nil // nothing of ours left to clean up
	}
	steps := k.steps
	if k.account != nil {
		missing, err := k.account(ctx, obj)
		if err != nil {
			return ctrl.Result{}, err
		}
		if missing != nil {
			steps = append([]step[T]{requireAccount[T](missing)}, steps...)
		}
	}
	if !deleting && k.needs(obj) && !controllerutil.ContainsFinalizer(obj, togetherv1.FinalizerName) {
		// Before any step can create remote state. The patch answers with
		// the whole stored object, status included, so the status edits
		// below start from what the API server holds now.
		if err := setFinalizer(ctx, c, obj, true); err != nil {
			return ctrl.Result{}, err
		}
	}

	s := &scope{patcher: newStatusPatcher(c, obj, func(o client.Object) any { return k.status(o.(T)) })}
	s.patcher.check = check
	before := append([]metav1.Condition(nil), *obj.StatusConditions()...)
	removed := false
	defer func() {
		if removed {
			return // the object is gone with its status
		}
		rep := k.conditions.Summarize(ctx, obj, before, reconcile.Outcome{Result: result, Err: retErr, Ready: s.ready}, rec)
		if rep.Observed && !deleting {
			obj.SetObservedGeneration(obj.GetGeneration())
		}
		s.afterWrite(rep.Announce)
		if err := s.patcher.patch(ctx, obj); err != nil {
			result, retErr = ctrl.Result{}, err
			return
		}
		result, retErr = rep.Result, rep.Err
		if retErr == nil && !deleting && !k.needs(obj) && controllerutil.ContainsFinalizer(obj, togetherv1.FinalizerName) {
			// The remote state the finalizer guarded is gone (a
			// subscription no longer registered, say).
			retErr = setFinalizer(ctx, c, obj, false)
		}
	}()

	if deleting {
		if k.finalize != nil {
			if err := k.finalize(ctx, obj, s); err != nil {
				return ctrl.Result{}, err
			}
		}
		if err := setFinalizer(ctx, c, obj, false); err != nil {
			if apierrors.IsNotFound(err) {
				removed = true
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, err
		}
		removed = true
		return ctrl.Result{}, nil
	}

	for _, st := range steps {
		res, err := st.run(ctx, obj, s)
		if err != nil {
			return res, err
		}
		result = lowestRequeue(result, res)
	}
	return result, nil
}

func (k *kind[T]) needs(obj T) bool { return k.needsFinalizer != nil && k.needsFinalizer(obj) }

// setFinalizer adds or removes the finalizer with a metadata-only patch,
// guarded by resourceVersion so that a concurrent change is retried rather
// than overwritten. obj receives the stored object, status included.
func setFinalizer(ctx context.Context, c client.Client, obj client.Object, want bool) error {
	before := obj.DeepCopyObject().(client.Object)
	if want {
		controllerutil.AddFinalizer(obj, togetherv1.FinalizerName)
	} else {
		controllerutil.RemoveFinalizer(obj, togetherv1.FinalizerName)
	}
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		verb := "adding finalizer to"
		if !want {
			verb = "removing finalizer from"
		}
		return fmt.Errorf("%s %s: %w", verb, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// lowestRequeue merges two results: the sooner requeue wins.
func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}
