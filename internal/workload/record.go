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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Record is a workload's rollback record: the operations that undo every
// change the operator made to its model fields, newest first. It is kept in
// one annotation, togetherv1.RollbackAnnotation, as a JSON patch that a
// person can apply with kubectl; Read also understands the annotations
// earlier versions wrote (a migration's JSON patch, a fine-tune's previous
// env value), so that a workload patched by an older operator still rolls
// back, and Patch carries them into the one record.
type Record struct {
	// ops undo the recorded changes, newest first, without the record's own
	// bookkeeping (removing its annotations, marking the workload).
	ops []Op
	// mark is the model the rollback marks the workload rolled back to
	// (RolledBackAnnotation), "" for none: set when a migration contributed,
	// so that no migration moves the workload off that model again.
	mark string
	// sources are the annotations the record was read from, with their
	// values: a patch that rewrites the record tests them, and the rollback
	// removes them.
	sources map[string]string
}

// Found reports whether the workload carries a rollback record in any
// format.
func (r Record) Found() bool { return len(r.sources) > 0 }

// Previous returns the value the newest recorded change of the field at
// path (a JSON pointer to a value) restores: "" and true for an env var the
// operator created, false when no change of that field is recorded.
func (r Record) Previous(path string) (string, bool) {
	entry, isEnvValue := strings.CutSuffix(path, "/value")
	for _, op := range r.ops {
		switch {
		case op.Path == path && (op.Op == "replace" || op.Op == "add"):
			v, ok := op.Value.(string)
			return v, ok
		case isEnvValue && op.Op == "remove" && op.Path == entry:
			return "", true
		}
	}
	return "", false
}

// RollbackPatch returns the JSON patch that undoes every recorded change,
// removes the record's annotations and, when a migration contributed,
// marks the workload rolled back. Each step tests that its field still
// holds what the operator wrote, so a workload changed since is refused as
// a whole rather than half restored.
func (r Record) RollbackPatch() ([]byte, error) {
	return r.encode(slices.Sorted(maps.Keys(r.sources)))
}

// encode writes the record's operations, then removes the annotations
// named in remove and sets the mark.
func (r Record) encode(remove []string) ([]byte, error) {
	ops := slices.Clone(r.ops)
	for _, k := range remove {
		ops = append(ops, Op{Op: "remove", Path: annotationPath(k)})
	}
	if r.mark != "" {
		ops = append(ops, Op{Op: "add", Path: annotationPath(togetherv1.RolledBackAnnotation), Value: r.mark})
	}
	out, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding the rollback record: %w", err)
	}
	return out, nil
}

// Read returns the workload's rollback record, from RollbackAnnotation and
// from the annotations earlier versions wrote: a migration's JSON patch
// (LegacyMigrationRollbackAnnotation) and a fine-tune's previous value of an
// env var (LegacyPreviousModelAnnotationPrefix<container>.<env>). Changes
// recorded in the current format are newer than those in the old ones (a
// patch that writes the record removes the old annotations); a fine-tune's
// old record is taken as newer than a migration's, and every step tests its
// field, so a wrong guess fails the rollback instead of corrupting the
// workload. A record that is not a JSON patch is an error that names the
// annotation to fix.
func Read(w Workload) (Record, error) {
	r := Record{sources: map[string]string{}}
	if v, ok := w.Annotations[togetherv1.RollbackAnnotation]; ok {
		ops, mark, err := parseOps(togetherv1.RollbackAnnotation, v)
		if err != nil {
			return Record{}, err
		}
		r.ops, r.mark = ops, mark
		r.sources[togetherv1.RollbackAnnotation] = v
	}
	r.ops = append(r.ops, legacyEnvOps(w, r.sources)...)
	if v, ok := w.Annotations[togetherv1.LegacyMigrationRollbackAnnotation]; ok {
		ops, mark, err := parseOps(togetherv1.LegacyMigrationRollbackAnnotation, v)
		if err != nil {
			return Record{}, err
		}
		r.ops = append(r.ops, ops...)
		if mark != "" {
			// The older record returns the workload to an earlier model.
			r.mark = mark
		}
		r.sources[togetherv1.LegacyMigrationRollbackAnnotation] = v
	}
	if v, ok := w.Annotations[togetherv1.LegacyMigrationPreviousModelAnnotation]; ok {
		r.sources[togetherv1.LegacyMigrationPreviousModelAnnotation] = v
	}
	return r, nil
}

// parseOps reads a JSON-patch record and separates its field operations
// from its bookkeeping (removing record annotations, setting the mark).
func parseOps(key, value string) ([]Op, string, error) {
	var all []Op
	if err := json.Unmarshal([]byte(value), &all); err != nil {
		return nil, "", fmt.Errorf("the workload's %s annotation is not a JSON patch (%v); fix or remove it before the operator changes the workload", key, err)
	}
	var ops []Op
	mark := ""
	for _, op := range all {
		switch op.Path {
		case annotationPath(togetherv1.RolledBackAnnotation), annotationPath(togetherv1.LegacyRolledBackAnnotation):
			if v, ok := op.Value.(string); ok && op.Op == "add" {
				mark = v
			}
			continue
		case annotationPath(togetherv1.RollbackAnnotation), annotationPath(togetherv1.LegacyMigrationRollbackAnnotation),
			annotationPath(togetherv1.LegacyMigrationPreviousModelAnnotation):
			continue
		}
		ops = append(ops, op)
	}
	return ops, mark, nil
}

// legacyEnvOps turns the old fine-tune annotations (the env var's value
// before the fine-tune wrote it) into rollback steps, and adds them to
// sources. An annotation whose env var no longer exists cannot be placed and
// is left alone. The old format did not say whether an empty value meant an
// empty or a missing variable; the step restores an empty value, which never
// shifts the list.
func legacyEnvOps(w Workload, sources map[string]string) []Op {
	if w.Template == nil {
		return nil
	}
	var ops []Op
	for ci, c := range w.Template.Spec.Containers {
		base := "/spec/template/spec/containers/" + strconv.Itoa(ci)
		for ei, e := range c.Env {
			key := LegacyPreviousModelKey(c.Name, e.Name)
			prev, ok := w.Annotations[key]
			if !ok || e.ValueFrom != nil {
				continue
			}
			p := base + "/env/" + strconv.Itoa(ei)
			ops = append(ops,
				Op{Op: "test", Path: base + "/name", Value: c.Name},
				Op{Op: "test", Path: p + "/name", Value: e.Name})
			if e.Value != "" {
				// What the fine-tune wrote, as the workload holds it now.
				ops = append(ops, Op{Op: "test", Path: p + "/value", Value: e.Value})
			}
			ops = append(ops, Op{Op: "add", Path: p + "/value", Value: prev})
			sources[key] = prev
		}
	}
	return ops
}

// LegacyPreviousModelKey is the key under which earlier versions kept a
// container's env var's value from before a fine-tune wrote it.
func LegacyPreviousModelKey(container, env string) string {
	key := togetherv1.LegacyPreviousModelAnnotationPrefix + container + "." + env
	if len(validation.IsQualifiedName(key)) == 0 {
		return key
	}
	h := sha256.Sum256([]byte(container + "/" + env))
	return togetherv1.LegacyPreviousModelAnnotationPrefix + hex.EncodeToString(h[:])[:12]
}

// annotationPath is the JSON pointer of a workload annotation.
func annotationPath(key string) string { return "/metadata/annotations/" + escape(key) }

// escape encodes a JSON pointer reference token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
