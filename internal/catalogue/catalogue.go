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

// Package catalogue answers "is this model in Together's catalogue?" for an
// account, from its model list (GET /v1/models), kept for a short time per
// account so that a scan over many migrations, each reconciled again and
// again, costs one list call per account per TTL rather than one per
// migration per reconcile.
package catalogue

import (
	"context"
	"sync"
	"time"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/ttl"
)

// Defaults of New's bounds.
const (
	// DefaultTTL is how long an account's list is reused: a model Together
	// adds is seen within it, and a migration that named a model not yet
	// listed is checked again after it.
	DefaultTTL = 5 * time.Minute
	// DefaultMaxAccounts bounds how many accounts' lists are kept (a few
	// hundred model IDs each); beyond it an arbitrary one is dropped and
	// listed again when needed.
	DefaultMaxAccounts = 256
)

// Lister lists an account's models; *together.Client is one.
type Lister interface {
	ListModels(ctx context.Context) ([]together.Model, error)
}

// Cache keeps each account's set of model IDs for TTL.
type Cache struct {
	ttl time.Duration
	now func() time.Time
	m   *ttl.Map[string, map[string]bool]

	// mu makes concurrent misses of one account share one list call: the
	// second caller waits and finds the first one's answer.
	mu sync.Mutex
}

// New returns a cache of at most maxAccounts lists, each reused for ttl.
// Zero values take the defaults; now nil means time.Now.
func New(maxAccounts int, listTTL time.Duration, now func() time.Time) *Cache {
	if maxAccounts <= 0 {
		maxAccounts = DefaultMaxAccounts
	}
	if listTTL <= 0 {
		listTTL = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{ttl: listTTL, now: now, m: ttl.New[string, map[string]bool](maxAccounts, listTTL)}
}

// TTL is how long an answer may be stale: how soon a caller should ask
// again about a model that was not listed.
func (c *Cache) TTL() time.Duration { return c.ttl }

// Has reports whether model is in the catalogue of account (an ID that
// names the credentials, never the key itself), listing it with api when
// the cache holds no live list for that account. A failed list is returned
// as is (the caller classifies Together's errors) and not remembered.
func (c *Cache) Has(ctx context.Context, account string, api Lister, model string) (bool, error) {
	if ids, ok := c.m.Get(account, c.now()); ok {
		return ids[model], nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ids, ok := c.m.Get(account, c.now()); ok {
		return ids[model], nil
	}
	models, err := api.ListModels(ctx)
	if err != nil {
		return false, err
	}
	ids := make(map[string]bool, len(models))
	for _, m := range models {
		ids[m.ID] = true
	}
	now := c.now()
	c.m.Set(account, ids, now, now.Add(c.ttl))
	return ids[model], nil
}
