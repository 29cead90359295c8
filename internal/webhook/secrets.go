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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// ErrSecretMissing means the subscription's Secret or its key does not exist.
var ErrSecretMissing = errors.New("signing secret not found")

// ErrBusy means the endpoint cannot take a delivery now (its body budget
// is spent, or secret reads are being rate-limited); the sender retries.
var ErrBusy = errors.New("busy")

// secretCache holds the signing secrets of subscriptions, read one Secret at
// a time with a plain GET (no informer, no list: the manager never caches
// every Secret of the cluster). What it may cost the API server is bounded
// whatever the traffic:
//
//   - an entry lives for ttl; a Secret that does not exist is remembered as
//     missing for negativeTTL, so deliveries to a subscription without its
//     Secret cost no GET each;
//   - a delivery that fails verification with a cached secret may ask for a
//     refresh (the Secret may have been rotated), but at most one per
//     minRefresh per subscription, and only one read per subscription is in
//     flight: concurrent deliveries wait for it and share its result;
//   - every read, across subscriptions, takes a token from reads, so a flood
//     of bad signatures to many subscriptions is still a bounded rate of GETs.
//
// Entries are swept once they expire, so the cache holds only subscriptions
// that received deliveries in the last ttl.
type secretCache struct {
	reader      client.Reader
	ttl         time.Duration
	negativeTTL time.Duration
	minRefresh  time.Duration
	reads       *rate.Limiter
	now         func() time.Time

	mu      sync.Mutex
	entries map[types.NamespacedName]*secretEntry
	swept   time.Time
}

type secretEntry struct {
	ref     togetherv1.WebhookSecretRef
	secrets [][]byte
	// err is ErrSecretMissing for a negative entry.
	err     error
	fetched time.Time
	// loading is closed when the read in flight for this entry finishes.
	loading chan struct{}
}

func newSecretCache(r client.Reader, now func() time.Time) *secretCache {
	return &secretCache{reader: r, ttl: 30 * time.Second, negativeTTL: 10 * time.Second, minRefresh: time.Second,
		reads: rate.NewLimiter(20, 40), now: now, entries: map[types.NamespacedName]*secretEntry{}}
}

// get returns the subscription's secrets. With forceRefresh it reads the
// Secret again unless the cached copy is younger than minRefresh. refreshed
// says whether the result comes from a read made for this call (or one it
// waited for), so the caller does not ask again.
func (c *secretCache) get(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, forceRefresh bool) ([][]byte, bool, error) {
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
	c.mu.Lock()
	e := c.entries[key]
	if e != nil && e.loading != nil {
		ch := e.loading
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return e.secrets, true, e.err
	}
	now := c.now()
	usable := e != nil && e.ref == sub.Spec.SecretRef
	if usable {
		ttl := c.ttl
		if e.err != nil {
			ttl = c.negativeTTL
		}
		usable = now.Sub(e.fetched) < ttl
	}
	if usable && (!forceRefresh || now.Sub(e.fetched) < c.minRefresh || e.err != nil) {
		c.mu.Unlock()
		return e.secrets, false, e.err
	}
	if !c.reads.AllowN(now, 1) {
		c.mu.Unlock()
		if usable {
			return e.secrets, false, e.err
		}
		return nil, false, fmt.Errorf("%w: reading signing secrets is rate-limited", ErrBusy)
	}
	fresh := &secretEntry{ref: sub.Spec.SecretRef, loading: make(chan struct{})}
	if usable {
		fresh.secrets, fresh.err, fresh.fetched = e.secrets, e.err, e.fetched
	}
	c.entries[key] = fresh
	c.mu.Unlock()

	secrets, err := ReadSigningSecrets(ctx, c.reader, sub.Namespace, sub.Spec.SecretRef)

	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil || errors.Is(err, ErrSecretMissing):
		fresh.secrets, fresh.err, fresh.fetched = secrets, err, now
	case !usable:
		// A failed read caches nothing; the next delivery tries again.
		// Those waiting for this read get its error.
		fresh.err = err
		delete(c.entries, key)
	}
	close(fresh.loading)
	fresh.loading = nil
	c.sweepLocked(now)
	if err != nil && !errors.Is(err, ErrSecretMissing) {
		return nil, true, err
	}
	return secrets, true, err
}

// sweepLocked drops expired entries, at most once per ttl.
func (c *secretCache) sweepLocked(now time.Time) {
	if now.Sub(c.swept) < c.ttl {
		return
	}
	c.swept = now
	for k, e := range c.entries {
		if e.loading == nil && now.Sub(e.fetched) >= c.ttl {
			delete(c.entries, k)
		}
	}
}

// size reports how many subscriptions the cache holds secrets for.
func (c *secretCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// ReadSigningSecrets returns the current secret and, during a rotation, the
// previous one. The error names the Secret and key but never their values.
func ReadSigningSecrets(ctx context.Context, r client.Reader, namespace string, ref togetherv1.WebhookSecretRef) ([][]byte, error) {
	var s corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: Secret %s/%s does not exist", ErrSecretMissing, namespace, ref.Name)
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	key := ref.Key
	if key == "" {
		key = "secret"
	}
	cur := s.Data[key]
	if len(cur) == 0 {
		return nil, fmt.Errorf("%w: Secret %s/%s has no key %q", ErrSecretMissing, namespace, ref.Name, key)
	}
	out := [][]byte{cur}
	prevKey := ref.PreviousKey
	if prevKey == "" {
		prevKey = "previousSecret"
	}
	if prev := s.Data[prevKey]; len(prev) > 0 {
		out = append(out, prev)
	}
	return out, nil
}
