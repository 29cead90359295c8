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
	"net/http"
	"net/http/httptest"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
	"github.com/together-operator/together-operator/pkg/push"
)

// Issue 13: spec.adoptUnmatched adopts only work the operator created for
// the subscription's namespace, as its account's record of the work shows
// (the namespace tag in a fine-tune's suffix or model_output_name, in a
// batch's input file name). Everything else is answered unmatched, writes
// nothing and is named nowhere; a failed check writes nothing and asks the
// sender to retry.
var _ = Describe("Adopting unmatched work", func() {
	const simKey = "adopt-key"
	var (
		ns  string
		sim *togethersim.Server
		api *together.Client
	)

	BeforeEach(func() {
		ns = newNamespace()
		sim = togethersim.New(togethersim.Options{APIKey: simKey})
		_, err := sim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Close)
		api, err = together.New(together.Options{BaseURL: sim.URL(), APIKey: simKey, MaxRetries: -1})
		Expect(err).NotTo(HaveOccurred())
	})

	// adoptingEndpoint is an endpoint whose intake checks unmatched work
	// with api, within timeout.
	adoptingEndpoint := func(timeout time.Duration) *httptest.Server {
		a := &intake.Applier{Client: mgrClient, Reader: apiReader, Recorder: srv.Recorder, AdoptCheckTimeout: timeout,
			Remote: func(context.Context, *togetherv1.TogetherWebhookSubscription) (intake.RemoteReader, error) {
				return api, nil
			}}
		hs := httptest.NewServer((&Server{Client: mgrClient, SecretReader: apiReader, Applier: a, Recorder: srv.Recorder}).Handler())
		DeferCleanup(hs.Close)
		return hs
	}
	// taggedName is a model_output_name as Together builds it from a
	// suffix the operator wrote for a resource in namespace.
	taggedName := func(namespace string) string {
		return "sim-user/base-support-n" + togetherv1.NamespaceTag(namespace) + "-1234abcd-a1b2c3"
	}
	checkpoint := func(id, job string) []byte {
		return envelope(id, "fine_tune.checkpoint", map[string]any{"fine_tune_id": job, "step": 1, "loss": 1.0})
	}
	fineTunes := func() []togetherv1.TogetherFineTune {
		var l togetherv1.TogetherFineTuneList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		return l.Items
	}
	batches := func() []togetherv1.TogetherBatch {
		var l togetherv1.TogetherBatchList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		return l.Items
	}

	It("adopts only jobs and batches tagged for the namespace, and answers the rest unmatched without writing or naming them", func() {
		hs := adoptingEndpoint(0)
		makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		path := PathFor(ns, "adopter")

		ours := sim.AddFineTune(togethersim.FineTune{ID: "ft-ours-" + ns, Model: "org/base", Status: "running", ModelOutputName: taggedName(ns)})
		foreign := sim.AddFineTune(togethersim.FineTune{ID: "ft-foreign-" + ns, Model: "org/base", Status: "running", ModelOutputName: taggedName(ns + "-other")})
		// A user's suffix imitating this namespace's tag does not make
		// another namespace's job this one's: the operator's tag is last.
		imitation := sim.AddFineTune(togethersim.FineTune{ID: "ft-imitation-" + ns, Model: "org/base", Status: "running",
			ModelOutputName: "sim-user/base-n" + togetherv1.NamespaceTag(ns) + "-n" + togetherv1.NamespaceTag(ns+"-other") + "-1234abcd-a1b2c3"})
		untagged := sim.AddFineTune(togethersim.FineTune{ID: "ft-untagged-" + ns, Model: "org/base", Status: "running", ModelOutputName: "sim-user/base-support-0badc0de-a1b2c3"})
		unknown := "ft-unknown-" + ns

		oursFile := sim.AddFile(togetherv1.BatchPartFileName("tbatch-n"+togetherv1.NamespaceTag(ns)+"-uid-a1-0123456789ab", 0), "batch-api", []byte("{}\n"))
		oursBatch := sim.AddBatch(togethersim.Batch{ID: "batch-ours-" + ns, InputFileID: oursFile.ID, Status: "IN_PROGRESS"})
		foreignFile := sim.AddFile(togetherv1.BatchPartFileName("tbatch-n"+togetherv1.NamespaceTag(ns+"-other")+"-uid-a1-0123456789ab", 0), "batch-api", []byte("{}\n"))
		foreignBatch := sim.AddBatch(togethersim.Batch{ID: "batch-foreign-" + ns, InputFileID: foreignFile.ID, Status: "IN_PROGRESS"})

		for i, job := range []string{foreign, imitation, untagged, unknown} {
			code, body := sendTo(hs.URL, hexSigned(path, checkpoint("f"+string(rune('0'+i)), job)))
			Expect(code).To(Equal(http.StatusAccepted), "job %s: %s", job, body)
			Expect(body).To(ContainSubstring("unmatched"))
		}
		code, body := sendTo(hs.URL, hexSigned(path, envelope("b-f", "batch.done", map[string]any{"batch_id": foreignBatch, "status": "COMPLETED"})))
		Expect(code).To(Equal(http.StatusAccepted), body)
		Expect(fineTunes()).To(BeEmpty(), "nothing is written for work that is not this namespace's")
		Expect(batches()).To(BeEmpty())

		code, body = sendTo(hs.URL, hexSigned(path, checkpoint("o1", ours)))
		Expect(code).To(Equal(http.StatusOK), body)
		code, body = sendTo(hs.URL, hexSigned(path, envelope("b-o", "batch.done", map[string]any{"batch_id": oursBatch, "status": "COMPLETED"})))
		Expect(code).To(Equal(http.StatusOK), body)
		fts := fineTunes()
		Expect(fts).To(HaveLen(1))
		Expect(fts[0].Name).To(Equal(event.ObjectName("ft", ours)))
		Expect(fts[0].Spec.JobID).To(Equal(ours))
		Expect(fts[0].Spec.DeletionPolicy).To(BeEmpty(), "adopted work is retained by default (EffectiveDeletionPolicy)")
		Expect(fts[0].EffectiveDeletionPolicy()).To(Equal(togetherv1.DeletionPolicyRetain))
		bs := batches()
		Expect(bs).To(HaveLen(1))
		Expect(bs[0].Spec.BatchID).To(Equal(oursBatch))

		Eventually(func() int { return eventsFor(ns, "adopter", "UnmatchedEvent") }).Should(Equal(1), "waiting for the one UnmatchedEvent Warning")
		var evs eventsv1.EventList
		Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		for _, e := range evs.Items {
			for _, id := range []string{foreign, imitation, untagged, unknown, foreignBatch} {
				Expect(e.Note).NotTo(ContainSubstring(id), "an Event names work that is not this namespace's")
			}
			if e.Reason == "UnmatchedEvent" {
				Expect(e.Note).To(ContainSubstring("was not adopted"), "the Warning says why adoptUnmatched did not take it up")
				Expect(e.Note).NotTo(ContainSubstring("set spec.adoptUnmatched"))
			}
		}
	})

	It("answers 503 and writes nothing when Together fails or does not answer in time", func() {
		makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		path := PathFor(ns, "adopter")
		ours := sim.AddFineTune(togethersim.FineTune{ID: "ft-ours-" + ns, Model: "org/base", Status: "running", ModelOutputName: taggedName(ns)})

		By("Together answering 500")
		hs := adoptingEndpoint(0)
		sim.Faults().SetRoute("GET", "/v1/fine-tunes/"+ours, togethersim.RouteFault{Status: 500})
		code, body := sendTo(hs.URL, hexSigned(path, checkpoint("e1", ours)))
		Expect(code).To(Equal(http.StatusServiceUnavailable), body)
		Expect(body).To(ContainSubstring("nothing was written"))
		Expect(fineTunes()).To(BeEmpty())

		By("Together not answering within the check's timeout")
		sim.Faults().ClearRoutes()
		sim.Faults().SetRoute("GET", "/v1/fine-tunes/"+ours, togethersim.RouteFault{Delay: 5 * time.Second})
		slow := adoptingEndpoint(200 * time.Millisecond)
		start := time.Now()
		code, body = sendTo(slow.URL, hexSigned(path, checkpoint("e2", ours)))
		Expect(code).To(Equal(http.StatusServiceUnavailable), body)
		Expect(time.Since(start)).To(BeNumerically("<", 4*time.Second), "the check is bounded by its timeout, not Together's pace")
		Expect(fineTunes()).To(BeEmpty())

		By("the sender retrying once Together answers")
		sim.Faults().ClearRoutes()
		code, body = sendTo(hs.URL, hexSigned(path, checkpoint("e3", ours)))
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(fineTunes()).To(HaveLen(1))
	})

	It("calls Together for no unsigned event, and once for a foreign job however often it is named", func() {
		hs := adoptingEndpoint(0)
		makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		path := PathFor(ns, "adopter")
		foreign := sim.AddFineTune(togethersim.FineTune{ID: "ft-foreign-" + ns, Model: "org/base", Status: "running", ModelOutputName: taggedName(ns + "-other")})

		for i := range 5 {
			bad := hexSigned(path, checkpoint("x"+string(rune('0'+i)), foreign))
			sig := []byte(bad.header.Get(push.HeaderSignature))
			sig[0] ^= 1 // still hex, no longer the signature
			bad.header.Set(push.HeaderSignature, string(sig))
			code, _ := sendTo(hs.URL, bad)
			Expect(code).To(Equal(http.StatusUnauthorized))
		}
		Expect(sim.CountCalls("GET", "/v1/fine-tunes/"+foreign)).To(BeZero(), "an unauthenticated request caused a Together call")

		for i := range 4 {
			code, body := sendTo(hs.URL, hexSigned(path, checkpoint("s"+string(rune('0'+i)), foreign)))
			Expect(code).To(Equal(http.StatusAccepted), body)
		}
		Expect(sim.CountCalls("GET", "/v1/fine-tunes/"+foreign)).To(Equal(1), "one check, then the verdict is remembered (bounded, for a minute)")
		Expect(fineTunes()).To(BeEmpty())
	})
})
