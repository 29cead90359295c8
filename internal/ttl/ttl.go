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

// Package ttl is a bounded map whose entries expire.
package ttl

import (
	"sync"
	"time"
)

// Map is a map whose entries expire, with a bound on how many it holds.
// Every set the events endpoint and the intake keep per subscription, per source or per delivery
// is one of these, so that none of them grows with the traffic it has seen:
// an entry lives for its TTL, expired entries are swept at most once per
// sweepEvery (and whenever the map is full), and a map still full after a
// sweep drops arbitrary entries (Go's map order) to make room. Dropping an
// entry early costs at most a repeated warning, a refilled token bucket or
// a replay answered by the apply step's own duplicate check instead of here.
type Map[K comparable, V any] struct {
	max        int
	sweepEvery time.Duration

	mu        sync.Mutex
	m         map[K]expiringEntry[V]
	lastSweep time.Time
}

type expiringEntry[V any] struct {
	v       V
	expires time.Time
}

// New returns a Map of at most max entries, swept at least every sweepEvery.
func New[K comparable, V any](max int, sweepEvery time.Duration) *Map[K, V] {
	return &Map[K, V]{max: max, sweepEvery: sweepEvery, m: map[K]expiringEntry[V]{}}
}

// Get returns the live value under k.
func (e *Map[K, V]) Get(k K, now time.Time) (V, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[k]
	if !ok || !now.Before(x.expires) {
		var zero V
		return zero, false
	}
	return x.v, true
}

// GetOrSet returns the live value under k, or stores and returns mk()'s,
// living until now+ttl. loaded says which.
func (e *Map[K, V]) GetOrSet(k K, now time.Time, ttl time.Duration, mk func() V) (v V, loaded bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[k]; ok && now.Before(x.expires) {
		return x.v, true
	}
	v = mk()
	e.setLocked(k, v, now, now.Add(ttl))
	return v, false
}

// Set stores v under k until expires.
func (e *Map[K, V]) Set(k K, v V, now, expires time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setLocked(k, v, now, expires)
}

// Touch extends a live entry's life to now+ttl.
func (e *Map[K, V]) Touch(k K, now time.Time, ttl time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[k]; ok {
		x.expires = now.Add(ttl)
		e.m[k] = x
	}
}

// Delete forgets k.
func (e *Map[K, V]) Delete(k K) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, k)
}

func (e *Map[K, V]) setLocked(k K, v V, now, expires time.Time) {
	if _, present := e.m[k]; (!present && len(e.m) >= e.max) || now.Sub(e.lastSweep) >= e.sweepEvery {
		e.sweepLocked(now)
	}
	e.m[k] = expiringEntry[V]{v: v, expires: expires}
}

func (e *Map[K, V]) sweepLocked(now time.Time) {
	e.lastSweep = now
	for k, x := range e.m {
		if !now.Before(x.expires) {
			delete(e.m, k)
		}
	}
	for k := range e.m {
		if len(e.m) < e.max {
			break
		}
		delete(e.m, k)
	}
}

// Len reports how many entries the map holds, expired or not.
func (e *Map[K, V]) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.m)
}
