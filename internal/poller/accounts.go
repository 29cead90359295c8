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

package poller

import (
	"context"

	"github.com/go-logr/logr"

	"github.com/together-operator/together-operator/internal/credentials"
)

// Accounts finds the Together account of a resource (internal/credentials).
type Accounts interface {
	For(ctx context.Context, ns string, ref *credentials.SecretRef) (*credentials.Account, error)
}

// group is the resources of one account and the client that reads them.
type group[T any] struct {
	api   API
	items []T
}

// byAccount splits items by the Together account each acts on — the Secret
// its spec.apiKeySecretRef names, or its namespace's — so that a cycle lists
// each account once (O(accounts) list calls, however many resources) and
// matches a resource only against its own account's jobs. Accounts are told
// apart by the fingerprint of their key (credentials.Account.ID), so two
// Secrets holding the same key are one account and one list call. Each
// distinct Secret is resolved once per cycle (its key is read from the API
// server only when the Secret changed). Without Accounts every item is in
// one group read with p.API. A resource without a usable key is skipped (it
// reports NoCredentials or APIKeySecretNotFound itself).
func byAccount[T credentials.Resource](ctx context.Context, p *Poller, items []T, logger logr.Logger) []group[T] {
	if p.Accounts == nil {
		return []group[T]{{api: p.API, items: items}}
	}
	// source is where a resource's key comes from, as far as this cycle
	// can tell without reading it.
	type source struct {
		ns string
		credentials.SecretRef
	}
	var out []group[T]
	index := map[string]int{}       // account ID → out index
	resolved := map[source]string{} // source → account ID ("" when none), per cycle
	for _, it := range items {
		ref := credentials.RefOf(it)
		src := source{ns: it.GetNamespace()}
		if ref != nil {
			src.SecretRef = *ref
		}
		id, known := resolved[src]
		if !known {
			acc, err := p.Accounts.For(ctx, src.ns, ref)
			if err != nil {
				logger.V(1).Info("skipping resources without a usable Together account", "namespace", src.ns, "secret", src.Name, "reason", err.Error())
				resolved[src] = ""
				continue
			}
			id = acc.ID
			resolved[src] = id
			if _, ok := index[id]; !ok {
				index[id] = len(out)
				out = append(out, group[T]{api: acc.Client})
			}
		}
		if id == "" {
			continue
		}
		out[index[id]].items = append(out[index[id]].items, it)
	}
	return out
}
