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
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/controller"
	"github.com/together-operator/together-operator/internal/together"
)

var _ = Describe("Two replicas following a split batch", func() {
	It("submits each part once and ends with every request's output once, pushed to both replicas and polled by the leader", func() {
		const requests, perPart, partsN = 5, 2, 3
		sim := newSimulator()
		f := newFixture("batch2")
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "requests"},
			Data: map[string]string{"input.jsonl": batchRequests(requests)}})).To(Succeed())
		Expect(k8s.Create(ctx, &togetherv1.TogetherBatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "split"},
			Spec: togetherv1.TogetherBatchSpec{Model: "base", MaxRequestsPerBatch: perPart,
				Input:  &togetherv1.BatchInput{ConfigMapRef: &togetherv1.ConfigMapKeyRef{Name: "requests", Key: "input.jsonl"}},
				Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "split-out"}}},
		})).To(Succeed())
		key := client.ObjectKey{Namespace: f.ns, Name: "split"}
		get := func() *togetherv1.TogetherBatch {
			tb := &togetherv1.TogetherBatch{}
			Expect(k8s.Get(ctx, key, tb)).To(Succeed())
			return tb
		}

		a, b := startPollingReplica(sim, 250*time.Millisecond), startPollingReplica(sim, 250*time.Millisecond)
		defer a.stop()
		defer b.stop()
		Eventually(func(g Gomega) {
			tb := get()
			g.Expect(tb.Status.Parts).To(HaveLen(partsN))
			for _, p := range tb.Status.Parts {
				g.Expect(p.BatchID).NotTo(BeEmpty())
			}
		}, time.Minute).Should(Succeed(), "waiting for the leader to submit the three parts")
		Expect(sim.CountCalls(http.MethodPost, "/v1/batches")).To(Equal(partsN))

		By("Together runs the parts; each part's batch.done is pushed twice, to alternating replicas, while the leader polls")
		for range 6 {
			sim.Advance()
		}
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: "fault-key"})
		Expect(err).NotTo(HaveOccurred())
		var stream []delivery
		var wantTokens int64
		for i, p := range get().Status.Parts {
			rb, err := api.GetBatch(ctx, p.BatchID)
			Expect(err).NotTo(HaveOccurred())
			Expect(rb.Status).To(Equal(together.BatchCompleted))
			// A batch carries no token count: a relay reports what the
			// output lines' usage adds up to.
			tokens := outputTokens(api, rb.OutputFileID)
			wantTokens += tokens
			id := fmt.Sprintf("done-%d", i)
			body := envelope(id, "batch.done", map[string]any{"batch_id": rb.ID, "status": "COMPLETED", "total_tokens": tokens,
				"output_file_id": rb.OutputFileID, "error_file_id": rb.ErrorFileID})
			stream = append(stream, delivery{id: id, body: body}, delivery{id: id, body: body})
		}
		urls := []string{a.url, b.url}
		log := newLedger()
		s := newSender(func(i int) string { return urls[i%2] }, log)
		send(s, f.path, stream, nil, 4, 0)
		for _, d := range stream {
			Expect(log.final[d.id]).To(Equal(http.StatusOK), "batch.done %s", d.id)
		}

		Eventually(func(g Gomega) {
			tb := get()
			g.Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded))
			g.Expect(tb.Status.Output).NotTo(BeNil())
		}, time.Minute).Should(Succeed(), "waiting for the batch to succeed and its output to be written")
		tb := get()
		Expect(tb.Status.TotalTokens).To(Equal(wantTokens), "the parts' pushed tokens, each once")
		Expect(tb.Status.Usage).NotTo(BeNil())
		Expect(tb.Status.Usage.TotalTokens).To(Equal(wantTokens), "the output lines' usage, each once")
		Expect(tb.Status.Output.Records).To(Equal(int64(requests)))
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "split-out"}, cm)).To(Succeed())
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(cm.Data[controller.OutputKey]), "\n") {
			var l struct {
				CustomID string `json:"custom_id"`
			}
			Expect(json.Unmarshal([]byte(line), &l)).To(Succeed())
			ids = append(ids, l.CustomID)
		}
		Expect(ids).To(Equal([]string{"req-0", "req-1", "req-2", "req-3", "req-4"}), "every request once, in input order")
		for _, d := range stream {
			Expect(log.applied[d.id]).To(BeNumerically("<=", 1), "%s applied twice", d.id)
		}
		expectLedger(f.history, log)
		Consistently(func() int { return sim.CountCalls(http.MethodPost, "/v1/batches") }, time.Second).
			Should(Equal(partsN), "a part was submitted twice")
		Expect(leaders(a, b)).To(Equal(1))
	})
})

// outputTokens sums response.body.usage.total_tokens over an output file's
// lines, with a generic decoder.
func outputTokens(api *together.Client, fileID string) int64 {
	GinkgoHelper()
	rc, err := api.DownloadFile(ctx, fileID)
	Expect(err).NotTo(HaveOccurred())
	data, err := io.ReadAll(rc)
	_ = rc.Close()
	Expect(err).NotTo(HaveOccurred())
	var sum int64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var l map[string]any
		Expect(json.Unmarshal([]byte(line), &l)).To(Succeed())
		sum += int64(l["response"].(map[string]any)["body"].(map[string]any)["usage"].(map[string]any)["total_tokens"].(float64))
	}
	return sum
}
