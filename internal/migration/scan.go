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

// Package migration finds the fields of a workload that name a deprecated
// model and builds the minimal JSON patch that moves them to a replacement.
// It is pure logic — no API calls — so that the controller's decisions about
// what to touch can be tested exhaustively without a cluster.
package migration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// ModelAnnotation on a workload or its pod template names the model it uses,
// for applications that read the model from somewhere other than env or args.
const ModelAnnotation = togetherv1.ModelAnnotation

// PreviousModelAnnotation records, on a migrated workload, the model it used
// before, so that a person looking at the workload sees what changed.
const PreviousModelAnnotation = togetherv1.PreviousModelAnnotationPrefix + "model"

// RollbackAnnotation holds a JSON patch that restores every field the
// migration changed; `kubectl patch --type=json -p "$(...)"` applies it.
const RollbackAnnotation = togetherv1.PreviousModelAnnotationPrefix + "rollback"

// Op is one RFC 6902 JSON patch operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Change is one field of a workload that holds the old model.
type Change struct {
	// Container is the container holding the field, empty for annotations.
	Container string
	// Field is the path a person reads, e.g.
	// spec.template.spec.containers[app].env[MODEL].
	Field string
	// Path is the JSON pointer of the value.
	Path string
	// From is the value before, To the value after.
	From, To string
	// HeldBy, set only by Held, names the fine-tune that holds this env var.
	HeldBy string
	// guards pin the position of the value (container and env names at the
	// indices used in Path), so that a concurrent edit that shifts lists makes
	// the patch fail instead of rewriting an unrelated field.
	guards []Op
}

// Workload is what Scan and Patch need to know of a Deployment or StatefulSet.
type Workload struct {
	// Annotations of the workload itself.
	Annotations map[string]string
	// Template is the pod template.
	Template *corev1.PodTemplateSpec
	// ResourceVersion guards the patch when it has to create the annotations map.
	ResourceVersion string
}

// Target is what a migration moves: the model it replaces, its replacement,
// and the environment variables allowed to hold a model.
type Target struct {
	From, To string
	// EnvNames are the only env vars rewritten; nil means
	// togetherv1.DefaultModelEnvNames.
	EnvNames []string
}

// Scan returns the model-bearing fields of w that name t.From as a whole
// value: the env vars named by t.EnvNames, --model arguments (--model=ID,
// or --model followed by ID) and the together.ai/model annotation on the
// workload and its pod template. Nothing else is ever matched — not a
// command, not another env var, not a value that merely contains the model
// (old/id-v2) — so that a migration cannot rewrite a URL, an executable or
// a credential that happens to equal its model ID. A workload that a person
// rolled back from t.From (RolledBackAnnotation) yields nothing.
func Scan(w Workload, t Target) []Change {
	if w.Annotations[togetherv1.RolledBackAnnotation] == t.From {
		return nil
	}
	envNames := t.EnvNames
	if len(envNames) == 0 {
		envNames = togetherv1.DefaultModelEnvNames
	}
	var changes []Change
	if w.Annotations[ModelAnnotation] == t.From {
		changes = append(changes, Change{
			Field: "metadata.annotations[" + ModelAnnotation + "]",
			Path:  "/metadata/annotations/" + escape(ModelAnnotation),
			From:  t.From, To: t.To,
		})
	}
	if w.Template == nil {
		return changes
	}
	if w.Template.Annotations[ModelAnnotation] == t.From {
		changes = append(changes, Change{
			Field: "spec.template.metadata.annotations[" + ModelAnnotation + "]",
			Path:  "/spec/template/metadata/annotations/" + escape(ModelAnnotation),
			From:  t.From, To: t.To,
		})
	}
	changes = append(changes, scanContainers("initContainers", w.Template.Spec.InitContainers, t, envNames, w.Annotations, nil)...)
	changes = append(changes, scanContainers("containers", w.Template.Spec.Containers, t, envNames, w.Annotations, nil)...)
	return changes
}

// Held returns the env vars that would match t.From but that a fine-tune
// holds (the workload's together.ai/deployed-by.<container>.<env>
// annotation names it): Scan leaves them alone, because a fine-tune's
// deployed model takes precedence over a migration (docs/migration.md).
// Change.HeldBy names the fine-tune.
func Held(w Workload, t Target) []Change {
	if w.Template == nil || w.Annotations[togetherv1.RolledBackAnnotation] == t.From {
		return nil
	}
	envNames := t.EnvNames
	if len(envNames) == 0 {
		envNames = togetherv1.DefaultModelEnvNames
	}
	var held []Change
	scanContainers("initContainers", w.Template.Spec.InitContainers, t, envNames, w.Annotations, &held)
	scanContainers("containers", w.Template.Spec.Containers, t, envNames, w.Annotations, &held)
	return held
}

// scanContainers finds the model fields of containers; env vars a fine-tune
// holds (per annotations) are skipped, and appended to held when it is set.
func scanContainers(list string, containers []corev1.Container, t Target, envNames []string, annotations map[string]string, held *[]Change) []Change {
	var changes []Change
	for i, c := range containers {
		base := "/spec/template/spec/" + list + "/" + strconv.Itoa(i)
		field := "spec.template.spec." + list + "[" + c.Name + "]"
		nameGuard := Op{Op: "test", Path: base + "/name", Value: c.Name}
		for j, e := range c.Env {
			if e.ValueFrom != nil || e.Value != t.From || !slices.Contains(envNames, e.Name) {
				continue
			}
			if by := annotations[togetherv1.DeployedByAnnotation(c.Name, e.Name)]; by != "" {
				if held != nil {
					*held = append(*held, Change{Container: c.Name, Field: field + ".env[" + e.Name + "]", From: e.Value, HeldBy: by})
				}
				continue
			}
			p := base + "/env/" + strconv.Itoa(j)
			changes = append(changes, Change{
				Container: c.Name,
				Field:     field + ".env[" + e.Name + "]",
				Path:      p + "/value",
				From:      e.Value, To: t.To,
				guards: []Op{nameGuard, {Op: "test", Path: p + "/name", Value: e.Name}},
			})
		}
		for j, a := range c.Args {
			var to string
			var guards []Op
			switch {
			case j > 0 && c.Args[j-1] == ModelFlag && a == t.From:
				// --model ID: pin the flag before the value too.
				to = t.To
				guards = []Op{nameGuard, {Op: "test", Path: base + "/args/" + strconv.Itoa(j-1), Value: ModelFlag}}
			default:
				var ok bool
				if to, ok = RewriteArg(a, t.From, t.To); !ok {
					continue
				}
				guards = []Op{nameGuard}
			}
			changes = append(changes, Change{
				Container: c.Name,
				Field:     field + ".args[" + strconv.Itoa(j) + "]",
				Path:      base + "/args/" + strconv.Itoa(j),
				From:      a, To: to,
				guards: guards,
			})
		}
	}
	return changes
}

// ModelFlag is the one argument flag whose value a migration rewrites.
const ModelFlag = "--model"

// RewriteArg returns arg with oldID replaced when arg is --model=oldID; any
// other argument is left alone (the two-argument form --model oldID is
// matched by Scan, which sees the flag before the value). A substring
// match could be part of a different model's name or of an unrelated value.
func RewriteArg(arg, oldID, newID string) (string, bool) {
	if arg == ModelFlag+"="+oldID {
		return ModelFlag + "=" + newID, true
	}
	return "", false
}

// Patch builds the JSON patch that applies changes to w: it first tests every
// old value (and the names that pin its position), so that a value someone
// changed since the scan is not overwritten, then replaces the values and
// records the previous model and a rollback patch in annotations. A rollback
// record already on w (an earlier patch, by this migration or another) is
// merged, never overwritten: the new rollback undoes this patch first and
// then the earlier ones, and the patch tests the old record so that a
// concurrent rewrite of it fails the patch instead of being lost.
func Patch(w Workload, changes []Change, oldID string) ([]byte, error) {
	var ops []Op
	if w.Annotations == nil {
		// Creating the map would replace one added concurrently; only do it
		// on the exact version scanned.
		ops = append(ops,
			Op{Op: "test", Path: "/metadata/resourceVersion", Value: w.ResourceVersion},
			Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
	}
	prior, hasPrior := w.Annotations[RollbackAnnotation]
	if hasPrior {
		ops = append(ops, Op{Op: "test", Path: "/metadata/annotations/" + escape(RollbackAnnotation), Value: prior})
	}
	seen := map[string]bool{}
	for _, c := range changes {
		for _, g := range c.guards {
			if key := g.Path + "\x00" + fmt.Sprint(g.Value); !seen[key] {
				seen[key] = true
				ops = append(ops, g)
			}
		}
		ops = append(ops, Op{Op: "test", Path: c.Path, Value: c.From})
	}
	for _, c := range changes {
		ops = append(ops, Op{Op: "replace", Path: c.Path, Value: c.To})
	}
	rollback, err := rollbackPatch(changes, prior, oldID)
	if err != nil {
		return nil, err
	}
	ops = append(ops,
		Op{Op: "add", Path: "/metadata/annotations/" + escape(PreviousModelAnnotation), Value: oldID},
		Op{Op: "add", Path: "/metadata/annotations/" + escape(RollbackAnnotation), Value: string(rollback)})
	out, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding migration patch: %w", err)
	}
	return out, nil
}

// RollbackPatch builds the JSON patch stored in RollbackAnnotation for a
// workload that had no rollback record: see rollbackPatch.
func RollbackPatch(changes []Change, oldID string) ([]byte, error) {
	return rollbackPatch(changes, "", oldID)
}

// rollbackPatch checks that each changed field still holds the replacement
// and puts the old value back, then applies the earlier record prior (its
// field operations, in order), removes the migration's annotations and
// marks the workload rolled back from the model it returns to, so that no
// migration moves it off that model again.
func rollbackPatch(changes []Change, prior, oldID string) ([]byte, error) {
	var ops []Op
	for _, c := range changes {
		ops = append(ops, c.guards...)
		ops = append(ops, Op{Op: "test", Path: c.Path, Value: c.To})
	}
	for _, c := range changes {
		ops = append(ops, Op{Op: "replace", Path: c.Path, Value: c.From})
	}
	restoredTo := oldID
	if prior != "" {
		var earlier []Op
		if err := json.Unmarshal([]byte(prior), &earlier); err != nil {
			return nil, fmt.Errorf("the workload's %s annotation is not a JSON patch (%v); remove or fix it before migrating", RollbackAnnotation, err)
		}
		for _, op := range earlier {
			switch op.Path {
			case "/metadata/annotations/" + escape(PreviousModelAnnotation), "/metadata/annotations/" + escape(RollbackAnnotation):
				continue
			case "/metadata/annotations/" + escape(togetherv1.RolledBackAnnotation):
				if v, ok := op.Value.(string); ok {
					restoredTo = v
				}
				continue
			}
			ops = append(ops, op)
		}
	}
	ops = append(ops,
		Op{Op: "remove", Path: "/metadata/annotations/" + escape(PreviousModelAnnotation)},
		Op{Op: "remove", Path: "/metadata/annotations/" + escape(RollbackAnnotation)},
		Op{Op: "add", Path: "/metadata/annotations/" + escape(togetherv1.RolledBackAnnotation), Value: restoredTo})
	out, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding rollback patch: %w", err)
	}
	return out, nil
}

// escape encodes a JSON pointer reference token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
