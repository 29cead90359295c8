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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
)

// Resources are woken by the objects they name instead of looking again on
// a timer: a metadata-only watch (no data is cached, only names and
// versions) of the referenced kind, and a field index from the name a
// resource references to the resource, as notification-controller and
// cluster-api do. A fixed input takes effect at once.
//
// Secrets are watched the same way, metadata only, and the manager's cache
// strips their annotations, labels and managed fields as it stores them
// (operator.CacheOptions): kubectl apply leaves a Secret's data in plain text
// in its last-applied-configuration annotation, so the cache keeps only
// names and versions of Secrets, never their content. Reads of a Secret's
// data stay one GET by name straight from the API server.
//
// The watches need list and watch on Secrets and Namespaces (RBAC cannot
// narrow either to metadata): see the README's security model.
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Field indexes from a referenced object's name to the resources naming it.
const (
	// indexTrainingConfigMap indexes fine-tunes by the ConfigMap holding
	// their training data.
	indexTrainingConfigMap = "spec.training.trainingData.name"
	// indexBatchConfigMaps indexes batches by the ConfigMaps they read
	// (spec.input.configMapRef) or write (spec.output.configMap).
	indexBatchConfigMaps = "spec.configMaps"
	// indexOutputClaim indexes batches by the PersistentVolumeClaim their
	// output is written to (spec.output.persistentVolumeClaim.claimName).
	indexOutputClaim = "spec.output.persistentVolumeClaim.claimName"
	// indexSecrets indexes a kind's resources by the Secrets they read: the
	// ones their spec names and, with per-namespace accounts, the Secrets an
	// account may come from (secretWatch).
	indexSecrets = "together.ai/secrets"
)

func trainingConfigMapNames(o client.Object) []string {
	ft, ok := o.(*togetherv1.TogetherFineTune)
	if !ok || ft.Spec.Training == nil {
		return nil
	}
	var names []string
	if d := ft.Spec.Training.TrainingData; d != nil {
		names = append(names, d.Name)
	}
	if d := ft.Spec.Training.ValidationData; d != nil {
		names = append(names, d.Name)
	}
	return names
}

func batchConfigMapNames(o client.Object) []string {
	tb, ok := o.(*togetherv1.TogetherBatch)
	if !ok {
		return nil
	}
	var names []string
	if in := tb.Spec.Input; in != nil && in.ConfigMapRef != nil {
		names = append(names, in.ConfigMapRef.Name)
	}
	if out := tb.Spec.Output; out != nil && out.ConfigMap != nil {
		names = append(names, out.ConfigMap.Name)
	}
	return names
}

// indexReferences registers index on objects of obj's kind.
func indexReferences(mgr ctrl.Manager, obj client.Object, index string, names client.IndexerFunc) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), obj, index, names); err != nil {
		return fmt.Errorf("indexing %T by %s: %w", obj, index, err)
	}
	return nil
}

// enqueueReferencing maps a referenced object to the resources of its
// namespace whose index names it.
func enqueueReferencing(c client.Reader, list client.ObjectList, index string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, ref client.Object) []ctrl.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(ref.GetNamespace()), client.MatchingFields{index: ref.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "listing resources that reference an object", "index", index, "name", ref.GetName())
			return nil
		}
		return requestsFor(l)
	})
}

// apiKeySecretNamer is a resource that may name its own API key Secret
// (spec.apiKeySecretRef); the Secret watch indexes it by that name too.
type apiKeySecretNamer interface {
	APIKeySecret() *togetherv1.APIKeySecretRef
}

// credentialSecretNames lists the Secrets o's account may be read from: the
// Secret it names for its key, and its namespace's default Secret
// together-api-key, which every resource of the namespace falls back to.
func credentialSecretNames(o client.Object) []string {
	names := []string{credentials.DefaultSecretName}
	if n, ok := o.(apiKeySecretNamer); ok {
		if ref := n.APIKeySecret(); ref != nil && ref.Name != "" && ref.Name != credentials.DefaultSecretName {
			names = append(names, ref.Name)
		}
	}
	return names
}

// secretWatch indexes obj's kind by the Secrets its resources read — those
// own lists from the spec (a signing Secret, a fetch Job's key Secret) and,
// with per-namespace accounts, credentialSecretNames — and returns the
// handler that maps a Secret (created, changed, deleted) to them. Creating a
// missing Secret or rotating a key thus takes effect at once, with no
// recheck timer.
func (t *TogetherAccess[A]) secretWatch(mgr ctrl.Manager, obj client.Object, list client.ObjectList, own func(client.Object) []string) (handler.EventHandler, error) {
	names := func(o client.Object) []string {
		var n []string
		if own != nil {
			n = own(o)
		}
		if t.Accounts != nil {
			n = append(n, credentialSecretNames(o)...)
		}
		return n
	}
	if err := indexReferences(mgr, obj, indexSecrets, names); err != nil {
		return nil, err
	}
	return enqueueReferencing(mgr.GetClient(), list, indexSecrets), nil
}

// withAccountWatches adds the watches that wake a kind's resources when
// their account may have changed: the Secrets they read (secrets, from
// secretWatch) and, with per-namespace accounts, their Namespace's
// shared-key label (an administrator allowing or refusing the operator-wide
// key).
func (t *TogetherAccess[A]) withAccountWatches(b *builder.TypedBuilder[ctrl.Request], mgr ctrl.Manager, list client.ObjectList, secrets handler.EventHandler) *builder.TypedBuilder[ctrl.Request] {
	b = b.WatchesMetadata(&corev1.Secret{}, secrets)
	if t.Accounts == nil {
		return b
	}
	return b.WatchesMetadata(&corev1.Namespace{}, enqueueNamespace(mgr.GetClient(), list),
		builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			DeleteFunc: func(event.DeleteEvent) bool { return false },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetLabels()[credentials.SharedKeyLabel] != e.ObjectNew.GetLabels()[credentials.SharedKeyLabel]
			},
			GenericFunc: func(event.GenericEvent) bool { return false },
		}))
}

// enqueueNamespace maps a Namespace to every resource of list's kind in it.
func enqueueNamespace(c client.Reader, list client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, ns client.Object) []ctrl.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(ns.GetName())); err != nil {
			logf.FromContext(ctx).Error(err, "listing resources of a namespace whose shared-key label changed", "namespace", ns.GetName())
			return nil
		}
		return requestsFor(l)
	})
}

// requestsFor turns a list into reconcile requests.
func requestsFor(l client.ObjectList) []ctrl.Request {
	items, err := apimeta.ExtractList(l)
	if err != nil {
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(items))
	for _, it := range items {
		if o, ok := it.(client.Object); ok {
			reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
	}
	return reqs
}
