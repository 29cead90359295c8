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

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/workload"
)

func getMigration(ctx context.Context, e *env, name string) (*togetherv1.TogetherModelMigration, error) {
	var m togetherv1.TogetherModelMigration
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, &m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no TogetherModelMigration %s in namespace %s", name, e.namespace)
		}
		return nil, fmt.Errorf("reading TogetherModelMigration %s/%s: %w", e.namespace, name, err)
	}
	return &m, nil
}

// approve sets the annotation a Manual migration waits for.
func approve(ctx context.Context, e *env, name string) error {
	m, err := getMigration(ctx, e, name)
	if err != nil {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{togetherv1.ApproveMigrationAnnotation: "true"}}})
	if err := e.c.Patch(ctx, m, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("approving TogetherModelMigration %s/%s: %w", e.namespace, name, err)
	}
	fmt.Fprintf(e.out, "tmm/%s approved (%s=true): %s -> %s\n", name, togetherv1.ApproveMigrationAnnotation, m.Spec.ModelID, m.Spec.ReplacementModel)
	return nil
}

// rollback stops the migration (spec.dryRun=true, so it does not migrate the
// workloads again) and applies, to each workload it patched, the JSON patch
// recorded in the workload's rollback annotation. The recorded patch tests
// that each field still holds the replacement, so a workload changed since
// the migration is reported and left alone.
func rollback(ctx context.Context, e *env, name string, keepActive bool) error {
	m, err := getMigration(ctx, e, name)
	if err != nil {
		return err
	}
	if !keepActive && !m.Spec.DryRun {
		patch := []byte(`{"spec":{"dryRun":true}}`)
		if err := e.c.Patch(ctx, m, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("setting spec.dryRun on TogetherModelMigration %s/%s before the rollback: %w", e.namespace, name, err)
		}
		fmt.Fprintf(e.out, "tmm/%s: spec.dryRun=true, so it stops migrating\n", name)
	}
	seen := map[string]bool{}
	failed := 0
	restored := 0
	for _, t := range m.Status.Targets {
		k := t.Kind + "/" + t.Name
		if t.PatchedAt == nil || seen[k] {
			continue
		}
		seen[k] = true
		var obj client.Object
		switch t.Kind {
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		default:
			fmt.Fprintf(e.out, "%s: not a Deployment or StatefulSet, skipped\n", k)
			continue
		}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: t.Name}, obj); err != nil {
			fmt.Fprintf(e.out, "%s: %v\n", k, err)
			failed++
			continue
		}
		if err := applyRecord(ctx, e, obj); err != nil {
			if errors.Is(err, errNoRecord) {
				fmt.Fprintf(e.out, "%s: %v\n", k, err)
				continue
			}
			fmt.Fprintf(e.out, "%s: %v\n", k, err)
			failed++
			continue
		}
		fmt.Fprintf(e.out, "%s: restored %s\n", k, t.From)
		restored++
	}
	if failed > 0 {
		return fmt.Errorf("%d workloads of tmm/%s were not restored (see above)", failed, name)
	}
	fmt.Fprintf(e.out, "tmm/%s: %d workloads restored\n", name, restored)
	return nil
}

// errNoRecord says a workload carries no rollback record.
var errNoRecord = fmt.Errorf("no rollback record (%s): already rolled back, or never patched by the operator", togetherv1.RollbackAnnotation)

// applyRecord applies the rollback record the operator keeps on a
// Deployment or StatefulSet — in the current format or one an earlier
// version wrote — which undoes every change the operator made to its model
// fields. The record tests each field, so a workload changed since is
// refused whole.
func applyRecord(ctx context.Context, e *env, obj client.Object) error {
	var tmpl *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *appsv1.Deployment:
		tmpl = &o.Spec.Template
	case *appsv1.StatefulSet:
		tmpl = &o.Spec.Template
	}
	rec, err := workload.Read(workload.Workload{Annotations: obj.GetAnnotations(), Template: tmpl})
	if err != nil {
		return err
	}
	if !rec.Found() {
		return errNoRecord
	}
	patch, err := rec.RollbackPatch()
	if err != nil {
		return err
	}
	if err := workload.Apply(ctx, e.c, obj, patch); err != nil {
		return fmt.Errorf("the recorded rollback did not apply (the workload changed since the operator patched it?): %w", err)
	}
	return nil
}

// rollbackFineTune applies the rollback record of the Deployment a
// fine-tune deployed its model into (status.deployment). The record is the
// Deployment's one record, so it also undoes model changes a migration
// made there, newest first. The fine-tune does not deploy the same attempt
// again; it reports Deployed=False, DeployTargetLost.
func rollbackFineTune(ctx context.Context, e *env, name string) error {
	var ft togetherv1.TogetherFineTune
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, &ft); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no TogetherFineTune %s in namespace %s", name, e.namespace)
		}
		return fmt.Errorf("reading TogetherFineTune %s/%s: %w", e.namespace, name, err)
	}
	if ft.Status.Deployment == nil {
		return fmt.Errorf("tft/%s has deployed no model into a Deployment (status.deployment is empty)", name)
	}
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ft.Namespace, Name: ft.Status.Deployment.Name}, dep); err != nil {
		return fmt.Errorf("reading Deployment %s/%s: %w", ft.Namespace, ft.Status.Deployment.Name, err)
	}
	k := "Deployment/" + dep.Name
	if err := applyRecord(ctx, e, dep); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	fmt.Fprintf(e.out, "%s: restored (container %s had %q before tft/%s)\n", k, ft.Status.Deployment.Container, ft.Status.Deployment.PreviousValue, name)
	return nil
}
