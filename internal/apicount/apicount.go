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

// Package apicount attributes API-server requests to the work that caused
// them. A handler puts a counter in its request's context; readers and
// clients wrapped here add one to it for each request they send to the API
// server. The events endpoint uses it to report what bad traffic costs the
// API server (together_webhook_rejected_api_requests_total).
package apicount

import (
	"context"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

type key struct{}

// With returns ctx carrying n; requests made with it through wrapped readers
// and clients add to n.
func With(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, key{}, n)
}

func add(ctx context.Context) {
	if n, ok := ctx.Value(key{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// Reader wraps a reader that reads from the API server (not a cache): every
// Get and List is a request.
func Reader(r client.Reader) client.Reader { return reader{r} }

type reader struct{ client.Reader }

func (r reader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	add(ctx)
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r reader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	add(ctx)
	return r.Reader.List(ctx, list, opts...)
}

// Writes wraps a client whose reads come from a cache: its writes are the
// requests.
func Writes(c client.Client) client.Client { return writes{c} }

type writes struct{ client.Client }

func (c writes) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	add(ctx)
	return c.Client.Create(ctx, obj, opts...)
}

func (c writes) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	add(ctx)
	return c.Client.Update(ctx, obj, opts...)
}

func (c writes) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	add(ctx)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c writes) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	add(ctx)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c writes) Status() client.SubResourceWriter { return statusWrites{c.Client.Status()} }

type statusWrites struct{ client.SubResourceWriter }

func (s statusWrites) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	add(ctx)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s statusWrites) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	add(ctx)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
