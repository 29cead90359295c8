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
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
	"github.com/together-operator/together-operator/internal/webhook"
	"github.com/together-operator/together-operator/pkg/push"
)

const signingSecret = "operator-suite-secret"

func createSubscription(ns, name string, mut func(*togetherv1.TogetherWebhookSubscription)) *togetherv1.TogetherWebhookSubscription {
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-secret"},
		StringData: map[string]string{"secret": signingSecret}})).To(Succeed())
	// The endpoint takes a signing Secret's existence from the manager's
	// cache: a sender pushing the moment it is created would be told 401.
	Eventually(func() error {
		_, err := secretread.Metadata(ctx, mgr.GetCache(), client.ObjectKey{Namespace: ns, Name: name + "-secret"})
		return err
	}).Should(Succeed(), "waiting for the manager's cache to see the signing Secret")
	sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: name + "-secret"}}}
	if mut != nil {
		mut(sub)
	}
	Expect(k8s.Create(ctx, sub)).To(Succeed())
	return sub
}

// readyAndObserved is what `kubectl wait --for=condition=Ready` checks, plus
// kstatus's observedGeneration rule.
func readyAndObserved(obj client.Object, conds func() []metav1.Condition) func(Gomega) {
	return func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		c := apimeta.FindStatusCondition(conds(), togetherv1.ReadyCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(obj.GetGeneration()))
	}
}

func post(path string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, eventsURL+path, bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	id, now := "msg_"+hex.EncodeToString(sum[:8]), time.Now()
	req.Header.Set(push.HeaderWebhookID, id)
	req.Header.Set(push.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(push.HeaderWebhookSignature, push.Standard([]byte(signingSecret), id, now, body))
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode
}

var _ = Describe("TogetherWebhookSubscription", func() {
	It("becomes Ready with its path and observedGeneration, as kubectl wait expects", func() {
		ns := newNamespace()
		sub := createSubscription(ns, "events", nil)
		Eventually(readyAndObserved(sub, func() []metav1.Condition { return sub.Status.Conditions })).Should(Succeed(), "waiting for the subscription to be Ready")
		Expect(sub.Status.WebhookPath).To(Equal("/webhooks/together/" + ns + "/events"))
		Expect(apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())

		By("a spec change is observed again")
		sub.Spec.Events = []togetherv1.EventType{togetherv1.EventBatchDone}
		Expect(k8s.Update(ctx, sub)).To(Succeed())
		Eventually(readyAndObserved(sub, func() []metav1.Condition { return sub.Status.Conditions })).Should(Succeed(), "waiting for the changed subscription to be Ready")
		Expect(sub.Status.ObservedGeneration).To(Equal(int64(2)))
	})

	It("is Stalled with an actionable message while its Secret is missing", func() {
		ns := newNamespace()
		sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nosecret"},
			Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "missing"}}}
		Expect(k8s.Create(ctx, sub)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			c := apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonSecretNotFound))
			g.Expect(c.Message).To(ContainSubstring("kubectl -n " + ns + " create secret generic missing"))
		}).Should(Succeed(), "waiting for the subscription to register")
		Expect(apimeta.IsStatusConditionTrue(sub.Status.Conditions, togetherv1.ReadyCondition)).To(BeFalse())

		By("creating the Secret afterwards: the subscription finds it without a restart")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"},
			StringData: map[string]string{"secret": signingSecret}})).To(Succeed())
		Eventually(readyAndObserved(sub, func() []metav1.Condition { return sub.Status.Conditions })).WithTimeout(30*time.Second).Should(Succeed(), "waiting for the subscription to find its Secret")
		Expect(apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
	})

	It("registers with an API that offers webhooks, and says NotSupported (staying Ready) with one that does not", func() {
		ns := newNamespace()
		sub := createSubscription(ns, "reg", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register = true
			s.Spec.URL = eventsURL + webhook.PathFor(ns, "reg")
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(apimeta.IsStatusConditionTrue(sub.Status.Conditions, togetherv1.RegisteredCondition)).To(BeTrue())
			g.Expect(sub.Status.RemoteID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the subscription to report NotSupported")

		By("deleting it removes the remote registration")
		remoteID := sub.Status.RemoteID
		Expect(k8s.Delete(ctx, sub)).To(Succeed())
		Eventually(func() int { return sim.CountCalls(http.MethodDelete, "/v1/webhooks/"+remoteID) }).Should(Equal(1), "waiting for the remote registration to be deleted")

		By("an API without /webhooks")
		sim.Faults().SetRoute(http.MethodPost, "/v1/webhooks", togethersim.RouteFault{Status: http.StatusNotFound, Times: 1000})
		defer sim.Faults().ClearRoutes()
		other := createSubscription(ns, "noreg", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register = true
			s.Spec.URL = "https://relay.example.com/hook"
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(other), other)).To(Succeed())
			c := apimeta.FindStatusCondition(other.Status.Conditions, togetherv1.RegisteredCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonNotSupported))
			g.Expect(c.Message).To(ContainSubstring("poller"))
			g.Expect(apimeta.IsStatusConditionTrue(other.Status.Conditions, togetherv1.ReadyCondition)).To(BeTrue())
		}).Should(Succeed(), "waiting for the subscription to register with the simulator")
	})
})

var _ = Describe("Event intake end to end", func() {
	It("follows a whole fine-tune lifecycle delivered by the simulator as a registered sender", func() {
		ns := newNamespace()
		sub := createSubscription(ns, "sim", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register = true
			s.Spec.URL = eventsURL + webhook.PathFor(ns, "sim")
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(sub.Status.RemoteID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the fine-tune to succeed")

		file, err := parts.Poller.API.(*together.Client).UploadFile(ctx, "train.jsonl", together.FilePurposeFineTune,
			strings.NewReader(`{"text":"hello"}`+"\n"))
		Expect(err).NotTo(HaveOccurred())
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e2e"},
			Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", TrainingFile: file.ID, Suffix: "e2e"}}}
		Expect(k8s.Create(ctx, ft)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		}).WithTimeout(30*time.Second).Should(Succeed(), "waiting for the fine-tune to succeed through the pushes")
		job, err := parts.Poller.API.(*together.Client).GetFineTune(ctx, ft.Status.JobID)
		Expect(err).NotTo(HaveOccurred())
		Expect(ft.Status.OutputModel).To(Equal(job.ModelOutputName))
		Expect(ft.Status.Step).To(BeNumerically(">", 0))
		Expect(ft.Status.LastEvent).NotTo(BeNil())
		Expect(ft.Status.LastEvent.ID).NotTo(HavePrefix("poll:"), "the push, not the poller, should have delivered it")
		Eventually(readyAndObserved(ft, func() []metav1.Condition { return ft.Status.Conditions })).Should(Succeed(), "waiting for the fine-tune to be Ready")
	})

	It("converges through the poller when a push beat the resource to its job, and without any subscription", func() {
		ns := newNamespace()
		createSubscription(ns, "plain", nil)
		api := parts.Poller.API.(*together.Client)
		file, err := api.UploadFile(ctx, "train.jsonl", together.FilePurposeFineTune, strings.NewReader(`{"text":"hi"}`+"\n"))
		Expect(err).NotTo(HaveOccurred())
		job, err := api.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", TrainingFile: file.ID})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() together.FineTuneStatus {
			j, err := api.GetFineTune(ctx, job.ID)
			Expect(err).NotTo(HaveOccurred())
			return j.Status
		}).WithTimeout(20*time.Second).Should(Equal(together.FineTuneCompleted), "waiting for the job to complete at the simulator")

		body, _ := json.Marshal(map[string]any{"id": "early-1", "type": "fine_tune.completed", "data": map[string]any{"fine_tune_id": job.ID, "model_name": "x"}})
		Expect(post(webhook.PathFor(ns, "plain"), body)).To(Equal(http.StatusAccepted), "no resource tracks the job yet")

		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"}, Spec: togetherv1.TogetherFineTuneSpec{JobID: job.ID}}
		Expect(k8s.Create(ctx, ft)).To(Succeed())
		Eventually(func(g Gomega) {
			_, err := parts.Poller.PollOnce(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		}).WithTimeout(20*time.Second).Should(Succeed(), "waiting for the poller to converge the fine-tune")
		j, _ := api.GetFineTune(ctx, job.ID)
		Expect(ft.Status.OutputModel).To(Equal(j.ModelOutputName))
	})

	It("polls N running jobs with a constant number of API calls", func() {
		ns := newNamespace()
		const n = 25
		for i := range n {
			id := fmt.Sprintf("ft-steady-%d", i)
			sim.AddStalledFineTune(togethersim.FineTune{ID: id, Model: "m"})
			ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("steady-%d", i)},
				Spec: togetherv1.TogetherFineTuneSpec{JobID: id}}
			Expect(k8s.Create(ctx, ft)).To(Succeed())
		}
		Eventually(func(g Gomega) {
			var l togetherv1.TogetherFineTuneList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
			for _, ft := range l.Items {
				g.Expect(ft.Status.JobID).NotTo(BeEmpty())
			}
		}).WithTimeout(20*time.Second).Should(Succeed(), "waiting for every fine-tune to record its job")
		_, err := parts.Poller.PollJobs(ctx) // first read: per-job details for jobs never seen
		Expect(err).NotTo(HaveOccurred())
		// Counted where the calls are served, not by the poller's own
		// counter: a per-job call added without counting it shows here.
		before := sim.CallsByRoute()
		_, err = parts.Poller.PollJobs(ctx)
		Expect(err).NotTo(HaveOccurred())
		after := sim.CallsByRoute()
		delta := func(route string) int { return after[route] - before[route] }
		Expect(delta("GET /v1/fine-tunes")).To(Equal(1), "a steady cycle should cost one list call")
		perJob := delta("GET /v1/fine-tunes/{id}") + delta("GET /v1/fine-tunes/{id}/metrics") + delta("GET /v1/fine-tunes/{id}/events")
		Expect(perJob).To(BeZero(), "%d idle jobs should cost no per-job call", n)
	})

	It("gives a migration created from a deprecation the subscription's skipCatalogCheck for a private replacement, and it migrates", func() {
		ns := newNamespace()
		createSubscription(ns, "private", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.ModelReplacements = []togetherv1.ModelReplacement{{ModelID: "org/retiring-private", ReplacementModel: "me/fine-tuned-ft-1", SkipCatalogCheck: true}}
			s.Spec.Migration = &togetherv1.MigrationTemplate{Strategy: togetherv1.MigrationImmediate}
		})
		dep := deployment(ns, "uses-retiring", "org/retiring-private")
		dep.Labels = map[string]string{togetherv1.MigrateOptInLabel: "true"}
		Expect(k8s.Create(ctx, dep)).To(Succeed())
		sim.DeprecateModel("org/retiring-private", "", "2027-06-30")
		parts.Poller.ModelsInterval = time.Millisecond
		Eventually(func(g Gomega) {
			_, err := parts.Poller.PollOnce(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			var l togetherv1.TogetherModelMigrationList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
			g.Expect(l.Items).To(HaveLen(1))
			g.Expect(l.Items[0].Spec.SkipCatalogCheck).To(BeTrue())
		}).Should(Succeed(), "waiting for the poller to create the migration")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "uses-retiring"}, dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Env[0].Value).To(Equal("me/fine-tuned-ft-1"))
		}).WithTimeout(20*time.Second).Should(Succeed(), "waiting for the Deployment to be migrated to a model the catalogue does not list")
	})

	It("turns a deprecated model in the catalogue that a workload uses into a migration", func() {
		ns := newNamespace()
		createSubscription(ns, "catalogue", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.ModelReplacements = []togetherv1.ModelReplacement{{ModelID: "org/retiring", ReplacementModel: "org/successor"}}
			s.Spec.Migration = &togetherv1.MigrationTemplate{Strategy: togetherv1.MigrationImmediate}
		})
		dep := deployment(ns, "uses-retiring", "org/retiring")
		dep.Labels = map[string]string{togetherv1.MigrateOptInLabel: "true"} // a migration without a selector moves only opted-in workloads
		Expect(k8s.Create(ctx, dep)).To(Succeed())
		sim.DeprecateModel("org/retiring", "", "2027-06-30")
		parts.Poller.ModelsInterval = time.Millisecond
		Eventually(func(g Gomega) {
			_, err := parts.Poller.PollOnce(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			var l togetherv1.TogetherModelMigrationList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
			g.Expect(l.Items).To(HaveLen(1))
			g.Expect(l.Items[0].Spec.ReplacementModel).To(Equal("org/successor"))
		}).Should(Succeed(), "waiting for the poller to create the migration")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "uses-retiring"}, dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Env[0].Value).To(Equal("org/successor"))
		}).WithTimeout(20*time.Second).Should(Succeed(), "waiting for the Deployment to be migrated")
	})
})

var _ = Describe("Referenced objects are watched, not polled on a timer", func() {
	It("submits a batch as soon as its missing input ConfigMap is created", func() {
		ns := newNamespace()
		tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "waits"},
			Spec: togetherv1.TogetherBatchSpec{Model: "m",
				Input: &togetherv1.BatchInput{ConfigMapRef: &togetherv1.ConfigMapKeyRef{Name: "later", Key: "requests.jsonl"}}}}
		Expect(k8s.Create(ctx, tb)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tb), tb)).To(Succeed())
			c := apimeta.FindStatusCondition(tb.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonInputNotFound))
		}).Should(Succeed(), "the batch should report its missing ConfigMap")

		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
			Data: map[string]string{"requests.jsonl": `{"custom_id":"a","body":{"messages":[{"role":"user","content":"x"}]}}` + "\n"}})).To(Succeed())
		// Well under the minute the removed recheck timer waited: only the
		// ConfigMap watch can wake the batch this soon.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tb), tb)).To(Succeed())
			g.Expect(tb.Status.BatchID).NotTo(BeEmpty())
		}).WithTimeout(20*time.Second).Should(Succeed(), "creating the input ConfigMap should wake the batch through the watch")
	})
})
