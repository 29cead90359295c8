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

package operator

import (
	"context"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretReads counts, per Secret (namespace/name), the account resolver's
// reads of it: live GETs from the API server, and metadata reads from the
// manager's cache (one per resolution that looks at that Secret).
var secretReads = &readCounts{live: map[string]int{}, cached: map[string]int{}}

type readCounts struct {
	mu           sync.Mutex
	live, cached map[string]int
}

// of returns the live and cached reads of Secret ns/name so far.
func (c *readCounts) of(ns, name string) (live, cached int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[ns+"/"+name], c.cached[ns+"/"+name]
}

// countSecretReads wraps a reader of the resolver, counting its Secret reads
// in counts (live or cached).
type countSecretReads struct {
	client.Reader
	counts map[string]int
}

func (r countSecretReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	_, full := obj.(*corev1.Secret)
	if m, ok := obj.(*metav1.PartialObjectMetadata); full || ok && m.Kind == "Secret" {
		secretReads.mu.Lock()
		r.counts[key.String()]++
		secretReads.mu.Unlock()
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

func deployment(ns, name, model string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.k8s.io/pause:3.10",
					Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: model}},
				}}},
			},
		},
	}
}
