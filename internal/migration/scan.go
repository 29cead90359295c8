// Package migration finds the fields of a workload that name a deprecated
// model and builds the minimal JSON patch that moves them to a replacement.
// It is pure logic — no API calls — so that the controller's decisions about
// what to touch can be tested exhaustively without a cluster.
package migration

import (
	"encoding/json"
	"fmt"
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

// Scan returns every field of w that names oldID as a whole value: env values
// equal to it, command and args equal to it or of the form key=oldID, and the
// together.ai/model annotation on the workload and its pod template. Values
// that merely contain oldID (old/id-v2, xold/id) are never matched.
func Scan(w Workload, oldID, newID string) []Change {
	var changes []Change
	if w.Annotations[ModelAnnotation] == oldID {
		changes = append(changes, Change{
			Field: "metadata.annotations[" + ModelAnnotation + "]",
			Path:  "/metadata/annotations/" + escape(ModelAnnotation),
			From:  oldID, To: newID,
		})
	}
	if w.Template == nil {
		return changes
	}
	if w.Template.Annotations[ModelAnnotation] == oldID {
		changes = append(changes, Change{
			Field: "spec.template.metadata.annotations[" + ModelAnnotation + "]",
			Path:  "/spec/template/metadata/annotations/" + escape(ModelAnnotation),
			From:  oldID, To: newID,
		})
	}
	changes = append(changes, scanContainers("initContainers", w.Template.Spec.InitContainers, oldID, newID)...)
	changes = append(changes, scanContainers("containers", w.Template.Spec.Containers, oldID, newID)...)
	return changes
}

func scanContainers(list string, containers []corev1.Container, oldID, newID string) []Change {
	var changes []Change
	for i, c := range containers {
		base := "/spec/template/spec/" + list + "/" + strconv.Itoa(i)
		field := "spec.template.spec." + list + "[" + c.Name + "]"
		nameGuard := Op{Op: "test", Path: base + "/name", Value: c.Name}
		for j, e := range c.Env {
			if e.ValueFrom != nil || e.Value != oldID {
				continue
			}
			p := base + "/env/" + strconv.Itoa(j)
			changes = append(changes, Change{
				Container: c.Name,
				Field:     field + ".env[" + e.Name + "]",
				Path:      p + "/value",
				From:      e.Value, To: newID,
				guards: []Op{nameGuard, {Op: "test", Path: p + "/name", Value: e.Name}},
			})
		}
		for _, l := range []struct {
			name string
			vals []string
		}{{"command", c.Command}, {"args", c.Args}} {
			for j, a := range l.vals {
				to, ok := RewriteArg(a, oldID, newID)
				if !ok {
					continue
				}
				changes = append(changes, Change{
					Container: c.Name,
					Field:     field + "." + l.name + "[" + strconv.Itoa(j) + "]",
					Path:      base + "/" + l.name + "/" + strconv.Itoa(j),
					From:      a, To: to,
					guards: []Op{nameGuard},
				})
			}
		}
	}
	return changes
}

// RewriteArg returns arg with oldID replaced when arg is oldID itself (the
// value of `--model old/id` given as two args) or key=oldID (`--model=old/id`);
// anything else is left alone, because a substring match could be part of a
// different model's name or of an unrelated value.
func RewriteArg(arg, oldID, newID string) (string, bool) {
	if arg == oldID {
		return newID, true
	}
	if i := strings.IndexByte(arg, '='); i > 0 && arg[i+1:] == oldID {
		return arg[:i+1] + newID, true
	}
	return "", false
}

// Patch builds the JSON patch that applies changes to w: it first tests every
// old value (and the names that pin its position), so that a value someone
// changed since the scan is not overwritten, then replaces the values and
// records the previous model and a rollback patch in annotations.
func Patch(w Workload, changes []Change, oldID string) ([]byte, error) {
	var ops []Op
	if w.Annotations == nil {
		// Creating the map would replace one added concurrently; only do it
		// on the exact version scanned.
		ops = append(ops,
			Op{Op: "test", Path: "/metadata/resourceVersion", Value: w.ResourceVersion},
			Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
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
	rollback, err := RollbackPatch(changes)
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

// RollbackPatch builds the JSON patch stored in RollbackAnnotation: it checks
// that each field still holds the replacement, puts the old value back and
// removes the migration's annotations.
func RollbackPatch(changes []Change) ([]byte, error) {
	var ops []Op
	for _, c := range changes {
		ops = append(ops, c.guards...)
		ops = append(ops, Op{Op: "test", Path: c.Path, Value: c.To})
	}
	for _, c := range changes {
		ops = append(ops, Op{Op: "replace", Path: c.Path, Value: c.From})
	}
	ops = append(ops,
		Op{Op: "remove", Path: "/metadata/annotations/" + escape(PreviousModelAnnotation)},
		Op{Op: "remove", Path: "/metadata/annotations/" + escape(RollbackAnnotation)})
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
