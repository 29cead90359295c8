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
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	applyintake "github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/webhook"
)

// lossyClient answers the first status update that records event drop as
// written, without writing it: an acknowledged event whose write is lost,
// the failure the durability ledger exists to see.
type lossyClient struct {
	client.Client
	drop    string
	dropped atomic.Bool
}

func (c *lossyClient) Status() client.SubResourceWriter {
	return &lossyStatus{SubResourceWriter: c.Client.Status(), c: c}
}

type lossyStatus struct {
	client.SubResourceWriter
	c *lossyClient
}

func (s *lossyStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if ft, ok := obj.(*togetherv1.TogetherFineTune); ok && slices.Contains(ft.Status.ProcessedEvents, s.c.drop) && s.c.dropped.CompareAndSwap(false, true) {
		return nil
	}
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

// Patch is how the apply step writes; it drops the same write.
func (s *lossyStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if ft, ok := obj.(*togetherv1.TogetherFineTune); ok && slices.Contains(ft.Status.ProcessedEvents, s.c.drop) && s.c.dropped.CompareAndSwap(false, true) {
		return nil
	}
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

var _ = Describe("The durability ledger", func() {
	It("names an acknowledged event whose write was lost, even when a redelivery restores it and later steps mask it", func() {
		f := newFixture("loss")
		jobs := f.runningFineTunes("job", 1)
		lossy := &lossyClient{drop: "job-0-cp-10"}
		in := startIntake(func(s *webhook.Server) {
			lossy.Client = s.Applier.Client
			s.Applier = &applyintake.Applier{Client: lossy, Reader: s.Applier.Reader, Recorder: s.Applier.Recorder}
		})
		defer in.stop()
		waitCached(in, f, jobs)

		sent := workload(jobs, 20)
		log := newLedger()
		s := newSender(func(int) string { return in.url }, log)
		for _, d := range interleave(sent) {
			Expect(s.deliver(0, f.path, d.id, d.body, 30*time.Second)).To(Equal(http.StatusOK), "delivering %s", d.id)
		}
		Expect(lossy.dropped.Load()).To(BeTrue(), "the lossy client never saw the write it was to drop")
		By("a redelivery of the lost event writes it after all")
		Expect(s.deliver(0, f.path, "job-0-cp-10", sent["job-0"][9], 30*time.Second)).To(Equal(http.StatusOK))

		By("the final status looks right: a final-state check cannot see the loss")
		got := getFineTune(f, "job-0")
		Expect(comparable(got.Status)).To(Equal(comparable(inOrder(jobs["job-0"], sent["job-0"]))))
		Expect(got.Status.ProcessedEvents).To(ContainElement("job-0-cp-10"))

		By("the ledger names the event acknowledged before any write held it")
		f.history.caughtUp()
		bad := f.history.check(log.acknowledged())
		Expect(bad).To(HaveLen(1), "exactly the dropped event's first acknowledgement: %v", bad)
		Expect(bad[0]).To(HavePrefix(fmt.Sprintf("event %s ", "job-0-cp-10")))
		Expect(bad[0]).To(ContainSubstring("acknowledged before its write"))
	})
})
