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

package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/poller"
	"github.com/together-operator/together-operator/internal/together"
)

// namespaced lists only one namespace. The controller suite's API server
// holds every spec's resources, and each spec has a simulator of its own
// whose job IDs repeat those of other specs' simulators: a poller that
// listed every namespace would apply one spec's jobs to another's
// resources.
type namespaced struct {
	client.Client
	ns string
}

func (c namespaced) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.Client.List(ctx, list, append(opts, client.InNamespace(c.ns))...)
}

// realIntake is the operator's own intake for a spec: the poller, reading
// the spec's simulator, feeding the apply step that writes status. Specs
// that drive it see what the operator does with Together's state, event IDs
// and aggregation included, rather than a test's idea of it.
func realIntake(ns string, api *together.Client) *poller.Poller {
	return &poller.Poller{
		Client:         namespaced{Client: k8sClient, ns: ns},
		API:            api,
		Applier:        &intake.Applier{Client: k8sClient, Reader: k8sClient},
		ModelsInterval: 24 * time.Hour,
	}
}

// feedThroughPoller returns a feed for specs that drive a reconciler: each
// call runs one cycle of the operator's own poller against the spec's
// simulator, which applies what it finds with the operator's apply step —
// so the specs see status exactly as the poller and intake write it, with
// the event IDs they use. A new namespace (a new spec) gets a new poller.
func feedThroughPoller(ns func() string, api func() *together.Client) func(types.NamespacedName) error {
	var p *poller.Poller
	var pns string
	return func(types.NamespacedName) error {
		if p == nil || pns != ns() {
			pns = ns()
			p = realIntake(pns, api())
		}
		_, err := p.PollOnce(ctx)
		return err
	}
}
