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

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/reconcile"
)

// Accounts finds the Together account of a resource (internal/credentials):
// the Secret its spec.apiKeySecretRef names, or its namespace's default.
// With it, each reconcile runs under its resource's key, read again whenever
// its Secret's version changes so that a rotated key takes effect without a
// restart (and an unchanged one costs no API-server read); without it (nil),
// every resource uses the reconciler's API.
type Accounts interface {
	For(ctx context.Context, ns string, ref *credentials.SecretRef) (*credentials.Account, error)
}

// TogetherAccess is embedded by the reconcilers that call Together (the
// migration's only to check its replacement model, resolving the account
// itself because it needs none when that check is off): the one place that decides which Together account a
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
	// Accounts, when set, gives each resource its own Together account: the
	// Secret its spec.apiKeySecretRef names, or its namespace's (API and
	// KeySource are then the resource's, per reconcile).
	Accounts Accounts
	// KeySecret is the Secret of the resource's namespace its account's key
	// comes from, set per reconcile; nil for the operator-wide key or
	// without Accounts. Only such a Secret may be referenced by a Pod
	// acting for the resource (a batch fetch Job).
	KeySecret *credentials.SecretRef

	// accountErr is why this reconcile's resource has no account; set by
	// useAccount on the per-reconcile copy, read by finalizers that would
	// call Together.
	accountErr error
}

// useAccount resolves the account obj acts under, for one reconcile (the
// receiver is that reconcile's copy): API and KeySource become the
// account's. The resource's spec.apiKeySecretRef, when set, decides it
// (credentials.Resolver.For is the one place that orders the choices). When
// the resource has no usable key it returns why (missing) and the skeleton
// puts requireAccount first in the kind's steps, while a finalizer lets go
// without remote cleanup; err is a failure to read, retried.
func (t *TogetherAccess[A]) useAccount(ctx context.Context, obj client.Object) (missing, err error) {
	if t.Accounts == nil {
		return nil, nil
	}
	var ref *credentials.SecretRef
	if r, ok := obj.(credentials.Resource); ok {
		ref = credentials.RefOf(r)
	}
	key := client.ObjectKeyFromObject(obj)
	acc, err := t.Accounts.For(ctx, key.Namespace, ref)
	if errors.Is(err, credentials.ErrNoCredentials) {
		t.accountErr = err
		return err, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding the Together account of %s: %w", key, err)
	}
	api, ok := any(acc.Client).(A)
	if !ok {
		return nil, fmt.Errorf("the Together client of %s lacks a method this reconciler calls", key)
	}
	// The operator-wide key keeps the reconciler's own description of it.
	t.API = api
	t.KeySecret = acc.Secret
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

// requireAccount is the first step of a kind whose resource has no key: it
// stalls with a message naming the Secret (and key) to create — NoCredentials
// for a namespace with none, APIKeySecretNotFound for a Secret the resource
// names. No timer: creating that Secret (or giving it the key), or an
// administrator labelling the namespace, wakes the resource
// (withAccountWatches).
func requireAccount[T reconcile.Object](missing error) step[T] {
	return step[T]{name: "credentials", run: func(context.Context, T, *scope) (ctrl.Result, error) {
		return ctrl.Result{}, reconcile.Stalling(credentials.Reason(missing), missing.Error()+".")
	}}
}
