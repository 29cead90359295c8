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
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// statusPatchFails fails every status patch while fail is set; everything
// else goes to the wrapped client.
type statusPatchFails struct {
	client.Client
	fail *atomic.Bool
}

func (c statusPatchFails) Status() client.SubResourceWriter {
	return statusPatchFailsWriter{SubResourceWriter: c.Client.Status(), fail: c.fail}
}

type statusPatchFailsWriter struct {
	client.SubResourceWriter
	fail *atomic.Bool
}

func (w statusPatchFailsWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if w.fail.Load() {
		return errors.New("injected: the API server is not taking writes")
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

var _ = Describe("status.lastEventTime", func() {
	It("is written after an accepted delivery; a failed write is counted and the next delivery writes it", func() {
		ns := newNamespace()
		sub := makeSubscription(ns, "last", nil)
		makeFineTune(ns, "ft", "ft-last-event")
		var fail atomic.Bool
		s := &Server{Client: statusPatchFails{Client: mgrClient, fail: &fail}, SecretReader: apiReader, Applier: applier}
		ts := httptest.NewServer(s.Handler())
		DeferCleanup(ts.Close)
		lastEventTime := func(g Gomega) *metav1.Time {
			got := &togetherv1.TogetherWebhookSubscription{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), got)).To(Succeed())
			return got.Status.LastEventTime
		}

		By("a delivery whose lastEventTime write fails")
		failed := testutil.ToFloat64(lastEventWrites.WithLabelValues(lastEventFailed))
		fail.Store(true)
		code, body := sendTo(ts.URL, hexSigned(PathFor(ns, "last"), envelope("le-1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-last-event", "step": 1, "loss": 1.0})))
		Expect(code).To(Equal(http.StatusOK), body)
		Eventually(func() float64 { return testutil.ToFloat64(lastEventWrites.WithLabelValues(lastEventFailed)) }).
			Should(BeNumerically(">", failed), "waiting for the failed write to be counted")
		Expect(lastEventTime(Default)).To(BeNil())

		By("the next delivery, within the minute, writes it")
		fail.Store(false)
		code, body = sendTo(ts.URL, hexSigned(PathFor(ns, "last"), envelope("le-2", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-last-event", "step": 2, "loss": 0.9})))
		Expect(code).To(Equal(http.StatusOK), body)
		Eventually(lastEventTime).ShouldNot(BeNil(), "waiting for status.lastEventTime after a failed write was retried by the next delivery")
	})
})

// blockingStatus holds every status patch until release is closed and
// records how many run at once.
type blockingStatus struct {
	client.SubResourceWriter
	entered        chan struct{}
	release        chan struct{}
	inFlight, most atomic.Int32
	mu             sync.Mutex
	written        []types.NamespacedName
}

func (b *blockingStatus) Patch(_ context.Context, obj client.Object, _ client.Patch, _ ...client.SubResourcePatchOption) error {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	b.entered <- struct{}{}
	<-b.release
	b.mu.Lock()
	b.written = append(b.written, client.ObjectKeyFromObject(obj))
	b.mu.Unlock()
	return nil
}

type blockingClient struct {
	client.Client
	status *blockingStatus
}

func (c blockingClient) Status() client.SubResourceWriter { return c.status }

// TestLastEventWriterIsBounded: however many subscriptions receive
// deliveries while the API server is slow, one write runs at a time, at most
// max wait (a subscription noted twice waits once, with its latest time),
// and the rest are dropped and counted — neither goroutines nor memory grow
// with the traffic.
func TestLastEventWriterIsBounded(t *testing.T) {
	st := &blockingStatus{entered: make(chan struct{}, 100), release: make(chan struct{})}
	var forgotten []types.UID
	w := newLastEventWriter(blockingClient{status: st}, 2, func(uid types.UID) { forgotten = append(forgotten, uid) })
	sub := func(name string) *togetherv1.TogetherWebhookSubscription {
		return &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)}}
	}
	dropped := testutil.ToFloat64(lastEventWrites.WithLabelValues(lastEventDropped))
	now := time.Now()

	w.note(sub("a"), now, logr.Discard())
	select {
	case <-st.entered: // a's write is in flight and holds the writer
	case <-time.After(10 * time.Second):
		t.Fatal("the first write never started")
	}
	w.note(sub("b"), now, logr.Discard())
	w.note(sub("c"), now, logr.Discard())
	w.note(sub("b"), now.Add(time.Second), logr.Discard()) // replaces b's pending time
	w.note(sub("d"), now, logr.Discard())                  // over the bound: dropped
	w.note(sub("e"), now, logr.Discard())                  // dropped

	if got := testutil.ToFloat64(lastEventWrites.WithLabelValues(lastEventDropped)) - dropped; got != 2 {
		t.Fatalf("dropped %v notes, want 2 (d and e)", got)
	}
	if len(forgotten) != 2 || forgotten[0] != "d" || forgotten[1] != "e" {
		t.Fatalf("dropped subscriptions forgotten = %v, want [d e] so that their next delivery notes again", forgotten)
	}
	close(st.release)
	NewWithT(t).Eventually(func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.running
	}, 10*time.Second, 10*time.Millisecond).Should(BeFalse(), "the writer did not finish its pending writes")
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.written) != 3 {
		t.Fatalf("wrote %v, want a, b and c once each", st.written)
	}
	if m := st.most.Load(); m != 1 {
		t.Fatalf("%d writes ran at once, want 1", m)
	}
}
