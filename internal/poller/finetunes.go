package poller

import (
	"context"
	"fmt"
	"github.com/go-logr/logr"
	"strconv"

	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"

	"github.com/together-operator/together-operator/internal/together"
)

// pollFineTunes lists every job once and, for each non-terminal fine-tune,
// emits the events its job's state implies. Per-job events (checkpoints,
// error messages) are read only for jobs whose state moved since last read.
func (p *Poller) pollFineTunes(ctx context.Context, s *Stats) error {
	logger := log.FromContext(ctx).WithName("poller")
	var list togetherv1.TogetherFineTuneList
	// The list is only read, so the cache's objects need not be copied.
	if err := p.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing fine-tunes: %w", err)
	}
	var active []*togetherv1.TogetherFineTune
	for i := range list.Items {
		ft := &list.Items[i]
		if jobID(ft) == "" || ft.Status.Phase.IsTerminal() || !ft.DeletionTimestamp.IsZero() {
			continue
		}
		s.noteOverride(durationOf(ft.Spec.PollInterval))
		if !p.due(client.ObjectKeyFromObject(ft), durationOf(ft.Spec.PollInterval)) {
			continue
		}
		active = append(active, ft)
	}
	if len(active) == 0 {
		return nil
	}
	for _, g := range byAccount(ctx, p, active, func(ft *togetherv1.TogetherFineTune) string { return ft.Namespace }, logger) {
		if err := p.pollFineTuneAccount(ctx, s, g, logger); err != nil {
			return err
		}
	}
	return nil
}

// pollFineTuneAccount lists one account's jobs once and applies what they
// imply to that account's resources.
func (p *Poller) pollFineTuneAccount(ctx context.Context, s *Stats, g group[*togetherv1.TogetherFineTune], logger logr.Logger) error {
	s.APICalls++
	jobs, err := g.api.ListFineTunes(ctx)
	if err != nil {
		return fmt.Errorf("listing fine-tune jobs: %w", err)
	}
	byID := make(map[string]*together.FineTune, len(jobs))
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	for _, ft := range g.items {
		job, ok := byID[jobID(ft)]
		if !ok {
			continue
		}
		evs, err := p.fineTuneEvents(ctx, s, g.api, ft, job)
		if err != nil {
			logger.Error(err, "reading job details", "job", job.ID)
			continue
		}
		if err := p.apply(ctx, s, intake.KindFineTune, client.ObjectKeyFromObject(ft), evs, logger); err != nil {
			return err
		}
		p.markSeen(job)
	}
	return nil
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
	if phase, ok := lattice.FineTunePhaseFor(status); ok && (!phase.IsTerminal() || phase == togetherv1.FineTuneCancelled) &&
		lattice.RaisesFineTunePhase(ft.Status.Phase, phase) {
		evs = append(evs, event.Event{ID: "poll:" + id + ":status:" + status, Type: event.TypeFineTuneStatus, JobID: id, RemoteStatus: status, Time: at})
	}
	if !p.moved(id, job) {
		return evs, nil
	}
	details := job.Events
	if len(details) == 0 && (job.Status != together.FineTunePending && job.Status != together.FineTuneQueued) {
		s.APICalls++
		var err error
		if details, err = api.ListFineTuneEvents(ctx, id); err != nil {
			return evs, fmt.Errorf("listing events of job %s: %w", id, err)
		}
	}
	var lastStep int64
	var lastError string
	for _, e := range details {
		if e.Step > lastStep {
			lastStep = e.Step
		}
		switch e.Type {
		case "checkpoint_save":
			if e.Step > ft.Status.Step || (e.Step == ft.Status.Step && ft.Status.Loss == nil && e.Loss != nil) {
				evs = append(evs, event.Event{ID: "poll:" + id + ":checkpoint:" + strconv.FormatInt(e.Step, 10),
					Type: togetherv1.EventFineTuneCheckpoint, JobID: id, Step: e.Step, Loss: e.Loss, Time: at})
			}
		case "job_error":
			lastError = e.Message
		}
	}
	switch job.Status {
	case together.FineTuneCompleted:
		ev := event.Event{ID: "poll:" + id + ":completed", Type: togetherv1.EventFineTuneCompleted, JobID: id, ModelName: job.ModelOutputName, Step: lastStep, Time: at}
		s.APICalls++
		if m, err := api.GetFineTuneMetrics(ctx, id); err == nil && m != nil {
			ev.EvalLoss = m.EvalLoss
		}
		evs = append(evs, ev)
	case together.FineTuneError, "user_error":
		if lastError == "" {
			lastError = "the job ended with status " + status
		}
		evs = append(evs, event.Event{ID: "poll:" + id + ":failed", Type: togetherv1.EventFineTuneFailed, JobID: id, ErrorMessage: lastError, Step: lastStep, Time: at})
	}
	return evs, nil
}

// moved reports whether the job changed since its details were last read
// and applied, so that N idle jobs cost no per-job calls. This in-memory map
// only saves API calls; the resource's status stays the idempotency record.
// updated_at alone is not enough: it has whole-second precision, so a job
// that moves on again within the second its details were read (uploading,
// then completed) would keep the same updated_at and never be read again.
// A changed status word is therefore a move too.
func (p *Poller) moved(id string, job *together.FineTune) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, ok := p.seen[id]
	return !ok || job.UpdatedAt.IsZero() || job.UpdatedAt.After(last.updatedAt) || job.Status != last.status
}

// seenJob is what the poller last applied of a job.
type seenJob struct {
	updatedAt time.Time
	status    together.FineTuneStatus
}

// markSeen records that a job's state up to its updated_at has been applied.
func (p *Poller) markSeen(job *together.FineTune) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]seenJob{}
	}
	p.seen[job.ID] = seenJob{updatedAt: job.UpdatedAt, status: job.Status}
}

func durationOf(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
