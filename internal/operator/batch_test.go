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

package operator

import (
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/together-operator/together-operator/internal/webhook"
)

// Batches end to end: the operator as the binary wires it (operator.Setup),
// the simulator running batches on its clock, and the batch's state reaching
// status through the real intake, pushed or polled.

func requestLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%d","body":{"messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, i)
	}
	return b.String()
}

// batchFixture creates the input ConfigMap and the batch, and returns the
// batch's key.
func batchFixture(ns, name string, requests int, mut func(*togetherv1.TogetherBatchSpec)) client.ObjectKey {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-in"},
		Data: map[string]string{"requests.jsonl": requestLines(requests)}})).To(Succeed())
	spec := togetherv1.TogetherBatchSpec{Model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
		Input:  &togetherv1.BatchInput{ConfigMapRef: &togetherv1.ConfigMapKeyRef{Name: name + "-in", Key: "requests.jsonl"}},
		Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: name + "-out"}}}
	if mut != nil {
		mut(&spec)
	}
	tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	Expect(k8s.Create(ctx, tb)).To(Succeed())
	return client.ObjectKeyFromObject(tb)
}

func getBatch(key client.ObjectKey) *togetherv1.TogetherBatch {
	GinkgoHelper()
	tb := &togetherv1.TogetherBatch{}
	Expect(k8s.Get(ctx, key, tb)).To(Succeed())
	return tb
}

// outputCustomIDs reads the batch's output ConfigMap as a user would.
func outputCustomIDs(ns, name string) []string {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)).To(Succeed())
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(cm.Data[controller.OutputKey]), "\n") {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		Expect(json.Unmarshal([]byte(line), &l)).To(Succeed(), "output line %q", line)
		ids = append(ids, l.CustomID)
	}
	return ids
}

// remoteTokens sums the usage Together reports for the batches: a batch
// object carries no token counts, so it is read from each output line's
// response.body.usage, with a generic decoder.
func remoteTokens(ids ...string) int64 {
	GinkgoHelper()
	api := parts.Poller.API.(*together.Client)
	var sum int64
	for _, id := range ids {
		b, err := api.GetBatch(ctx, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Status).To(Equal(together.BatchCompleted))
		rc, err := api.DownloadFile(ctx, b.OutputFileID)
		Expect(err).NotTo(HaveOccurred())
		data, err := io.ReadAll(rc)
		_ = rc.Close()
		Expect(err).NotTo(HaveOccurred())
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var l map[string]any
			Expect(json.Unmarshal([]byte(line), &l)).To(Succeed())
			sum += int64(l["response"].(map[string]any)["body"].(map[string]any)["usage"].(map[string]any)["total_tokens"].(float64))
		}
	}
	return sum
}

// usedTokens is status.usage.totalTokens, failing when it is not there.
func usedTokens(tb *togetherv1.TogetherBatch) int64 {
	GinkgoHelper()
	Expect(tb.Status.Usage).NotTo(BeNil(), "status.usage should be counted from the output")
	return tb.Status.Usage.TotalTokens
}

// pollUntil runs poll cycles until the batch's phase is terminal.
func pollUntil(key client.ObjectKey, what string) *togetherv1.TogetherBatch {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		_, err := parts.Poller.PollOnce(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(getBatch(key).Status.Phase.IsTerminal()).To(BeTrue())
	}).WithTimeout(30*time.Second).Should(Succeed(), "waiting for %s to end through the poller", what)
	return getBatch(key)
}

// expectOutput waits for the batch to be Ready with its output written and
// checks the output holds every request in input order.
func expectOutput(key client.ObjectKey, requests int) *togetherv1.TogetherBatch {
	GinkgoHelper()
	tb := getBatch(key)
	Eventually(readyAndObserved(tb, func() []metav1.Condition { return tb.Status.Conditions })).WithTimeout(30*time.Second).
		Should(Succeed(), "waiting for batch %s to be Ready with its output", key.Name)
	Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded))
	Expect(tb.Status.Output).NotTo(BeNil())
	Expect(tb.Status.Output.Records).To(Equal(int64(requests)))
	want := make([]string, requests)
	for i := range want {
		want[i] = fmt.Sprintf("req-%d", i)
	}
	Expect(outputCustomIDs(key.Namespace, key.Name+"-out")).To(Equal(want))
	return tb
}

var _ = Describe("Batches end to end", func() {
	It("follows a submitted batch to its output through pushed batch.done events", func() {
		ns := newNamespace()
		sub := createSubscription(ns, "push", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register = true
			s.Spec.URL = eventsURL + webhook.PathFor(ns, "push")
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(sub.Status.RemoteID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the subscription to register with the simulator")
		posts := sim.CountCalls("POST", "/v1/batches")
		key := batchFixture(ns, "pushed", 3, nil)
		tb := expectOutput(key, 3)
		Expect(tb.Status.LastEvent).NotTo(BeNil())
		Expect(tb.Status.LastEvent.Type).To(Equal(string(togetherv1.EventBatchDone)))
		Expect(tb.Status.LastEvent.ID).NotTo(HavePrefix("poll:"), "the push, not the poller, should have delivered it")
		Expect(tb.Status.TotalTokens).To(Equal(remoteTokens(tb.Status.BatchID)), "the push reports the output's usage")
		Expect(usedTokens(tb)).To(Equal(tb.Status.TotalTokens))
		Expect(tb.Status.AccountedTokens).To(Equal(tb.Status.TotalTokens))
		Expect(sim.CountCalls("POST", "/v1/batches") - posts).To(Equal(1))
	})

	It("follows a submitted batch to its output through the poller", func() {
		ns := newNamespace()
		createSubscription(ns, "plain", nil)
		key := batchFixture(ns, "polled", 4, nil)
		Eventually(func() string { return getBatch(key).Status.BatchID }).Should(Not(BeEmpty()), "waiting for the batch to be submitted")
		tb := pollUntil(key, "the polled batch")
		Expect(tb.Status.LastEvent).NotTo(BeNil())
		Expect(tb.Status.LastEvent.ID).To(HavePrefix("poll:"))
		tb = expectOutput(key, 4)
		Expect(usedTokens(tb)).To(Equal(remoteTokens(tb.Status.BatchID)))
	})

	It("splits a large input, follows every part through the poller and merges the outputs in input order", func() {
		ns := newNamespace()
		createSubscription(ns, "plain", nil)
		posts := sim.CountCalls("POST", "/v1/batches")
		key := batchFixture(ns, "split", 5, func(s *togetherv1.TogetherBatchSpec) { s.MaxRequestsPerBatch = 2 })
		Eventually(func(g Gomega) {
			tb := getBatch(key)
			g.Expect(tb.Status.Parts).To(HaveLen(3))
			for _, p := range tb.Status.Parts {
				g.Expect(p.BatchID).NotTo(BeEmpty())
			}
		}).Should(Succeed(), "waiting for the three parts to be submitted")
		tb := pollUntil(key, "the split batch")
		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded), "every part succeeded")
		tb = expectOutput(key, 5)
		ids := make([]string, 0, 3)
		for _, p := range tb.Status.Parts {
			Expect(p.Phase).To(Equal(togetherv1.BatchSucceeded))
			ids = append(ids, p.BatchID)
		}
		Expect(usedTokens(tb)).To(Equal(remoteTokens(ids...)), "the parts' tokens, summed")
		Expect(sim.CountCalls("POST", "/v1/batches") - posts).To(Equal(3))
	})

	It("adopts a batch created outside the operator by its ID, without creating one", func() {
		ns := newNamespace()
		createSubscription(ns, "plain", nil)
		api := parts.Poller.API.(*together.Client)
		f, err := api.UploadFile(ctx, "adopt.jsonl", together.FilePurposeBatch, strings.NewReader(requestLines(2)))
		Expect(err).NotTo(HaveOccurred())
		remote, err := api.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions",
			CompletionWindow: "24h", ModelID: "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"})
		Expect(err).NotTo(HaveOccurred())
		posts := sim.CountCalls("POST", "/v1/batches")
		tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "adopted"},
			Spec: togetherv1.TogetherBatchSpec{BatchID: remote.ID,
				Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "adopted-out"}}}}
		Expect(k8s.Create(ctx, tb)).To(Succeed())
		key := client.ObjectKeyFromObject(tb)
		pollUntil(key, "the adopted batch")
		tb = expectOutput(key, 2)
		Expect(tb.Status.BatchID).To(Equal(remote.ID))
		Expect(usedTokens(tb)).To(Equal(remoteTokens(remote.ID)))
		Expect(sim.CountCalls("POST", "/v1/batches")).To(Equal(posts), "adopting must not create a batch")
	})
})
