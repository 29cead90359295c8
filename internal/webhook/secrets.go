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

package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/secretread"
)

// ErrSecretMissing means the subscription's Secret or its key does not exist.
var ErrSecretMissing = errors.New("signing secret not found")

// ErrBusy means the endpoint cannot take a delivery now (its body budget
// is spent, or secret reads are being rate-limited); the sender retries.
var ErrBusy = errors.New("busy")

// secretCache gives the endpoint a subscription's signing secrets. Whether
// the Secret exists, and which version, comes from the manager's
// metadata-only cache of Secrets; its values are read with a GET only when
// that version is not the one last read (secretread). So what deliveries
// cost the API server does not depend on how many arrive, or how they are
// signed:
//
//   - a subscription whose Secret does not exist costs no read at all, and
//     is served as soon as the cache sees the Secret created;
//   - a bad signature costs no read: it is checked against the version the
//     cache holds, and a rotated Secret is a new version, read once;
//   - a read happens once per new version, one per Secret in flight
//     (concurrent deliveries wait for it and share its result), and every
//     read, across Secrets, takes a token from reads.
type secretCache struct {
	read  *secretread.Reader
	reads *rate.Limiter
	now   func() time.Time

	mu      sync.Mutex
	loading map[types.NamespacedName]*secretLoad
}

// secretLoad is a read in flight; done is closed when it ends.
type secretLoad struct {
	done    chan struct{}
	secrets [][]byte
	err     error
}

func newSecretCache(meta, live client.Reader, now func() time.Time) *secretCache {
	return &secretCache{read: &secretread.Reader{Meta: meta, Live: live, Now: now}, reads: rate.NewLimiter(20, 40), now: now,
		loading: map[types.NamespacedName]*secretLoad{}}
}

// get returns the subscription's secrets: the current one, and during a
// rotation the previous one.
func (c *secretCache) get(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) ([][]byte, error) {
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Spec.SecretRef.Name}
	keys := signingKeys(sub.Spec.SecretRef)
	values, found, current, err := c.read.Cached(ctx, key, keys...)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("%w: Secret %s does not exist", ErrSecretMissing, key)
	case current:
		return signingSecrets(key, keys, values)
	}

	c.mu.Lock()
	if l := c.loading[key]; l != nil {
		c.mu.Unlock()
		select {
		case <-l.done:
			return l.secrets, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !c.reads.AllowN(c.now(), 1) {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: reading signing secrets is rate-limited", ErrBusy)
	}
	l := &secretLoad{done: make(chan struct{})}
	c.loading[key] = l
	c.mu.Unlock()

	values, found, err = c.read.Read(ctx, key, keys...)
	switch {
	case err != nil:
		l.err = err
	case !found:
		l.err = fmt.Errorf("%w: Secret %s does not exist", ErrSecretMissing, key)
	default:
		l.secrets, l.err = signingSecrets(key, keys, values)
	}
	c.mu.Lock()
	delete(c.loading, key)
	c.mu.Unlock()
	close(l.done)
	return l.secrets, l.err
}

// signingKeys are the keys of a subscription's Secret that hold its
// current and previous signing secret.
func signingKeys(ref togetherv1.WebhookSecretRef) []string {
	key, prev := ref.Key, ref.PreviousKey
	if key == "" {
		key = "secret"
	}
	if prev == "" {
		prev = "previousSecret"
	}
	return []string{key, prev}
}

// signingSecrets turns the values of signingKeys into the secrets to
// verify with: the current one first, then the previous one if set.
func signingSecrets(secret types.NamespacedName, keys []string, values [][]byte) ([][]byte, error) {
	if len(values) == 0 || len(values[0]) == 0 {
		return nil, fmt.Errorf("%w: Secret %s has no key %q", ErrSecretMissing, secret, keys[0])
	}
	out := [][]byte{values[0]}
	if len(values) > 1 && len(values[1]) > 0 {
		out = append(out, values[1])
	}
	return out, nil
}

// SigningSecrets returns a subscription's current signing secret and, during
// a rotation, the previous one, read through r: with its cache set, a
// missing Secret costs no read and an unchanged one is read once per
// version. The error names the Secret and key but never their values.
func SigningSecrets(ctx context.Context, r *secretread.Reader, namespace string, ref togetherv1.WebhookSecretRef) ([][]byte, error) {
	key := types.NamespacedName{Namespace: namespace, Name: ref.Name}
	keys := signingKeys(ref)
	values, found, err := r.Values(ctx, key, keys...)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: Secret %s does not exist", ErrSecretMissing, key)
	}
	return signingSecrets(key, keys, values)
}
