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

package webhook

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// lastEventWriteTimeout bounds one write of status.lastEventTime.
const lastEventWriteTimeout = 5 * time.Second

// Outcomes of a lastEventTime write, the label of lastEventWrites.
const (
	lastEventWritten = "written"
	lastEventFailed  = "failed"
	lastEventDropped = "dropped"
	lastEventGone    = "gone"
)

// lastEventWriter is the one writer of the subscriptions'
// status.lastEventTime (docs/status-ownership.md). A delivery only notes
// the time; one goroutine at a time writes what was noted, each write
// bounded by lastEventWriteTimeout, so a burst of deliveries never becomes
// a burst of goroutines or of API-server writes. A subscription noted again
// before its write replaces its pending time instead of queueing a second
// write, and at most max subscriptions wait: beyond that a time is dropped
// and counted (the field is informational; the next delivery notes it
// again). A failed write is logged and counted, and calls failed so that the
// endpoint forgets it wrote recently and the next delivery tries again.
type lastEventWriter struct {
	client client.Client
	max    int
	failed func(types.UID)

	mu      sync.Mutex
	pending map[types.NamespacedName]pendingLastEvent
	running bool
}

type pendingLastEvent struct {
	sub *togetherv1.TogetherWebhookSubscription
	at  time.Time
	log logr.Logger
}

func newLastEventWriter(c client.Client, max int, failed func(types.UID)) *lastEventWriter {
	return &lastEventWriter{client: c, max: max, failed: failed, pending: map[types.NamespacedName]pendingLastEvent{}}
}

// note asks for sub's lastEventTime to become at, and starts the writer
// goroutine when none runs. It never blocks on the API server.
func (w *lastEventWriter) note(sub *togetherv1.TogetherWebhookSubscription, at time.Time, log logr.Logger) {
	key := client.ObjectKeyFromObject(sub)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, waiting := w.pending[key]; !waiting && len(w.pending) >= w.max {
		lastEventWrites.WithLabelValues(lastEventDropped).Inc()
		if w.failed != nil {
			w.failed(sub.UID)
		}
		return
	}
	w.pending[key] = pendingLastEvent{sub: sub, at: at, log: log}
	if !w.running {
		w.running = true
		go w.drain()
	}
}

// drain writes the pending times one by one and ends when none is left.
func (w *lastEventWriter) drain() {
	for {
		w.mu.Lock()
		var (
			next  pendingLastEvent
			found bool
		)
		for key, p := range w.pending {
			next, found = p, true
			delete(w.pending, key)
			break
		}
		if !found {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		w.write(next)
	}
}

// write patches one subscription's lastEventTime, unless the copy it was
// noted with already holds a later time (another replica's write).
func (w *lastEventWriter) write(p pendingLastEvent) {
	if last := p.sub.Status.LastEventTime; last != nil && !p.at.After(last.Time) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lastEventWriteTimeout)
	defer cancel()
	cp := p.sub.DeepCopy()
	t := metav1.NewTime(p.at)
	cp.Status.LastEventTime = &t
	err := w.client.Status().Patch(ctx, cp, client.MergeFrom(p.sub))
	switch {
	case err == nil:
		lastEventWrites.WithLabelValues(lastEventWritten).Inc()
	case apierrors.IsNotFound(err):
		// Deleted since the delivery: nothing to record it on.
		lastEventWrites.WithLabelValues(lastEventGone).Inc()
	default:
		lastEventWrites.WithLabelValues(lastEventFailed).Inc()
		p.log.Error(err, "recording the subscription's last event time failed; the next delivery tries again",
			"subscription", client.ObjectKeyFromObject(p.sub).String())
		if w.failed != nil {
			w.failed(p.sub.UID)
		}
	}
}
