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

package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Options say how Patch guards and records a change.
type Options struct {
	// PinVersion makes the whole patch apply only to the resourceVersion
	// read: a caller whose decision depends on more than the changed values
	// (a fine-tune checks who holds the env var) uses it so that the check
	// and the write are one step. Without it, the patch tests only the values
	// it changes and their positions, so an unrelated concurrent edit (a
	// scale, another annotation) does not fail it.
	PinVersion bool
	// RollbackTo is the model the rollback marks the workload rolled back
	// to (togetherv1.RolledBackAnnotation), so that no migration moves it off
	// that model again: a migration passes the model it moves off; "" marks
	// nothing. An earlier record's mark is kept: it names an earlier model.
	RollbackTo string
	// Annotations are set on the workload in the same patch.
	Annotations map[string]string
}

// Patch builds the JSON patch that applies changes to w: it first tests
// every old value (and the names that pin its position), so that a value
// someone changed since w was read is not overwritten, then writes the new
// values and the rollback record (togetherv1.RollbackAnnotation). The record
// already on w, in any format Read understands, is merged, never
// overwritten: the new record undoes these changes first and then the
// earlier ones. The patch tests the old record so that a concurrent rewrite
// of it fails the patch instead of being lost, and removes the annotations
// of older formats, which the new record now holds.
func Patch(w Workload, changes []Change, o Options) ([]byte, error) {
	rec, err := Read(w)
	if err != nil {
		return nil, err
	}
	var ops []Op
	pinned := o.PinVersion || w.Annotations == nil
	if pinned {
		// Creating the annotations map would replace one added
		// concurrently: only do it on the exact version read.
		ops = append(ops, Op{Op: "test", Path: "/metadata/resourceVersion", Value: w.ResourceVersion})
	}
	if w.Annotations == nil {
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
	}
	sources := slices.Sorted(maps.Keys(rec.sources))
	for _, k := range sources {
		ops = append(ops, Op{Op: "test", Path: annotationPath(k), Value: rec.sources[k]})
	}
	seen := map[string]bool{}
	for _, c := range changes {
		for _, g := range c.guards {
			if key := g.Path + "\x00" + fmt.Sprint(g.Value); !seen[key] {
				seen[key] = true
				ops = append(ops, g)
			}
		}
		if c.From != "" {
			ops = append(ops, Op{Op: "test", Path: c.Path, Value: c.From})
		}
	}
	for _, c := range changes {
		ops = append(ops, c.forward()...)
	}

	var undo []Op
	for _, c := range changes {
		undo = append(undo, c.rollbackGuards()...)
		if c.To != "" {
			undo = append(undo, Op{Op: "test", Path: c.Path, Value: c.To})
		}
	}
	for _, c := range changes {
		undo = append(undo, c.backward()...)
	}
	rec.ops = append(undo, rec.ops...)
	if rec.mark == "" {
		rec.mark = o.RollbackTo
	}
	if len(rec.ops) > 0 || rec.mark != "" {
		stored, err := rec.encode([]string{togetherv1.RollbackAnnotation})
		if err != nil {
			return nil, err
		}
		ops = append(ops, Op{Op: "add", Path: annotationPath(togetherv1.RollbackAnnotation), Value: string(stored)})
	}
	for _, k := range sources {
		if k != togetherv1.RollbackAnnotation {
			ops = append(ops, Op{Op: "remove", Path: annotationPath(k)})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Annotations)) {
		ops = append(ops, Op{Op: "add", Path: annotationPath(k), Value: o.Annotations[k]})
	}
	out, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding the workload patch: %w", err)
	}
	return out, nil
}

// RemoveAnnotation returns the patch that removes the workload's
// annotation key only while it still holds value: a "test" makes it fail,
// changing nothing, when another writer changed it meanwhile (a fine-tune
// releasing the env var another one has since taken over).
func RemoveAnnotation(key, value string) ([]byte, error) {
	out, err := json.Marshal([]Op{{Op: "test", Path: annotationPath(key), Value: value}, {Op: "remove", Path: annotationPath(key)}})
	if err != nil {
		return nil, fmt.Errorf("encoding the removal of annotation %s: %w", key, err)
	}
	return out, nil
}

// Apply sends a patch built by Patch (or a record's RollbackPatch) to the
// workload obj names. Its tests make the API server refuse it when the
// workload changed since it was read; the caller reads it again and retries.
func Apply(ctx context.Context, c client.Client, obj client.Object, patch []byte) error {
	return c.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, patch))
}
