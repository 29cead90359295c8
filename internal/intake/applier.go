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

// Package intake is the one apply step: it finds the resource an event is
// about (adopting an unmatched job when the subscription asks and the job
// carries the namespace's tag on Together), records the
// event's effect in its status through the state machine in
// internal/lattice, and acknowledges only once that write is durable. Writes
// for the same resource are grouped (group commit).
package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/ttl"
)

// Result is what became of one event. Err is set only for Failed.
type Result struct {
	Outcome lattice.Outcome
	// Object names the resource the event was applied to, if any.
	Object types.NamespacedName
	Err    error
}

// Options are the per-source settings of an application: the subscription
// a push came through, which controls adoption and migrations.
type Options struct {
	// Subscription is the subscription a push came through; nil for polls.
	Subscription *togetherv1.TogetherWebhookSubscription
}

// Applier is the one apply step. It finds the resource an event is about and
// records the event's effect in its status, returning only once that write
// is durable in the API server (or has failed). Events for the same resource
// that arrive while a write for it is in flight are merged into the next
// single write (group commit), so a burst of checkpoints costs a few writes,
// not one per event.
type Applier struct {
	// Client reads from the manager's cache (lookups by index) and writes to
	// the API server.
	Client client.Client
	// Reader reads straight from the API server; it refreshes an object after
	// a write conflict, when the cache may still be behind.
	Reader client.Reader
	// Recorder emits one Kubernetes Event per meaningful transition.
	Recorder events.EventRecorder
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// WriteTimeout bounds one status write.
	WriteTimeout time.Duration
	// MaxConflictRetries bounds how often a write is retried on conflict
	// before the deliveries it holds fail (and their senders retry).
	MaxConflictRetries int
	// Accounts, when set, applies a pushed event only to a resource on the
	// Together account of the subscription it came through (sameAccount).
	Accounts Accounts

	mu     sync.Mutex
	queues map[queueKey]*queue

	deprecationsOnce  sync.Once
	deprecationWriter *deprecation.Writer

	unmatchedOnce sync.Once
	// unmatched remembers job IDs the API server confirmed no resource
	// tracks, for UnmatchedTTL, so that a sender repeating events about a
	// job this namespace does not know costs one list, not one per event.
	unmatched *ttl.Map[unmatchedKey, struct{}]

	// Remote returns the Together client that reads as a subscription's
	// adopted resources will act: the account of the subscription (its
	// spec.apiKeySecretRef, else its namespace's), or nil when it has none.
	// spec.adoptUnmatched adopts a job or batch only when that account's
	// record of it carries the namespace's tag (togetherv1.TaggedFor): work
	// the operator created for this namespace, never another's. Nil adopts
	// nothing.
	Remote func(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) (RemoteReader, error)
	// AdoptCheckTimeout bounds the Together reads of one adoption check;
	// zero means DefaultAdoptCheckTimeout.
	AdoptCheckTimeout time.Duration

	foreignOnce sync.Once
	// foreign remembers, for ForeignTTL, IDs whose remote record does not
	// carry the namespace's tag, so that a sender repeating events about
	// another namespace's job costs one check, not one per event.
	foreign *ttl.Map[unmatchedKey, struct{}]
}

// RemoteReader is what an adoption check reads on Together;
// *together.Client implements it.
type RemoteReader interface {
	GetFineTune(ctx context.Context, id string) (*together.FineTune, error)
	GetBatch(ctx context.Context, id string) (*together.Batch, error)
	GetFile(ctx context.Context, id string) (*together.File, error)
}

var _ RemoteReader = (*together.Client)(nil)

// DefaultAdoptCheckTimeout bounds an adoption check's Together reads: the
// sender waits for the answer, so it is shorter than a reconcile's calls.
const DefaultAdoptCheckTimeout = 10 * time.Second

// ForeignTTL is how long "this job is not the namespace's" is believed. A
// job's tag never changes; the bound is for memory and for a namespace
// whose account changes.
const ForeignTTL = time.Minute

// ErrAdoptCheck marks a failure to read Together while checking whether an
// unmatched job may be adopted. Nothing was written; the sender should
// retry (503). Its message names neither the job nor Together's answer
// text, which may name it.
var ErrAdoptCheck = errors.New("could not check with Together whether the job an unmatched event names was created for this namespace")

type unmatchedKey struct{ kind, namespace, id string }

// UnmatchedTTL is how long a confirmed "no resource tracks this job" is
// believed without asking the API server again. It is short: a resource
// created for the job in the meantime (by hand, with spec.jobID) is found
// through the cache first, and the poller converges it anyway.
const UnmatchedTTL = 5 * time.Second

// SubmissionWindow is how long a submission marker makes events about
// unknown jobs in its namespace wait (503). A marker older than this
// belongs to a submission the fine-tune or batch reconciler has not been
// able to finish; holding events back for longer would only delay them.
const SubmissionWindow = 10 * time.Minute

// ErrSubmitting answers an event about a job no resource tracks yet while a
// resource of the same kind in the namespace holds a submission marker: the
// job may be the one being submitted, whose ID is not recorded yet. The
// sender retries; by then the ID is recorded (or the marker gone), and the
// event is neither lost as unmatched nor adopted into a second resource.
var ErrSubmitting = errors.New("a resource in this namespace is submitting a job right now; retry shortly")

func (a *Applier) foreignCache() *ttl.Map[unmatchedKey, struct{}] {
	a.foreignOnce.Do(func() { a.foreign = ttl.New[unmatchedKey, struct{}](10_000, ForeignTTL) })
	return a.foreign
}

func (a *Applier) unmatchedCache() *ttl.Map[unmatchedKey, struct{}] {
	a.unmatchedOnce.Do(func() { a.unmatched = ttl.New[unmatchedKey, struct{}](100_000, UnmatchedTTL) })
	return a.unmatched
}

// deprecations returns the writer that turns model.deprecated events into
// migrations, sharing this applier's clients.
func (a *Applier) deprecations() *deprecation.Writer {
	a.deprecationsOnce.Do(func() {
		a.deprecationWriter = &deprecation.Writer{Client: a.Client, Reader: a.Reader, Recorder: a.Recorder, Now: a.Now}
	})
	return a.deprecationWriter
}

type queueKey struct {
	kind string
	nn   types.NamespacedName
}

type queue struct {
	pending []*delivery
	// wake tells a lingering drain that deliveries arrived.
	wake chan struct{}
}

// drainLinger is how long a resource's writer waits for more deliveries
// after its queue empties. Within a burst it keeps the object it last wrote,
// so the next write starts from that version instead of the informer cache,
// which may not have seen the write yet (a stale read costs a conflict and
// a fresh GET).
const drainLinger = 200 * time.Millisecond

type delivery struct {
	ev   event.Event
	done chan Result
}

// kindOps holds what the applier needs to know about one resource kind.
type kindOps struct {
	newObj  func() client.Object
	newList func() client.ObjectList
	// ids are the remote IDs a resource answers to (its field index).
	ids func(client.Object) []string
	// marker is the resource's submission marker, if any.
	marker func(client.Object) *togetherv1.SubmissionMarker
	apply  func(client.Object, event.Event, metav1.Time) lattice.Outcome
	// transition names the Kubernetes Event to emit after a write that
	// moved the object into a new phase, or "" for none.
	transition func(before, after client.Object) (eventType, reason, note string)
}

// KindFineTune and KindBatch name the kinds the apply step writes to, for
// ApplyTo.
const (
	KindFineTune = "TogetherFineTune"
	KindBatch    = "TogetherBatch"
)

var ops = map[string]kindOps{
	KindFineTune: {
		newObj:  func() client.Object { return &togetherv1.TogetherFineTune{} },
		newList: func() client.ObjectList { return &togetherv1.TogetherFineTuneList{} },
		ids:     fineTuneJobIDs,
		marker: func(o client.Object) *togetherv1.SubmissionMarker {
			return o.(*togetherv1.TogetherFineTune).Status.Submission
		},
		apply: func(o client.Object, ev event.Event, now metav1.Time) lattice.Outcome {
			ft := o.(*togetherv1.TogetherFineTune)
			if ft.Status.JobID == "" && ft.Spec.JobID != "" {
				// An adopted job not yet reconciled: its spec names the job.
				ft.Status.JobID = ft.Spec.JobID
			}
			return lattice.ApplyFineTune(&ft.Status, ev, now)
		},
		transition: fineTuneTransition,
	},
	KindBatch: {
		newObj:  func() client.Object { return &togetherv1.TogetherBatch{} },
		newList: func() client.ObjectList { return &togetherv1.TogetherBatchList{} },
		ids:     batchIDs,
		marker: func(o client.Object) *togetherv1.SubmissionMarker {
			return o.(*togetherv1.TogetherBatch).Status.Submission
		},
		apply: func(o client.Object, ev event.Event, now metav1.Time) lattice.Outcome {
			b := o.(*togetherv1.TogetherBatch)
			if b.Status.BatchID == "" && b.Spec.BatchID != "" {
				b.Status.BatchID = b.Spec.BatchID
			}
			return lattice.ApplyBatch(&b.Status, ev, now)
		},
	},
}

// fineTuneTransition names the Event for a job that started running. The
// terminal transitions (succeeded, failed, cancelled) are reported by the
// fine-tune reconciler, which knows the attempt and what happens next; the
// batch reconciler likewise reports batch outcomes. Each transition thus gets
// exactly one Event, from the one place that writes it.
func fineTuneTransition(before, after client.Object) (string, string, string) {
	b, a := before.(*togetherv1.TogetherFineTune), after.(*togetherv1.TogetherFineTune)
	if b.Status.Phase != a.Status.Phase && a.Status.Phase == togetherv1.FineTuneRunning {
		return togetherv1.EventTypeNormal, togetherv1.ReasonJobRunning, fmt.Sprintf("Fine-tune job %s is running", a.Status.JobID)
	}
	return "", "", ""
}

// ErrNoWrite marks a failure to make an event durable; the sender should retry.
var ErrNoWrite = deprecation.ErrNoWrite

// Apply routes ev to the resource it is about, in the subscription's
// namespace for pushes or in namespace for polls, and waits until its effect
// is durable. It never returns before the write it depends on has finished.
func (a *Applier) Apply(ctx context.Context, namespace string, ev event.Event, o Options) Result {
	switch ev.Type {
	case togetherv1.EventFineTuneCompleted, togetherv1.EventFineTuneFailed, togetherv1.EventFineTuneCheckpoint, event.TypeFineTuneStatus:
		return a.applyJob(ctx, KindFineTune, namespace, ev, o)
	case togetherv1.EventBatchDone, event.TypeBatchProgress:
		return a.applyJob(ctx, KindBatch, namespace, ev, o)
	case togetherv1.EventModelDeprecated:
		r := a.deprecations().Apply(ctx, namespace, ev, o.Subscription)
		return Result{Outcome: r.Outcome, Object: r.Object, Err: r.Err}
	}
	return Result{Outcome: lattice.Ignored}
}

// ApplyTo applies ev to a known resource, skipping the lookup; the poller
// uses it because it starts from the resource.
func (a *Applier) ApplyTo(ctx context.Context, kind string, nn types.NamespacedName, ev event.Event) Result {
	return a.enqueue(ctx, queueKey{kind: kind, nn: nn}, ev)
}

func (a *Applier) applyJob(ctx context.Context, kind, namespace string, ev event.Event, o Options) Result {
	nn, found, err := a.find(ctx, kind, namespace, ev.JobID)
	adopting := o.Subscription != nil && o.Subscription.Spec.AdoptUnmatched
	if adopting && err == nil && !found {
		// Known to be another namespace's (or nobody's here) a moment ago.
		if _, recent := a.foreignCache().Get(unmatchedKey{kind: kind, namespace: namespace, id: ev.JobID}, a.now()); recent {
			adopting = false
		}
	}
	if err == nil && !found {
		nn, found, err = a.confirmMiss(ctx, kind, namespace, ev.JobID, adopting)
	}
	if err != nil {
		return Result{Outcome: lattice.Failed, Err: err}
	}
	if found {
		// A push is applied only to a resource on the subscription's account.
		same, err := a.sameAccount(ctx, kind, nn, o.Subscription)
		if err != nil {
			return Result{Outcome: lattice.Failed, Err: err}
		}
		if !same {
			return Result{Outcome: lattice.Unmatched, Err: ErrOtherAccount}
		}
	}
	if !found {
		if !adopting {
			return Result{Outcome: lattice.Unmatched}
		}
		ours, err := a.createdForNamespace(ctx, kind, namespace, ev.JobID, o.Subscription)
		if err != nil {
			return Result{Outcome: lattice.Failed, Err: err}
		}
		if !ours {
			key := unmatchedKey{kind: kind, namespace: namespace, id: ev.JobID}
			now := a.now()
			a.foreignCache().Set(key, struct{}{}, now, now.Add(ForeignTTL))
			return Result{Outcome: lattice.Unmatched}
		}
		if nn, err = a.adopt(ctx, kind, namespace, ev.JobID, o.Subscription); err != nil {
			return Result{Outcome: lattice.Failed, Err: err}
		}
	}
	return a.enqueue(ctx, queueKey{kind: kind, nn: nn}, ev)
}

// createdForNamespace reports whether the job or batch id, read under the
// subscription's account, carries namespace's tag: a fine-tune's suffix or
// model_output_name, a batch's input file name (one GET for a fine-tune,
// two for a batch). It runs only for a signed delivery that no resource
// matches, on a subscription with adoptUnmatched, and is bounded by
// AdoptCheckTimeout. A job the account cannot see, or without the tag
// (another namespace's, created outside the operator, or by a version
// before tags named a namespace) is not adopted. A failed read is an
// ErrAdoptCheck.
func (a *Applier) createdForNamespace(ctx context.Context, kind, namespace, id string, sub *togetherv1.TogetherWebhookSubscription) (bool, error) {
	if a.Remote == nil {
		return false, nil
	}
	timeout := a.AdoptCheckTimeout
	if timeout <= 0 {
		timeout = DefaultAdoptCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	api, err := a.Remote(ctx, sub)
	if err != nil {
		return false, fmt.Errorf("%w: finding the subscription's Together account: %v", ErrAdoptCheck, err)
	}
	if api == nil {
		return false, nil // no account: nothing here could follow the job anyway
	}
	var names []string
	switch kind {
	case KindFineTune:
		job, err := api.GetFineTune(ctx, id)
		if together.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, adoptCheckFailed(ctx, err)
		}
		names = []string{job.Suffix, job.ModelOutputName}
	case KindBatch:
		b, err := api.GetBatch(ctx, id)
		if together.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, adoptCheckFailed(ctx, err)
		}
		if b.InputFileID == "" {
			return false, nil
		}
		f, err := api.GetFile(ctx, b.InputFileID)
		if together.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, adoptCheckFailed(ctx, err)
		}
		names = []string{f.Filename}
	default:
		return false, nil
	}
	for _, n := range names {
		if togetherv1.TaggedFor(n, namespace) {
			return true, nil
		}
	}
	return false, nil
}

// adoptCheckFailed describes a failed read of an adoption check by the
// call and its status only: the error text of a URL or of Together's
// answer may name the job, which must not reach logs.
func adoptCheckFailed(ctx context.Context, err error) error {
	var api *together.APIError
	switch {
	case errors.As(err, &api):
		return fmt.Errorf("%w: %s answered HTTP %d", ErrAdoptCheck, api.Operation, api.StatusCode)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: no answer in time (%v)", ErrAdoptCheck, ctx.Err())
	default:
		return fmt.Errorf("%w: the request failed", ErrAdoptCheck)
	}
}

// confirmMiss decides what a cache miss for a job ID means. The cache may
// not yet show a job ID written a moment ago (a new attempt's job, a batch
// just submitted): acknowledging the event as unmatched would drop it, and
// adopting it would duplicate the resource. So a resource of the kind that
// is submitting right now (it holds a submission marker) makes the event
// wait (ErrSubmitting), and otherwise the API server has the last word —
// unless it said "nobody" about this ID within UnmatchedTTL.
func (a *Applier) confirmMiss(ctx context.Context, kind, namespace, id string, adopting bool) (types.NamespacedName, bool, error) {
	submitting, err := a.submittingCached(ctx, kind, namespace)
	if err != nil {
		return types.NamespacedName{}, false, err
	}
	if submitting {
		return types.NamespacedName{}, false, ErrSubmitting
	}
	key := unmatchedKey{kind: kind, namespace: namespace, id: id}
	now := a.now()
	if _, recent := a.unmatchedCache().Get(key, now); recent && !adopting {
		return types.NamespacedName{}, false, nil
	}
	nn, found, submitting, err := a.findLive(ctx, kind, namespace, id)
	switch {
	case err != nil:
		return types.NamespacedName{}, false, err
	case found:
		return nn, true, nil
	case submitting:
		return types.NamespacedName{}, false, ErrSubmitting
	}
	a.unmatchedCache().Set(key, struct{}{}, now, now.Add(UnmatchedTTL))
	return types.NamespacedName{}, false, nil
}

// submittingCached reports whether the cache holds a resource of the kind in
// the namespace with a live submission marker (found through a field index,
// without copying).
func (a *Applier) submittingCached(ctx context.Context, kind, namespace string) (bool, error) {
	op, ok := ops[kind]
	if !ok {
		return false, nil
	}
	list := op.newList()
	if err := a.Client.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{IndexSubmitting: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return false, fmt.Errorf("looking for %s submissions in %s: %w", kind, namespace, err)
	}
	submitting := false
	_ = apimeta.EachListItem(list, func(o runtime.Object) error {
		submitting = submitting || a.markerLive(op.marker(o.(client.Object)))
		return nil
	})
	return submitting, nil
}

func (a *Applier) markerLive(m *togetherv1.SubmissionMarker) bool {
	return m != nil && a.now().Sub(m.StartedAt.Time) < SubmissionWindow
}

// find looks the resource up by the job ID index, reading the cache without
// copying since it only needs names and IDs. When several match (a
// job ID reused across resources should not happen, but a user can copy a
// spec), the one whose current job it is wins.
func (a *Applier) find(ctx context.Context, kind, namespace, id string) (types.NamespacedName, bool, error) {
	switch kind {
	case KindFineTune:
		var list togetherv1.TogetherFineTuneList
		if err := a.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{IndexFineTuneJobID: id}, client.UnsafeDisableDeepCopy); err != nil {
			return types.NamespacedName{}, false, fmt.Errorf("looking up the fine-tune of a job by ID in %s: %w", namespace, err)
		}
		for _, ft := range list.Items {
			if ft.Status.JobID == id || (ft.Status.JobID == "" && ft.Spec.JobID == id) {
				return client.ObjectKeyFromObject(&ft), true, nil
			}
		}
		if len(list.Items) > 0 {
			return client.ObjectKeyFromObject(&list.Items[0]), true, nil
		}
	case KindBatch:
		var list togetherv1.TogetherBatchList
		if err := a.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{IndexBatchID: id}, client.UnsafeDisableDeepCopy); err != nil {
			return types.NamespacedName{}, false, fmt.Errorf("looking up the batch of an ID in %s: %w", namespace, err)
		}
		if len(list.Items) > 0 {
			return client.ObjectKeyFromObject(&list.Items[0]), true, nil
		}
	}
	return types.NamespacedName{}, false, nil
}

// liveListPage bounds one page of findLive's list, so confirming a miss in
// a namespace with thousands of resources does not hold them all at once.
const liveListPage = 250

// findLive is find against the API server rather than the cache. It runs
// only when the cache has no match, which in steady state means an event
// about a job that no resource tracks. It also reports whether a resource of
// the kind holds a live submission marker.
func (a *Applier) findLive(ctx context.Context, kind, namespace, id string) (nn types.NamespacedName, found, submitting bool, err error) {
	op, ok := ops[kind]
	if !ok {
		return types.NamespacedName{}, false, false, nil
	}
	cont := ""
	for {
		list := op.newList()
		if err := a.Reader.List(ctx, list, client.InNamespace(namespace), client.Limit(liveListPage), client.Continue(cont)); err != nil {
			return types.NamespacedName{}, false, false, fmt.Errorf("confirming that no %s in %s tracks the event's job: %w", kind, namespace, err)
		}
		var match client.Object
		_ = apimeta.EachListItem(list, func(o runtime.Object) error {
			obj := o.(client.Object)
			if match == nil && slices.Contains(op.ids(obj), id) {
				match = obj
			}
			submitting = submitting || a.markerLive(op.marker(obj))
			return nil
		})
		if match != nil {
			return client.ObjectKeyFromObject(match), true, false, nil
		}
		if cont = list.GetContinue(); cont == "" {
			return types.NamespacedName{}, false, submitting, nil
		}
	}
}

// adopt creates a resource that tracks a job no resource knew about, on the
// account the adoption check read it with (the subscription's Secret, if it
// names one). Its name is derived from the job ID, so concurrent deliveries
// create it once. Its deletion policy is left unset: adopted work is
// retained (EffectiveDeletionPolicy).
func (a *Applier) adopt(ctx context.Context, kind, namespace, id string, sub *togetherv1.TogetherWebhookSubscription) (types.NamespacedName, error) {
	ref := sub.Spec.APIKeySecretRef.DeepCopy()
	var obj client.Object
	switch kind {
	case KindFineTune:
		obj = &togetherv1.TogetherFineTune{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: event.ObjectName("ft", id), Labels: map[string]string{"together.ai/adopted": "true"}},
			Spec:       togetherv1.TogetherFineTuneSpec{JobID: id, APIKeySecretRef: ref},
		}
	default:
		obj = &togetherv1.TogetherBatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: event.ObjectName("batch", id), Labels: map[string]string{"together.ai/adopted": "true"}},
			Spec:       togetherv1.TogetherBatchSpec{BatchID: id, APIKeySecretRef: ref},
		}
	}
	if err := a.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return types.NamespacedName{}, fmt.Errorf("adopting %s %s: %w", kind, id, err)
	}
	return client.ObjectKeyFromObject(obj), nil
}

// enqueue hands ev to the resource's queue and waits for the write that
// holds it. The write runs on its own context: a sender that hangs up does
// not abort a write that other deliveries share.
func (a *Applier) enqueue(ctx context.Context, key queueKey, ev event.Event) Result {
	d := &delivery{ev: ev, done: make(chan Result, 1)}
	a.mu.Lock()
	if a.queues == nil {
		a.queues = map[queueKey]*queue{}
	}
	q, running := a.queues[key]
	if !running {
		q = &queue{wake: make(chan struct{}, 1)}
		a.queues[key] = q
	}
	q.pending = append(q.pending, d)
	a.mu.Unlock()
	if running {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	} else {
		go a.drain(key, q)
	}
	select {
	case r := <-d.done:
		return r
	case <-ctx.Done():
		return Result{Outcome: lattice.Failed, Object: key.nn, Err: fmt.Errorf("%w: %v", ErrNoWrite, ctx.Err())}
	}
}

// drain writes the queue's pending deliveries, all that arrived since the
// previous write in one go, until the queue stays empty for drainLinger.
func (a *Applier) drain(key queueKey, q *queue) {
	var last client.Object
	linger := time.NewTimer(drainLinger)
	defer linger.Stop()
	for {
		a.mu.Lock()
		batch := q.pending
		q.pending = nil
		a.mu.Unlock()
		if len(batch) > 0 {
			groupCommitSize.Observe(float64(len(batch)))
			last = a.commit(key, batch, last)
			continue
		}
		linger.Reset(drainLinger)
		select {
		case <-q.wake:
			continue
		case <-linger.C:
		}
		a.mu.Lock()
		if len(q.pending) == 0 {
			delete(a.queues, key)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// commit applies a batch of deliveries to one object and writes it once. It
// returns the object as written, to start the next batch from without
// another read.
func (a *Applier) commit(key queueKey, batch []*delivery, last client.Object) client.Object {
	op := ops[key.kind]
	timeout := a.WriteTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	finish := func(results []Result) {
		for i, d := range batch {
			d.done <- results[i]
		}
	}
	failAll := func(err error) {
		rs := make([]Result, len(batch))
		for i := range rs {
			rs[i] = Result{Outcome: lattice.Failed, Object: key.nn, Err: fmt.Errorf("%w: %v", ErrNoWrite, err)}
		}
		finish(rs)
	}

	obj := last
	retries := a.MaxConflictRetries
	if retries == 0 {
		retries = 5
	}
	for attempt := 0; ; attempt++ {
		if obj == nil || attempt > 0 {
			fresh := op.newObj()
			var reader client.Reader = a.Client
			if attempt > 0 {
				reader = a.Reader
			}
			err := reader.Get(ctx, key.nn, fresh)
			if apierrors.IsNotFound(err) && attempt == 0 {
				// The cache may not have seen a resource created a moment ago
				// (an adopted job); ask the API server before giving up.
				err = a.Reader.Get(ctx, key.nn, fresh)
			}
			if err != nil {
				if apierrors.IsNotFound(err) {
					rs := make([]Result, len(batch))
					for i := range rs {
						rs[i] = Result{Outcome: lattice.Unmatched, Object: key.nn}
					}
					finish(rs)
					return nil
				}
				failAll(err)
				return nil
			}
			obj = fresh
		}
		// obj is never changed: it is the copy the patch is computed
		// from and what a transition is compared with.
		work := obj.DeepCopyObject().(client.Object)
		now := metav1.NewTime(a.now())
		results := make([]Result, len(batch))
		changed := false
		for i, d := range batch {
			out := op.apply(work, d.ev, now)
			results[i] = Result{Outcome: out, Object: key.nn}
			changed = changed || out == lattice.Applied
		}
		if !changed {
			if attempt == 0 && anyStale(results) {
				// State only moves up, so an event that changes nothing in
				// an older copy changes nothing now — except when a
				// reconciler started a new attempt or split a batch since
				// (a new job ID). Check the API server's copy before
				// acknowledging an event as stale.
				continue
			}
			finish(results)
			return obj
		}
		// A JSON merge patch of what the batch changed, guarded by the
		// resourceVersion it was computed from: the API server refuses it
		// with a conflict exactly when an Update of the whole object would
		// be refused, but the request carries only the changed fields
		// (about a third of a full status Update's bytes for a checkpoint),
		// and nothing the intake does not own is sent back.
		err := a.Client.Status().Patch(ctx, work, client.MergeFromWithOptions(obj, client.MergeFromWithOptimisticLock{}))
		if err == nil {
			a.emitTransition(op, obj, work)
			finish(results)
			return work
		}
		if apierrors.IsConflict(err) && attempt < retries {
			continue
		}
		failAll(err)
		return nil
	}
}

func anyStale(results []Result) bool {
	for _, r := range results {
		if r.Outcome == lattice.Stale {
			return true
		}
	}
	return false
}

func (a *Applier) emitTransition(op kindOps, before, after client.Object) {
	if a.Recorder == nil || op.transition == nil {
		return
	}
	if typ, reason, note := op.transition(before, after); reason != "" {
		a.Recorder.Eventf(after, nil, typ, reason, "Apply", "%s", note)
	}
}

func (a *Applier) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}
