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

// Accounts finds the Together account of a namespace (internal/credentials).
type Accounts interface {
	For(ctx context.Context, ns string, ref *credentials.SecretRef) (*credentials.Account, error)
}

// group is the resources of one account and the client that reads them.
type group[T any] struct {
	api   API
	items []T
}

// byAccount splits items by the Together account of their namespace, so
// that a cycle lists each account once — O(accounts) list calls, however
// many resources — and matches a resource only against its own account's
// jobs. Without Accounts every item is in one group read with p.API. A
// namespace without a key is skipped (its resources report NoCredentials
// themselves).
func byAccount[T any](ctx context.Context, p *Poller, items []T, namespace func(T) string, logger logr.Logger) []group[T] {
	if p.Accounts == nil {
		return []group[T]{{api: p.API, items: items}}
	}
	var out []group[T]
	index := map[string]int{}        // account ID → out index
	nsAccount := map[string]string{} // namespace → account ID, per cycle
	for _, it := range items {
		ns := namespace(it)
		id, known := nsAccount[ns]
		if !known {
			acc, err := p.Accounts.For(ctx, ns, nil)
			if err != nil {
				logger.V(1).Info("skipping a namespace without a usable Together account", "namespace", ns, "reason", err.Error())
				nsAccount[ns] = ""
				continue
			}
			id = acc.ID
			nsAccount[ns] = id
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
