package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// ErrSecretMissing means the subscription's Secret or its key does not exist.
var ErrSecretMissing = errors.New("signing secret not found")

// secretCache holds the signing secrets of subscriptions, read one Secret at
// a time with a plain GET (no informer, no list: the manager never caches
// every Secret of the cluster). Entries live for ttl; a delivery that fails
// verification with cached secrets triggers one refresh (at most once per
// minRefresh), so a rotated secret is picked up at once.
type secretCache struct {
	reader     client.Reader
	ttl        time.Duration
	minRefresh time.Duration
	now        func() time.Time

	mu      sync.Mutex
	entries map[types.NamespacedName]secretEntry
}

type secretEntry struct {
	ref     togetherv1.WebhookSecretRef
	secrets [][]byte
	fetched time.Time
}

func (c *secretCache) get(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, forceRefresh bool) ([][]byte, bool, error) {
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	fresh := ok && e.ref == sub.Spec.SecretRef && now.Sub(e.fetched) < c.ttl
	if fresh && (!forceRefresh || now.Sub(e.fetched) < c.minRefresh) {
		return e.secrets, false, nil
	}
	secrets, err := ReadSigningSecrets(ctx, c.reader, sub.Namespace, sub.Spec.SecretRef)
	if err != nil {
		return nil, true, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]secretEntry{}
	}
	c.entries[key] = secretEntry{ref: sub.Spec.SecretRef, secrets: secrets, fetched: now}
	c.mu.Unlock()
	return secrets, true, nil
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
