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

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Resources are woken by the objects they name instead of looking again on
// a timer: a metadata-only watch (no data is cached, only names and
// versions) of the referenced kind, and a field index from the name a
// resource references to the resource, as notification-controller and
// cluster-api do. A fixed input takes effect at once.
//
// Secrets are not watched: RBAC cannot grant list and watch on Secrets for
// metadata only, and that grant would let the operator read every Secret of
// the cluster. The two Secret lookups (a subscription's signing Secret, a
// batch fetch Job's API key Secret) keep their short recheck.
const (
	// indexTrainingConfigMap indexes fine-tunes by the ConfigMap holding
	// their training data.
	indexTrainingConfigMap = "spec.training.trainingData.name"
	// indexBatchConfigMaps indexes batches by the ConfigMaps they read
	// (spec.input.configMapRef) or write (spec.output.configMap).
	indexBatchConfigMaps = "spec.configMaps"
)

func trainingConfigMapNames(o client.Object) []string {
	ft, ok := o.(*togetherv1.TogetherFineTune)
	if !ok || ft.Spec.Training == nil || ft.Spec.Training.TrainingData == nil {
		return nil
	}
	return []string{ft.Spec.Training.TrainingData.Name}
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
	})
}
