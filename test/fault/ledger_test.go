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

package fault

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	applyintake "github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
)

// The durability ledger: what "nothing acknowledged is lost" means, checked
// against the API server rather than against a final status. Final statuses
// cannot see a lost write: a checkpoint answered 200 whose write vanished is
// masked by every later step, and processedEvents keeps only the newest IDs.
// So the suite keeps two records that do not come from the code under test:
//
//   - every 2xx a sender got, with the event and the API server's revision
//     read right after the answer arrived (ack.rev);
//   - every version of every fine-tune and batch the API server stored, from
//     a watch of the namespace resumed from its last revision after any
//     interruption (the suite's API server runs without a watch cache, so a
//     resumed watch replays every write from etcd, also across a restart).
//
// For each acknowledged event there must be a stored version, with a
// revision no later than the one read after its acknowledgement, that holds
// its effect: its ID in processedEvents (applied or duplicate), or, for an
// event acknowledged as stale, the state that makes it stale (a step at or
// beyond its checkpoint, a terminal phase). Otherwise the event was
// acknowledged before, or without, its write, and the spec fails naming it.

// ack is one acknowledged delivery.
type ack struct {
	ev      event.Event
	outcome string // the endpoint's "status" field
	rev     int64  // API server revision read after the answer
}

// currentRevision reads the API server's revision with a one-item list, a
// consistent read. It retries while the API server is down (the outage
// spec): a later revision only makes the check more lenient, never wrong.
func currentRevision() int64 {
	rev := int64(-1)
	// A timeout or a cancelled suite leaves rev at -1, which the ledger
	// reports; the poll runs in sender goroutines, where Eventually could
	// not fail the spec.
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var l corev1.NamespaceList
		if err := k8s.List(ctx, &l, client.Limit(1)); err != nil {
			return false, nil // the API server is down: try again
		}
		r, err := strconv.ParseInt(l.ResourceVersion, 10, 64)
		if err != nil {
			return false, nil
		}
		rev = r
		return true, nil
	})
	return rev
}

// stored is what the ledger needs of one stored version.
type stored struct {
	rev  int64
	step int64
	// ended holds the job or batch IDs this version records as ended: a
	// fine-tune's job, a batch, or each part of a split batch.
	ended []string
}

// objectHistory is every stored version of one object, in revision order.
type objectHistory struct {
	versions []stored
	// firstHeld maps an event ID to the first revision whose
	// processedEvents held it.
	firstHeld map[string]int64
	lastRev   int64
}

// history records every status version the API server stores for the
// fine-tunes and batches of one namespace.
type history struct {
	ns string
	mu sync.Mutex
	// objects by kind/name; jobs maps a job or batch ID to kind/name.
	objects map[string]*objectHistory
	jobs    map[string]string
	err     error
	stop    chan struct{}
	done    sync.WaitGroup
}

// watchHistory starts recording the namespace's fine-tunes and batches; it
// stops when the spec ends.
func watchHistory(ns string) *history {
	GinkgoHelper()
	h := &history{ns: ns, objects: map[string]*objectHistory{}, jobs: map[string]string{}, stop: make(chan struct{})}
	for _, kind := range []string{applyintake.KindFineTune, applyintake.KindBatch} {
		rev := h.list(kind)
		h.done.Add(1)
		go h.follow(kind, rev)
	}
	DeferCleanup(func() {
		close(h.stop)
		h.done.Wait()
	})
	return h
}

func newList(kind string) client.ObjectList {
	if kind == applyintake.KindFineTune {
		return &togetherv1.TogetherFineTuneList{}
	}
	return &togetherv1.TogetherBatchList{}
}

// list records the current versions and returns the list's revision.
func (h *history) list(kind string) string {
	GinkgoHelper()
	l := newList(kind)
	Expect(k8s.List(ctx, l, client.InNamespace(h.ns))).To(Succeed())
	switch l := l.(type) {
	case *togetherv1.TogetherFineTuneList:
		for i := range l.Items {
			h.record(&l.Items[i])
		}
		return l.ResourceVersion
	case *togetherv1.TogetherBatchList:
		for i := range l.Items {
			h.record(&l.Items[i])
		}
		return l.ResourceVersion
	}
	return ""
}

// follow watches kind from rev, resuming from the last revision it saw
// whenever the watch ends, until the spec stops it.
func (h *history) follow(kind, rev string) {
	defer h.done.Done()
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		w, err := watcher.Watch(ctx, newList(kind), client.InNamespace(h.ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rev, AllowWatchBookmarks: true}})
		if err != nil {
			// The API server may be down (the outage spec); try again.
			select {
			case <-h.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		rev = h.consume(w, rev)
		w.Stop()
		if rev == "" {
			return
		}
	}
}

// consume records the watch's events until it ends; it returns the revision
// to resume from, or "" when the history cannot be complete.
func (h *history) consume(w watch.Interface, rev string) string {
	for {
		select {
		case <-h.stop:
			return ""
		case e, ok := <-w.ResultChan():
			if !ok {
				return rev
			}
			switch e.Type {
			case watch.Error:
				err := apierrors.FromObject(e.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					h.fail(fmt.Errorf("the watch lost history after revision %s: %w", rev, err))
					return ""
				}
				return rev
			case watch.Bookmark, watch.Added, watch.Modified, watch.Deleted:
				obj, ok := e.Object.(client.Object)
				if !ok {
					continue
				}
				rev = obj.GetResourceVersion()
				if e.Type != watch.Bookmark && e.Type != watch.Deleted {
					h.record(obj)
				}
			}
		}
	}
}

func (h *history) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
}

// record adds one stored version.
func (h *history) record(obj client.Object) {
	rev, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		h.fail(fmt.Errorf("resourceVersion %q is not a number", obj.GetResourceVersion()))
		return
	}
	var key string
	var ids, processed []string
	var v stored
	switch o := obj.(type) {
	case *togetherv1.TogetherFineTune:
		key = applyintake.KindFineTune + "/" + o.Name
		ids = []string{o.Status.JobID, o.Spec.JobID}
		processed = o.Status.ProcessedEvents
		v = stored{rev: rev, step: o.Status.Step}
		if o.Status.Phase.IsTerminal() {
			v.ended = []string{o.Status.JobID}
		}
	case *togetherv1.TogetherBatch:
		key = applyintake.KindBatch + "/" + o.Name
		ids = []string{o.Status.BatchID, o.Spec.BatchID}
		for _, p := range o.Status.Parts {
			ids = append(ids, p.BatchID)
		}
		processed = o.Status.ProcessedEvents
		v = stored{rev: rev}
		if len(o.Status.Parts) == 0 && o.Status.Phase.IsTerminal() {
			v.ended = []string{o.Status.BatchID}
		}
		for _, p := range o.Status.Parts {
			if p.Phase.IsTerminal() {
				v.ended = append(v.ended, p.BatchID)
			}
		}
	default:
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	oh := h.objects[key]
	if oh == nil {
		oh = &objectHistory{firstHeld: map[string]int64{}}
		h.objects[key] = oh
	}
	if rev <= oh.lastRev {
		return // the initial list and the watch may overlap
	}
	oh.lastRev = rev
	oh.versions = append(oh.versions, v)
	for _, id := range processed {
		if _, ok := oh.firstHeld[id]; !ok {
			oh.firstHeld[id] = rev
		}
	}
	for _, id := range ids {
		if id != "" {
			h.jobs[id] = key
		}
	}
}

// caughtUp waits until the history holds the current version of every
// object of the namespace, so that no write an acknowledgement depends on
// is still on its way to the watch.
func (h *history) caughtUp() {
	GinkgoHelper()
	for _, kind := range []string{applyintake.KindFineTune, applyintake.KindBatch} {
		l := newList(kind)
		Eventually(func() error { return k8s.List(ctx, l, client.InNamespace(h.ns)) }, 2*time.Minute).
			Should(Succeed(), "listing %ss to check the ledger", kind)
		want := map[string]int64{}
		switch l := l.(type) {
		case *togetherv1.TogetherFineTuneList:
			for _, o := range l.Items {
				want[kind+"/"+o.Name], _ = strconv.ParseInt(o.ResourceVersion, 10, 64)
			}
		case *togetherv1.TogetherBatchList:
			for _, o := range l.Items {
				want[kind+"/"+o.Name], _ = strconv.ParseInt(o.ResourceVersion, 10, 64)
			}
		}
		Eventually(func() []string {
			h.mu.Lock()
			defer h.mu.Unlock()
			var behind []string
			for key, rev := range want {
				if oh := h.objects[key]; oh == nil || oh.lastRev < rev {
					behind = append(behind, key)
				}
			}
			slices.Sort(behind)
			return behind
		}, time.Minute).Should(BeEmpty(), "waiting for the watch to record the current version of every object")
	}
}

// check returns one line per acknowledged event that no stored version from
// before its acknowledgement accounts for.
func (h *history) check(acks []ack) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var bad []string
	if h.err != nil {
		bad = append(bad, h.err.Error())
	}
	for _, a := range acks {
		if msg := h.explain(a); msg != "" {
			bad = append(bad, msg)
		}
	}
	slices.Sort(bad)
	return bad
}

// explain says what is wrong with one acknowledgement, or "" if a stored
// version from before it holds its effect.
func (h *history) explain(a ack) string {
	if a.rev < 0 {
		return fmt.Sprintf("event %s: no API server revision could be read after its acknowledgement", a.ev.ID)
	}
	key, ok := h.jobs[a.ev.JobID]
	if !ok {
		return fmt.Sprintf("event %s (%s) was acknowledged %s, but no stored object tracks job %s", a.ev.ID, a.ev.Type, a.outcome, a.ev.JobID)
	}
	oh := h.objects[key]
	if rev, held := oh.firstHeld[a.ev.ID]; held && rev <= a.rev {
		return ""
	}
	if a.outcome == string(lattice.Stale) {
		for _, v := range oh.versions {
			if v.rev > a.rev {
				break
			}
			switch a.ev.Type {
			case togetherv1.EventFineTuneCheckpoint:
				if v.step >= a.ev.Step {
					return ""
				}
			default:
				if slices.Contains(v.ended, a.ev.JobID) {
					return ""
				}
			}
		}
	}
	if rev, held := oh.firstHeld[a.ev.ID]; held {
		return fmt.Sprintf("event %s (%s) was acknowledged %s at revision %d, but %s first stored it at revision %d: acknowledged before its write",
			a.ev.ID, a.ev.Type, a.outcome, a.rev, key, rev)
	}
	return fmt.Sprintf("event %s (%s) was acknowledged %s at revision %d, but no version of %s stored up to then holds its effect: lost",
		a.ev.ID, a.ev.Type, a.outcome, a.rev, key)
}

// expectLedger fails the spec with every acknowledged event that is not
// accounted for by a stored version written before its acknowledgement.
func expectLedger(h *history, log *ledger) {
	GinkgoHelper()
	h.caughtUp()
	acks := log.acknowledged()
	Expect(acks).NotTo(BeEmpty(), "the ledger saw no acknowledgement at all")
	Expect(h.check(acks)).To(BeEmpty(), "acknowledged events without a stored effect written before their acknowledgement")
}
