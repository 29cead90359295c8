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

// Package secretread reads values from the Secrets the operator's resources
// name — API keys, webhook signing secrets — without caching every Secret of
// the cluster and without an API-server request per use.
//
// Whether a Secret exists, and which version of it exists, comes from the
// manager's metadata-only cache of Secrets (the informer the reconcilers'
// Secret watches run, which never holds data). A Secret's values are read
// with a live GET only when that version (UID and resourceVersion) is not
// the one last read, and remembered otherwise — only the values asked for,
// only for Secrets something asked about, and a bounded number of them. A
// rotated Secret is therefore read again as soon as the cache sees its new
// version: the same watch event that wakes the resources using it.
package secretread

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/together-operator/together-operator/internal/ttl"
)

// Bounds of what a Reader remembers: at most maxRemembered Secret reads,
// each forgotten after rememberFor without use (then read once more).
const (
	maxRemembered = 10000
	rememberFor   = time.Hour
)

// Reader reads values of Secrets.
type Reader struct {
	// Meta serves Secrets' metadata as metav1.PartialObjectMetadata: the
	// manager's cache. It is never asked for data. Nil makes every call
	// read live (tests without a manager).
	Meta client.Reader
	// Live reads a Secret, data included, from the API server: the
	// manager's API reader, never a cache.
	Live client.Reader
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	once sync.Once
	mem  *ttl.Map[memoKey, memo]
}

// memoKey names the values of some keys of one Secret.
type memoKey struct {
	types.NamespacedName
	keys string
}

// memo is what a live read found: the Secret's version and its values.
type memo struct {
	uid             types.UID
	resourceVersion string
	values          [][]byte
}

// String keeps remembered values out of anything that prints a memo.
func (memo) String() string { return "secretread.memo{redacted}" }

// GoString keeps remembered values out of %#v too.
func (m memo) GoString() string { return m.String() }

func (r *Reader) memory() *ttl.Map[memoKey, memo] {
	r.once.Do(func() { r.mem = ttl.New[memoKey, memo](maxRemembered, rememberFor) })
	return r.mem
}

func (r *Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func memoFor(key types.NamespacedName, keys []string) memoKey {
	return memoKey{NamespacedName: key, keys: strings.Join(keys, "\x00")}
}

// Cached answers from the cache alone, with no API-server request: found is
// false when the cache holds no such Secret; current is true when the
// values remembered for keys were read from the version the cache holds,
// and values are then those (nil for a key the Secret lacks). When found
// and not current, the caller reads with Read.
func (r *Reader) Cached(ctx context.Context, key types.NamespacedName, keys ...string) (values [][]byte, found, current bool, err error) {
	if r.Meta == nil {
		return nil, true, false, nil
	}
	id := memoFor(key, keys)
	meta, err := Metadata(ctx, r.Meta, key)
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.memory().Delete(id)
			return nil, false, false, nil
		}
		return nil, false, false, fmt.Errorf("reading Secret %s from the cache: %w", key, err)
	}
	now := r.now()
	last, ok := r.memory().Get(id, now)
	if !ok || last.uid != meta.UID || last.resourceVersion != meta.ResourceVersion {
		return nil, true, false, nil
	}
	r.memory().Touch(id, now, rememberFor)
	return last.values, true, true, nil
}

// Metadata returns Secret key's metadata as cache holds it: name, UID,
// resourceVersion, never data.
func Metadata(ctx context.Context, cache client.Reader, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := cache.Get(ctx, key, meta); err != nil {
		return nil, err
	}
	return meta, nil
}

// Read reads the Secret live and remembers the values of keys with its
// version; found is false when it does not exist. The error names the
// Secret, never a value.
func (r *Reader) Read(ctx context.Context, key types.NamespacedName, keys ...string) (values [][]byte, found bool, err error) {
	id := memoFor(key, keys)
	s := &corev1.Secret{}
	if err := r.Live.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			r.memory().Delete(id)
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	values = make([][]byte, len(keys))
	for i, k := range keys {
		if v := s.Data[k]; len(v) > 0 {
			values[i] = v
		}
	}
	now := r.now()
	r.memory().Set(id, memo{uid: s.UID, resourceVersion: s.ResourceVersion, values: values}, now, now.Add(rememberFor))
	return values, true, nil
}

// Values returns the values of keys in the Secret (nil for a key it lacks),
// found=false when the Secret does not exist: from memory while the cache
// says the Secret is the version last read, otherwise read live. A Secret
// the cache does not hold yet is missing; the Secret watch wakes whoever
// uses it once the cache sees it.
func (r *Reader) Values(ctx context.Context, key types.NamespacedName, keys ...string) (values [][]byte, found bool, err error) {
	values, found, current, err := r.Cached(ctx, key, keys...)
	if err != nil || !found || current {
		return values, found, err
	}
	return r.Read(ctx, key, keys...)
}
