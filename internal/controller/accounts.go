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

// namespaceAccount resolves, for one reconcile, the account of ns: the
// client to use and where its key came from (sharedKeySource, the
// reconciler's own description, when the namespace uses the operator-wide
// key). When the namespace has no key, acc is nil and missing says why; the
// kind's first step then stalls with it (requireAccount). err is a failure to
// read, retried.
func namespaceAccount(ctx context.Context, a Accounts, ns, sharedKeySource string) (acc *credentials.Account, keySource string, missing, err error) {
	acc, missing, err = resolveAccount(ctx, a, ns)
	if acc == nil {
		return nil, "", missing, err
	}
	if acc.Source == credentials.SharedSource {
		return acc, sharedKeySource, nil, nil
	}
	return acc, "Secret " + acc.Source, nil, nil
}

// withAccountStep puts requireAccount first in k's steps when the namespace
// has no account, so that every kind stalls the same way before any step
// that would call Together.
func withAccountStep[T reconcile.Object](k *kind[T], missing error) *kind[T] {
	if missing != nil {
		k.steps = append([]step[T]{requireAccount[T](missing)}, k.steps...)
	}
	return k
}

// requireAccount is the first step of a kind whose namespace has no key: it
// stalls with a message naming the Secret to create.
func requireAccount[T reconcile.Object](missing error) step[T] {
	return step[T]{name: "credentials", run: func(context.Context, T, *scope) (ctrl.Result, error) {
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonNoCredentials, missing.Error()+".").After(credentialsRecheck)
	}}
}
