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
	"time"

	"github.com/go-logr/logr"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/together"
)

// metricsResolution caps the training rows one metrics read returns (the
// API samples them uniformly): the status keeps only the newest
// MaxCheckpoints anyway, so a long job costs one small call per cycle.
const metricsResolution = togetherv1.MaxCheckpoints

// pollFineTunes lists every job once and, for each non-terminal fine-tune,
// emits the events its job's state implies. A job's lifecycle comes from
// its status in the list (and, for a failure's message, its events); its
// losses and steps from its metrics, read only for jobs whose state moved,
// from the step the resource already records.
func (p *Poller) pollFineTunes(ctx context.Context, s *Stats) error {
	logger := log.FromContext(ctx).WithName("poller")
	var list togetherv1.TogetherFineTuneList
	// The list is only read, so the cache's objects need not be copied.
	if err := p.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing fine-tunes: %w", err)
	}
	var active []*togetherv1.TogetherFineTune
	live := map[string]bool{}
	keys := map[types.NamespacedName]bool{}
	for i := range list.Items {
		ft := &list.Items[i]
		if jobID(ft) == "" || ft.Status.Phase.IsTerminal() || !ft.DeletionTimestamp.IsZero() {
			continue
		}
		live[jobID(ft)] = true
		keys[client.ObjectKeyFromObject(ft)] = true
		s.noteOverride(durationOf(ft.Spec.PollInterval))
		if !p.due(client.ObjectKeyFromObject(ft), durationOf(ft.Spec.PollInterval)) {
			continue
		}
		active = append(active, ft)
	}
	p.prune(kindFineTune, live, keys)
	if len(active) == 0 {
		return nil
	}
	var errs []error
	for _, g := range byAccount(ctx, p, active, logger) {
		errs = append(errs, p.pollFineTuneAccount(ctx, s, g, logger))
	}
	return errors.Join(errs...)
}

// pollFineTuneAccount lists one account's jobs once and applies what they
// imply to that account's resources. A failure is reported on the
// resources it concerns and does not stop the other resources or accounts.
func (p *Poller) pollFineTuneAccount(ctx context.Context, s *Stats, g group[*togetherv1.TogetherFineTune], logger logr.Logger) error {
	s.APICalls++
	jobs, bad, err := g.api.ListFineTunesReport(ctx)
	if err != nil {
		err = fmt.Errorf("listing fine-tune jobs: %w", err)
		for _, ft := range g.items {
			p.reportFailure(ft, err)
		}
		return err
	}
	byID := make(map[string]*together.FineTune, len(jobs))
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	badByID := map[string]together.MalformedItem{}
	for _, b := range bad {
		badByID[b.ID] = b
	}
	var errs []error
	for _, ft := range g.items {
		job, ok := byID[jobID(ft)]
		if !ok {
			if b, isBad := badByID[jobID(ft)]; isBad {
				p.reportFailure(ft, fmt.Errorf("Together's answer for job %s could not be read (skipped this cycle): %w", b.ID, b.Err))
			}
			continue
		}
		evs, err := p.fineTuneEvents(ctx, s, g.api, ft, job)
		if err != nil {
			p.reportFailure(ft, err)
			errs = append(errs, err)
			continue
		}
		if err := p.apply(ctx, s, intake.KindFineTune, client.ObjectKeyFromObject(ft), evs, logger); err != nil {
			p.reportFailure(ft, err)
			errs = append(errs, err)
			continue
		}
		p.reportRecovered(ft)
		p.markSeen(job.ID, fingerprint(job))
	}
	return errors.Join(errs...)
}

func jobID(ft *togetherv1.TogetherFineTune) string {
	if ft.Status.JobID != "" {
		return ft.Status.JobID
	}
	return ft.Spec.JobID
}

// fineTuneEvents synthesizes the events of one job. IDs are deterministic
// (poll:<job>:<what>), so the same state read twice is a duplicate.
func (p *Poller) fineTuneEvents(ctx context.Context, s *Stats, api API, ft *togetherv1.TogetherFineTune, job *together.FineTune) ([]event.Event, error) {
	id := job.ID
	at := job.UpdatedAt
	var evs []event.Event
	status := string(job.Status)
	remaining := secondsRemaining(job)
	moved := p.moved(id, job)
	if phase, ok := lattice.FineTunePhaseFor(status); ok && (!phase.IsTerminal() || phase == togetherv1.FineTuneCancelled) {
		ev := event.Event{ID: "poll:" + id + ":status:" + status, Type: event.TypeFineTuneStatus, JobID: id, RemoteStatus: status, Time: at}
		if remaining != nil {
			ev.ID += ":left:" + strconv.FormatInt(*remaining, 10)
			ev.SecondsRemaining = remaining
		}
		if lattice.RaisesFineTunePhase(ft.Status.Phase, phase) || moved && remaining != nil && !phase.IsTerminal() {
			evs = append(evs, ev)
		}
	}
	if !moved {
		return evs, nil
	}
	switch job.Status {
	case together.FineTunePending, together.FineTuneQueued, together.FineTuneCancelled, together.FineTuneCancelRequested:
		return evs, nil
	case together.FineTuneError, "user_error":
		s.APICalls++
		details, err := api.ListFineTuneEvents(ctx, id)
		if err != nil {
			return evs, fmt.Errorf("listing events of job %s: %w", id, err)
		}
		var lastStep int64
		lastError := ""
		for _, e := range details {
			lastStep = max(lastStep, e.Step)
			if e.Type == "job_error" {
				lastError = e.Message
			}
		}
		if lastError == "" {
			lastError = "the job ended with status " + status
		}
		return append(evs, event.Event{ID: "poll:" + id + ":failed", Type: togetherv1.EventFineTuneFailed, JobID: id, ErrorMessage: lastError, Step: max(lastStep, ft.Status.Step), Time: at}), nil
	}
	// Running, compressing, uploading or completed: read the metrics rows
	// from the step already recorded (inclusive, so that an evaluation
	// logged at that step is not missed).
	s.APICalls++
	m, err := api.ListFineTuneMetrics(ctx, id, together.MetricsQuery{GlobalStepFrom: ft.Status.Step, Resolution: metricsResolution})
	if err != nil {
		return evs, fmt.Errorf("reading metrics of job %s: %w", id, err)
	}
	for _, row := range m.Train {
		if row.Step < ft.Status.Step || row.Step == ft.Status.Step && (row.Loss == nil || ft.Status.Loss != nil) {
			continue
		}
		evs = append(evs, event.Event{ID: "poll:" + id + ":metrics:" + strconv.FormatInt(row.Step, 10),
			Type: togetherv1.EventFineTuneCheckpoint, JobID: id, Step: row.Step, Loss: row.Loss, Time: at})
	}
	if job.Status == together.FineTuneCompleted {
		// The completion carries the final step (the newest training row),
		// which bounds the job's checkpoints from then on.
		final := ft.Status.Step
		if last, ok := m.Last(); ok {
			final = max(final, last.Step)
		}
		return append(evs, event.Event{ID: "poll:" + id + ":completed", Type: togetherv1.EventFineTuneCompleted, JobID: id,
			ModelName: job.ModelOutputName, EvalLoss: m.EvalLoss, Step: final, Time: at}), nil
	}
	if m.EvalLoss != nil {
		evs = append(evs, event.Event{ID: "poll:" + id + ":eval:" + strconv.FormatInt(m.EvalStep, 10) + ":" + strconv.FormatFloat(*m.EvalLoss, 'g', -1, 64),
			Type: togetherv1.EventFineTuneCheckpoint, JobID: id, Step: m.EvalStep, EvalLoss: m.EvalLoss, Time: at})
	}
	return evs, nil
}

// secondsRemaining is the job's estimate when it has one.
func secondsRemaining(job *together.FineTune) *int64 {
	if job.Progress == nil || !job.Progress.EstimateAvailable || job.Status.Terminal() {
		return nil
	}
	v := job.Progress.SecondsRemaining
	return &v
}

// fingerprint is what must change for a job to count as moved: its
// updated_at and its remaining-time estimate.
func fingerprint(job *together.FineTune) string {
	f := job.UpdatedAt.UTC().Format(time.RFC3339Nano) + "|" + string(job.Status)
	if r := secondsRemaining(job); r != nil {
		f += "|" + strconv.FormatInt(*r, 10)
	}
	return f
}

// moved reports whether the job changed since its details were last read
// and applied, so that N idle jobs cost no per-job calls. This in-memory map
// only saves API calls; the resource's status stays the idempotency record.
func (p *Poller) moved(id string, job *together.FineTune) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, ok := p.seen[id]
	return !ok || job.UpdatedAt.IsZero() || fingerprint(job) != last
}

// markSeen records that a job's state with this fingerprint has been applied.
func (p *Poller) markSeen(id, fp string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]string{}
	}
	p.seen[id] = fp
}

func durationOf(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
