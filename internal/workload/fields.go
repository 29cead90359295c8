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

// Package workload holds what the operator knows about the workloads
// (Deployments and StatefulSets) whose model it changes: which fields carry
// a model (fields.go), how a change is written with a patch that fails
// rather than overwrite a concurrent edit (patch.go), and the one rollback
// record both writers — a fine-tune's deploy step and a model migration —
// keep on the workload and both rollback paths read (record.go).
//
// It is pure logic apart from Apply, so that the decisions about what to
// touch and how to undo it can be tested exhaustively without a cluster.
package workload

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Op is one RFC 6902 JSON patch operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Change is one model field of a workload and the value it gets.
type Change struct {
	// Container is the container holding the field, empty for annotations.
	Container string
	// Field is the path a person reads, e.g.
	// spec.template.spec.containers[app].env[MODEL].
	Field string
	// Path is the JSON pointer of the value (after the change, for a value
	// the change creates).
	Path string
	// From is the value before ("" when the field does not exist yet), To
	// the value after.
	From, To string
	// HeldBy, set only by Held, names the fine-tune that holds this env var.
	HeldBy string
	// guards pin the position of the value (container and env names at the
	// indices used in Path), so that a concurrent edit that shifts lists makes
	// the patch fail instead of rewriting an unrelated field. undoGuards
	// replace them in the rollback when they differ (a created env var is
	// pinned by its own name there).
	guards, undoGuards []Op
	// write and undo are the operations that set To and put From back;
	// nil means "replace Path with To" and "replace Path with From".
	write, undo []Op
}

// forward returns the operations that set the change, after its tests.
func (c Change) forward() []Op {
	if c.write != nil {
		return c.write
	}
	return []Op{{Op: "replace", Path: c.Path, Value: c.To}}
}

// backward returns the operations that undo the change, after its tests.
func (c Change) backward() []Op {
	if c.undo != nil {
		return c.undo
	}
	return []Op{{Op: "replace", Path: c.Path, Value: c.From}}
}

// rollbackGuards returns the tests that pin the field's position when the
// change is undone.
func (c Change) rollbackGuards() []Op {
	if c.undoGuards != nil {
		return c.undoGuards
	}
	return c.guards
}

// Workload is what Scan and Patch need to know of a Deployment or StatefulSet.
type Workload struct {
	// Annotations of the workload itself.
	Annotations map[string]string
	// Template is the pod template.
	Template *corev1.PodTemplateSpec
	// ResourceVersion guards the patch when it has to create the annotations
	// map, and pins the whole patch with Options.PinVersion.
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
// rolled back from t.From (RolledBackTo) yields nothing.
func Scan(w Workload, t Target) []Change {
	if RolledBackTo(w.Annotations) == t.From {
		return nil
	}
	envNames := t.EnvNames
	if len(envNames) == 0 {
		envNames = togetherv1.DefaultModelEnvNames
	}
	var changes []Change
	if w.Annotations[togetherv1.ModelAnnotation] == t.From {
		changes = append(changes, Change{
			Field: "metadata.annotations[" + togetherv1.ModelAnnotation + "]",
			Path:  "/metadata/annotations/" + escape(togetherv1.ModelAnnotation),
			From:  t.From, To: t.To,
		})
	}
	if w.Template == nil {
		return changes
	}
	if w.Template.Annotations[togetherv1.ModelAnnotation] == t.From {
		changes = append(changes, Change{
			Field: "spec.template.metadata.annotations[" + togetherv1.ModelAnnotation + "]",
			Path:  "/spec/template/metadata/annotations/" + escape(togetherv1.ModelAnnotation),
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
	if w.Template == nil || RolledBackTo(w.Annotations) == t.From {
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

// RolledBackTo returns the model a person rolled the workload back to, from
// RolledBackAnnotation or the annotation earlier versions set; "" when it
// was not rolled back.
func RolledBackTo(annotations map[string]string) string {
	if v := annotations[togetherv1.RolledBackAnnotation]; v != "" {
		return v
	}
	return annotations[togetherv1.LegacyRolledBackAnnotation]
}

// SetEnv returns the change that sets env var env of container to value,
// creating the variable when the container has none of that name (the
// change's From is then ""). It refuses a container that does not exist and
// an env var that takes its value from a source (valueFrom), which a value
// cannot replace.
func SetEnv(w Workload, container, env, value string) (Change, error) {
	if w.Template == nil {
		return Change{}, fmt.Errorf("the workload has no pod template")
	}
	containers := w.Template.Spec.Containers
	ci := slices.IndexFunc(containers, func(c corev1.Container) bool { return c.Name == container })
	if ci < 0 {
		return Change{}, fmt.Errorf("the workload has no container %q", container)
	}
	c := containers[ci]
	base := "/spec/template/spec/containers/" + strconv.Itoa(ci)
	nameGuard := Op{Op: "test", Path: base + "/name", Value: c.Name}
	field := "spec.template.spec.containers[" + c.Name + "].env[" + env + "]"
	ei := -1
	for i := range c.Env {
		if c.Env[i].Name == env {
			ei = i
		}
	}
	if ei >= 0 {
		if c.Env[ei].ValueFrom != nil {
			return Change{}, fmt.Errorf("env var %s of container %s takes its value from a source", env, c.Name)
		}
		p := base + "/env/" + strconv.Itoa(ei)
		return Change{
			Container: c.Name, Field: field, Path: p + "/value", From: c.Env[ei].Value, To: value,
			guards: []Op{nameGuard, {Op: "test", Path: p + "/name", Value: env}},
			// "add" sets the member whether or not it is there: an empty
			// value is not serialised, so "replace" would fail on it.
			write: []Op{{Op: "add", Path: p + "/value", Value: value}},
		}, nil
	}
	// A new env var is appended, so nothing after it shifts; undoing it
	// removes exactly that entry, pinned by its name.
	p := base + "/env/" + strconv.Itoa(len(c.Env))
	entry := corev1.EnvVar{Name: env, Value: value}
	write := []Op{{Op: "add", Path: base + "/env/-", Value: entry}}
	if c.Env == nil {
		write = []Op{{Op: "add", Path: base + "/env", Value: []corev1.EnvVar{entry}}}
	}
	return Change{
		Container: c.Name, Field: field, Path: p + "/value", To: value,
		guards:     []Op{nameGuard},
		undoGuards: []Op{nameGuard, {Op: "test", Path: p + "/name", Value: env}},
		write:      write,
		undo:       []Op{{Op: "remove", Path: p}},
	}, nil
}
