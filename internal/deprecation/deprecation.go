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

// Package deprecation turns a model.deprecated event into the
// TogetherModelMigration that moves workloads off the model. It is kept apart
// from the apply step of jobs, which writes only status, because it creates
// and updates whole resources.
package deprecation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/lattice"
)

// MigrationName is the name of the TogetherModelMigration created for a
// deprecated model: stable, a valid DNS name, and collision-safe.
func MigrationName(modelID string) string { return event.ObjectName("deprecated", modelID) }

// ReplacementFor returns the replacement model for a deprecation: the one the
// event names, else the subscription's declared mapping.
func ReplacementFor(sub *togetherv1.TogetherWebhookSubscription, modelID, fromEvent string) string {
	if fromEvent != "" {
		return fromEvent
	}
	if sub == nil {
		return ""
	}
	for _, m := range sub.Spec.ModelReplacements {
		if m.ModelID == modelID {
			return m.ReplacementModel
		}
	}
	return ""
}

// SkipCatalogCheckFor reports whether the subscription's declared mapping
// of modelID to replacement asks created migrations to skip the check of
// the replacement against Together's model list (a fine-tuned or private
// model). A replacement named by the event, or another entry's, does not.
func SkipCatalogCheckFor(sub *togetherv1.TogetherWebhookSubscription, modelID, replacement string) bool {
	if sub == nil {
		return false
	}
	for _, m := range sub.Spec.ModelReplacements {
		if m.ModelID == modelID && m.ReplacementModel == replacement {
			return m.SkipCatalogCheck
		}
	}
	return false
}

// ErrNoReplacement means a deprecation named no replacement and none is
// declared, so no migration can be created.
var ErrNoReplacement = fmt.Errorf("no replacement model is known")

// ErrNotModelID means a deprecation named a model or replacement that is not
// a Together model ID (org/name), so no migration is created from it.
var ErrNotModelID = fmt.Errorf("the model or its replacement is not a Together model ID (org/name)")

// Writer creates and updates the migrations of deprecated models.
type Writer struct {
	// Client writes migrations.
	Client client.Client
	// Reader reads migrations straight from the API server.
	Reader client.Reader
	// Recorder emits an Event per created or changed migration.
	Recorder events.EventRecorder
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Result is what became of one deprecation: the outcome, the migration it
// concerns, and for a failure (or a missing replacement) why.
type Result struct {
	Outcome lattice.Outcome
	Object  types.NamespacedName
	Err     error
}

// ErrNoWrite marks a failure to make an event durable; the sender should retry.
var ErrNoWrite = errors.New("could not record the event")

// AnnotationEventTime records, on a migration made from deprecations, the
// time (the event's created_at) of the deprecation its spec now holds.
const AnnotationEventTime = "together.ai/deprecation-event-time"

// maxMergeAttempts bounds the read-merge-write rounds of one deprecation
// that lose to concurrent writers before the delivery fails (and its sender
// retries).
const maxMergeAttempts = 5

// Apply creates or updates the migration for a deprecated model, in the
// subscription's namespace. Deprecations of one model merge monotonically:
// of all that were delivered, the one with the newest event time wins (ties
// broken by the later sunset date, then the replacement's name), whatever
// order they arrive in and however often — an older event retried later
// changes nothing. A create that finds the migration already there (another
// replica made it a moment ago) re-reads it and merges, rather than
// acknowledging a delivery whose content it never compared.
func (a *Writer) Apply(ctx context.Context, namespace string, ev event.Event, sub *togetherv1.TogetherWebhookSubscription) Result {
	d := ev.Deprecation
	nn := types.NamespacedName{Namespace: namespace, Name: MigrationName(d.ModelID)}
	replacement := ReplacementFor(sub, d.ModelID, d.ReplacementModel)
	if replacement == "" || replacement == d.ModelID {
		return Result{Outcome: lattice.Unmatched, Object: nn, Err: ErrNoReplacement}
	}
	if !togetherv1.IsModelID(d.ModelID) || !togetherv1.IsModelID(replacement) {
		return Result{Outcome: lattice.Unmatched, Object: nn, Err: ErrNotModelID}
	}
	incoming := version{at: ev.Time.UTC(), sunset: d.SunsetDate, replacement: replacement}
	for range maxMergeAttempts {
		var existing togetherv1.TogetherModelMigration
		err := a.Reader.Get(ctx, nn, &existing)
		switch {
		case apierrors.IsNotFound(err):
			r, created := a.createMigration(ctx, nn, ev, incoming, sub)
			if created || r.Outcome == lattice.Failed {
				return r
			}
			continue // it exists after all: read it and merge
		case err != nil:
			return Result{Outcome: lattice.Failed, Object: nn, Err: fmt.Errorf("%w: reading migration: %v", ErrNoWrite, err)}
		}
		if slices.Contains(existing.Status.ProcessedEvents, ev.ID) {
			return Result{Outcome: lattice.Duplicate, Object: nn}
		}
		switch c := incoming.compare(versionOf(&existing)); {
		case c == 0:
			return Result{Outcome: lattice.Duplicate, Object: nn}
		case c < 0:
			return Result{Outcome: lattice.Stale, Object: nn}
		}
		existing.Spec.ReplacementModel = replacement
		existing.Spec.SunsetDate = d.SunsetDate
		if SkipCatalogCheckFor(sub, d.ModelID, replacement) {
			// Only ever turned on here: a person may have set it.
			existing.Spec.SkipCatalogCheck = true
		}
		incoming.stamp(&existing)
		if err := a.Client.Update(ctx, &existing); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return Result{Outcome: lattice.Failed, Object: nn, Err: fmt.Errorf("%w: updating migration: %v", ErrNoWrite, err)}
		}
		a.recordMigrationEvent(ctx, &existing, ev)
		if a.Recorder != nil {
			a.Recorder.Eventf(&existing, nil, togetherv1.EventTypeNormal, togetherv1.ReasonDeprecationUpdated, "Apply",
				"Model %s deprecation updated: replacement %s, sunset %s", d.ModelID, replacement, d.SunsetDate)
		}
		return Result{Outcome: lattice.Applied, Object: nn}
	}
	return Result{Outcome: lattice.Failed, Object: nn, Err: fmt.Errorf("%w: the migration kept changing under %d attempts to merge", ErrNoWrite, maxMergeAttempts)}
}

// version orders the deprecations of one model: event time first, then
// sunset date (YYYY-MM-DD sorts as it reads), then replacement name, so
// that the merge is a maximum over a total order.
type version struct {
	at                  time.Time
	sunset, replacement string
}

func versionOf(m *togetherv1.TogetherModelMigration) version {
	v := version{sunset: m.Spec.SunsetDate, replacement: m.Spec.ReplacementModel}
	if t, err := time.Parse(time.RFC3339Nano, m.Annotations[AnnotationEventTime]); err == nil {
		v.at = t.UTC()
	}
	return v
}

func (v version) compare(o version) int {
	if c := v.at.Compare(o.at); c != 0 {
		return c
	}
	if c := strings.Compare(v.sunset, o.sunset); c != 0 {
		return c
	}
	return strings.Compare(v.replacement, o.replacement)
}

func (v version) stamp(m *togetherv1.TogetherModelMigration) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[AnnotationEventTime] = v.at.Format(time.RFC3339Nano)
}

// createMigration creates the migration; created is false when it already
// exists (and nothing was written).
func (a *Writer) createMigration(ctx context.Context, nn types.NamespacedName, ev event.Event, v version, sub *togetherv1.TogetherWebhookSubscription) (r Result, created bool) {
	d := ev.Deprecation
	replacement := v.replacement
	m := &togetherv1.TogetherModelMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: nn.Namespace, Name: nn.Name, Labels: map[string]string{"together.ai/created-by": "deprecation"}},
		Spec: togetherv1.TogetherModelMigrationSpec{
			ModelID: d.ModelID, ReplacementModel: replacement, SunsetDate: d.SunsetDate,
			// Manual unless the subscription says otherwise: a signed
			// event alone never moves workloads.
			Strategy:         togetherv1.MigrationManual,
			SkipCatalogCheck: SkipCatalogCheckFor(sub, d.ModelID, replacement),
		},
	}
	v.stamp(m)
	if sub != nil && sub.Spec.Migration != nil {
		t := sub.Spec.Migration
		if t.Strategy != "" {
			m.Spec.Strategy = t.Strategy
		}
		m.Spec.LeadTime = t.LeadTime
		m.Spec.DryRun = t.DryRun
	}
	if err := a.Client.Create(ctx, m); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return Result{}, false
		}
		return Result{Outcome: lattice.Failed, Object: nn, Err: fmt.Errorf("%w: creating migration: %v", ErrNoWrite, err)}, false
	}
	a.recordMigrationEvent(ctx, m, ev)
	if a.Recorder != nil {
		a.Recorder.Eventf(m, nil, togetherv1.EventTypeNormal, togetherv1.ReasonDeprecated, "Apply",
			"Model %s is deprecated (sunset %s); workloads will move to %s (%s)", d.ModelID, d.SunsetDate, replacement, m.Spec.Strategy)
	}
	return Result{Outcome: lattice.Applied, Object: nn}, true
}

// recordMigrationEvent notes the event in the migration's status. The
// migration already carries the effect in its spec, so this is best-effort
// history: a failure here does not fail the delivery.
func (a *Writer) recordMigrationEvent(ctx context.Context, m *togetherv1.TogetherModelMigration, ev event.Event) {
	now := metav1.NewTime(a.now())
	for range 3 {
		lattice.Record(&m.Status.ProcessedEvents, &m.Status.LastEvent, ev, now)
		err := a.Client.Status().Update(ctx, m)
		if err == nil || !apierrors.IsConflict(err) {
			return
		}
		if a.Reader.Get(ctx, client.ObjectKeyFromObject(m), m) != nil {
			return
		}
	}
}

func (a *Writer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}
