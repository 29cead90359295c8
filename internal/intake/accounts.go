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

package intake

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
)

// Accounts finds the Together account of a resource (internal/credentials).
type Accounts interface {
	For(ctx context.Context, ns string, ref *credentials.SecretRef) (*credentials.Account, error)
}

// ErrOtherAccount is why a pushed event was not applied to the resource that
// follows its job: the resource acts on another Together account than the
// subscription the push came through. A subscription's pushes are about
// its own account's work (that is where it registers), so applying them to
// a resource on another key would let one account's deliveries write the
// status of another's resources.
var ErrOtherAccount = errors.New("the resource that follows this job acts on another Together account than the subscription")

// sameAccount reports whether the resource nn, found for an event pushed
// through sub, acts on sub's account. Both name the Secret of their key
// (spec.apiKeySecretRef) or use the namespace's; the same Secret and key
// is the same account without reading anything, which is every push when
// nobody names a Secret. Otherwise both keys are read and their
// fingerprints compared, so two Secrets holding one key are one account. A
// side with no usable key is no account: the event is not applied. Without
// Accounts (one key for everything) every resource matches.
func (a *Applier) sameAccount(ctx context.Context, kind string, nn types.NamespacedName, sub *togetherv1.TogetherWebhookSubscription) (bool, error) {
	if a.Accounts == nil || sub == nil {
		return true, nil
	}
	op, ok := ops[kind]
	if !ok {
		return true, nil
	}
	obj := op.newObj()
	// Only the spec's Secret reference is read, so the cached object need
	// not be copied.
	if err := a.Client.Get(ctx, nn, obj, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil // gone since the lookup: the write step reports it
		}
		return false, fmt.Errorf("reading %s %s: %w", kind, nn, err)
	}
	res, ok := obj.(credentials.Resource)
	if !ok {
		return true, nil
	}
	subRef, resRef := credentials.RefOf(sub), credentials.RefOf(res)
	if sameSecret(subRef, resRef) {
		return true, nil
	}
	subAcc, err := a.Accounts.For(ctx, sub.Namespace, subRef)
	if errors.Is(err, credentials.ErrNoCredentials) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("finding the Together account of subscription %s/%s: %w", sub.Namespace, sub.Name, err)
	}
	resAcc, err := a.Accounts.For(ctx, nn.Namespace, resRef)
	if errors.Is(err, credentials.ErrNoCredentials) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("finding the Together account of %s %s: %w", kind, nn, err)
	}
	return subAcc.ID == resAcc.ID, nil
}

// sameSecret reports whether two references (nil: the namespace default)
// in one namespace name the same Secret and key.
func sameSecret(a, b *credentials.SecretRef) bool {
	if a == nil || b == nil {
		return a == b
	}
	key := func(r *credentials.SecretRef) string {
		if r.Key == "" {
			return credentials.APIKeyKey
		}
		return r.Key
	}
	return a.Name == b.Name && key(a) == key(b)
}
