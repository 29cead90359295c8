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

package poller

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-logr/logr"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/together"
)

// pollBatches lists every batch once (GET /batches returns a bare array) and
// emits progress and done events for each part of each non-terminal
// TogetherBatch. A batch object carries no token counts: those come from
// the output file when it is fetched.
func (p *Poller) pollBatches(ctx context.Context, s *Stats) error {
	logger := log.FromContext(ctx).WithName("poller")
	var list togetherv1.TogetherBatchList
	if err := p.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing batches: %w", err)
	}
	var active []*togetherv1.TogetherBatch
	keys := map[types.NamespacedName]bool{}
	for i := range list.Items {
		b := &list.Items[i]
		if len(batchIDsOf(b)) == 0 || b.Status.Phase.IsTerminal() || !b.DeletionTimestamp.IsZero() {
			continue
		}
		keys[client.ObjectKeyFromObject(b)] = true
		s.noteOverride(durationOf(b.Spec.PollInterval))
		if p.dueKey(resourceKey{kindBatch, client.ObjectKeyFromObject(b)}, durationOf(b.Spec.PollInterval)) {
			active = append(active, b)
		}
	}
	p.prune(kindBatch, nil, keys)
	if len(active) == 0 {
		return nil
	}
	var errs []error
	for _, g := range byAccount(ctx, p, active, logger) {
		errs = append(errs, p.pollBatchAccount(ctx, s, g, logger))
	}
	return errors.Join(errs...)
}

// pollBatchAccount lists one account's batches once and applies what they
// imply to that account's resources; a failure is reported on the resources
// it concerns and does not stop the others.
func (p *Poller) pollBatchAccount(ctx context.Context, s *Stats, g group[*togetherv1.TogetherBatch], logger logr.Logger) error {
	s.APICalls++
	remote, bad, err := g.api.ListBatchesReport(ctx)
	if err != nil {
		err = fmt.Errorf("listing Together batches: %w", err)
		for _, b := range g.items {
			p.reportFailure(b, err)
		}
		return err
	}
	byID := make(map[string]*together.Batch, len(remote))
	for i := range remote {
		byID[remote[i].ID] = &remote[i]
	}
	badByID := map[string]together.MalformedItem{}
	for _, m := range bad {
		badByID[m.ID] = m
	}
	var errs []error
	for _, b := range g.items {
		var evs []event.Event
		for _, id := range batchIDsOf(b) {
			if rb, ok := byID[id]; ok && moves(b, rb) {
				evs = append(evs, BatchEvent(rb))
			} else if m, isBad := badByID[id]; isBad {
				p.reportFailure(b, fmt.Errorf("Together's answer for batch %s could not be read (skipped this cycle): %w", id, m.Err))
			}
		}
		if err := p.apply(ctx, s, intake.KindBatch, client.ObjectKeyFromObject(b), evs, logger); err != nil {
			p.reportFailure(b, err)
			errs = append(errs, err)
			continue
		}
	}
	return errors.Join(errs...)
}

func batchIDsOf(b *togetherv1.TogetherBatch) []string {
	if len(b.Status.Parts) > 0 {
		ids := make([]string, 0, len(b.Status.Parts))
		for _, part := range b.Status.Parts {
			if part.BatchID != "" && !part.Phase.IsTerminal() {
				ids = append(ids, part.BatchID)
			}
		}
		return ids
	}
	if b.Status.BatchID != "" {
		return []string{b.Status.BatchID}
	}
	if b.Spec.BatchID != "" {
		return []string{b.Spec.BatchID}
	}
	return nil
}

// BatchEvent is the event a batch's current state implies: batch.done for a
// terminal batch, batch.progress otherwise (CANCELING, which only Together's
// Python SDK names, is progress towards CANCELLED).
func BatchEvent(rb *together.Batch) event.Event {
	status := string(rb.Status)
	if rb.Status.Terminal() {
		return event.Event{ID: "poll:" + rb.ID + ":done:" + status, Type: togetherv1.EventBatchDone, JobID: rb.ID,
			RemoteStatus: status, OutputFileID: rb.OutputFileID, ErrorFileID: rb.ErrorFileID, ErrorMessage: rb.Error}
	}
	progress := int32(rb.Progress)
	return event.Event{ID: "poll:" + rb.ID + ":progress:" + status + ":" + strconv.Itoa(int(progress)), Type: event.TypeBatchProgress,
		JobID: rb.ID, RemoteStatus: status, Progress: progress}
}

// moves reports whether a remote batch's state is ahead of what the resource
// records for it, so that an unchanged batch costs no apply.
func moves(b *togetherv1.TogetherBatch, rb *together.Batch) bool {
	phase, progress := b.Status.Phase, b.Status.Progress
	for _, p := range b.Status.Parts {
		if p.BatchID == rb.ID {
			phase, progress = p.Phase, p.Progress
		}
	}
	if rb.Status == together.BatchCanceling {
		return int32(rb.Progress) > progress
	}
	remote, ok := lattice.BatchPhaseFor(string(rb.Status))
	return !ok || lattice.RaisesBatchPhase(phase, remote) || int32(rb.Progress) > progress
}
