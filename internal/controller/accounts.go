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
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/reconcile"
)

// Accounts finds the Together account of a namespace (internal/credentials).
// With it, each reconcile runs under its resource's namespace's key, read
// anew each time so that a rotated key takes effect without a restart;
// without it (nil), every resource uses the reconciler's API.
type Accounts interface {
	For(ctx context.Context, ns string, ref *credentials.SecretRef) (*credentials.Account, error)
}

// credentialsRecheck is how often a namespace without a key is looked at
// again: Secrets are not watched.
const credentialsRecheck = 30 * time.Second

// resolveAccount returns the account of ns, or the reason the namespace has
// none (an ErrNoCredentials error) with a nil account. Any other error is
// a failure to read and is retried.
func resolveAccount(ctx context.Context, a Accounts, ns string) (*credentials.Account, error, error) {
	acc, err := a.For(ctx, ns, nil)
	if errors.Is(err, credentials.ErrNoCredentials) {
		return nil, err, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding the Together account of namespace %s: %w", ns, err)
	}
	return acc, nil, nil
}

// TogetherAccess is embedded by the reconcilers that call Together (all
// but the migration's): the one place that decides which Together account a
// reconcile acts under. API and KeySource are the operator-wide client and
// where its key came from; with Accounts set, each reconcile runs on a copy
// of the reconciler whose API and KeySource become those of the resource's
// account (useAccount, the kind's account hook). A is the kind's API
// interface, which *together.Client implements.
type TogetherAccess[A any] struct {
	// API talks to Together.
	API A
	// KeySource says where API's key came from (flag, env or Secret), so
	// that a rejected key's message names what to fix.
	KeySource string
	// Accounts, when set, gives each namespace its own Together account
	// (API and KeySource are then the namespace's, per reconcile).
	Accounts Accounts

	// accountErr is why this reconcile's resource has no account; set by
	// useAccount on the per-reconcile copy, read by finalizers that would
	// call Together.
	accountErr error
}

// useAccount resolves the account obj acts under, for one reconcile (the
// receiver is that reconcile's copy): API and KeySource become the
// account's. When the namespace has no key, it returns why (missing) and the
// skeleton puts requireAccount first in the kind's steps; err is a failure to
// read, retried.
//
// Hook for per-resource credentials: a resource naming its own Secret
// passes it here instead of nil, and the Secret watch (watches.go) maps
// that Secret to the resource through its index.
func (t *TogetherAccess[A]) useAccount(ctx context.Context, obj client.Object) (missing, err error) {
	if t.Accounts == nil {
		return nil, nil
	}
	ns := obj.GetNamespace()
	acc, missing, err := resolveAccount(ctx, t.Accounts, ns)
	t.accountErr = missing
	if acc == nil {
		return missing, err
	}
	api, ok := any(acc.Client).(A)
	if !ok {
		return nil, fmt.Errorf("the Together client of namespace %s lacks a method this reconciler calls", ns)
	}
	// The operator-wide key keeps the reconciler's own description of it.
	t.API = api
	if acc.Source != credentials.SharedSource {
		t.KeySource = "Secret " + acc.Source
	}
	return nil, nil
}

// apiFailure classifies a failed Together call for the summary, naming
// where the rejected key came from.
func (t *TogetherAccess[A]) apiFailure(err error, doing string) error {
	return reconcile.APIFailure(err, doing, t.KeySource)
}

// requireAccount is the first step of a kind whose namespace has no key: it
// stalls with a message naming the Secret to create.
func requireAccount[T reconcile.Object](missing error) step[T] {
	return step[T]{name: "credentials", run: func(context.Context, T, *scope) (ctrl.Result, error) {
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonNoCredentials, missing.Error()+".").After(credentialsRecheck)
	}}
}
