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

package controller

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/togethersim"
)

var _ = Describe("TogetherBatch token accounting", func() {
	It("counts tokens that arrive after the batch's terminal event, once", func() {
		e := newBatchEnv()
		e.sim.AddBatch(togethersim.Batch{ID: "batch-late-tokens", Status: "IN_PROGRESS"})
		const model = "model-late-tokens"
		key := e.create("late", togetherv1.TogetherBatchSpec{BatchID: "batch-late-tokens", Model: model})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		applier := &intake.Applier{Client: k8sClient, Reader: k8sClient}
		push := func(id string, data map[string]any) {
			GinkgoHelper()
			body, err := json.Marshal(map[string]any{"id": id, "type": "batch.done", "created_at": "2030-01-01T00:00:00Z", "data": data})
			Expect(err).NotTo(HaveOccurred())
			ev, err := event.Decode(body)
			Expect(err).NotTo(HaveOccurred())
			Expect(applier.ApplyTo(ctx, intake.KindBatch, key, ev).Outcome).To(Equal(lattice.Applied), "applying %s", id)
		}
		counter := batchTokensTotal.WithLabelValues(e.ns, model)

		By("the terminal event carries no token count yet")
		push("done-1", map[string]any{"batch_id": "batch-late-tokens", "status": "COMPLETED"})
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(e.get(key).Status.Phase).To(Equal(togetherv1.BatchSucceeded))
		Expect(testutil.ToFloat64(counter)).To(Equal(0.0))

		By("a later event for the same ending brings the tokens")
		push("done-2", map[string]any{"batch_id": "batch-late-tokens", "status": "COMPLETED", "total_tokens": 1200})
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(e.get(key).Status.TotalTokens).To(Equal(int64(1200)))
		Expect(testutil.ToFloat64(counter)).To(Equal(1200.0), "tokens that arrived after the ending were not counted")

		By("more tokens later add only the difference; a restart adds nothing")
		push("done-3", map[string]any{"batch_id": "batch-late-tokens", "status": "COMPLETED", "total_tokens": 1500})
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		e.r = e.reconciler(k8sClient)
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(testutil.ToFloat64(counter)).To(Equal(1500.0))
		Expect(e.get(key).Status.AccountedTokens).To(Equal(int64(1500)))
	})

	It("takes a batch accounted by an older operator (tokensAccounted, no amount) as fully counted", func() {
		e := newBatchEnv()
		e.sim.AddBatch(togethersim.Batch{ID: "batch-legacy", Status: "COMPLETED"})
		const model = "model-legacy"
		key := e.create("legacy", togetherv1.TogetherBatchSpec{BatchID: "batch-legacy", Model: model})
		tb := e.get(key)
		tb.Status = togetherv1.TogetherBatchStatus{BatchID: "batch-legacy", Phase: togetherv1.BatchSucceeded, Progress: 100, TotalTokens: 700, TokensAccounted: true}
		Expect(k8sClient.Status().Update(ctx, tb)).To(Succeed())
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(testutil.ToFloat64(batchTokensTotal.WithLabelValues(e.ns, model))).To(Equal(0.0), "the older operator counted these already")
		Expect(e.get(key).Status.AccountedTokens).To(Equal(int64(700)))
	})
})
