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
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/togethersim"
	"github.com/together-operator/together-operator/internal/webhook"
)

// These specs are a tenant naming its own credentials Secret
// (spec.apiKeySecretRef) in a namespace no administrator allowed the
// operator-wide key, against the manager under config/rbac's role. The
// simulator keeps one account per key (AddAccount): a job of one account is
// unknown to the others, and its call counts say which key made each call,
// so every spec checks at the simulator which account was used.
var _ = Describe("A resource naming its API key Secret", func() {
	var (
		ns           string
		tenant       client.Client
		keyA, keyB   string
		jobA, jobB   string
		refA, refB   *togetherv1.APIKeySecretRef
		refAbsent    *togetherv1.APIKeySecretRef
		createSecret func(name, key, value string)
	)

	BeforeEach(func() {
		ns = newNamespaceLabelled(nil)
		cfg, err := testenv.AsTenant(ctx, adminCfg, k8s, ns, "tenant-of-"+ns)
		Expect(err).NotTo(HaveOccurred())
		tenant, err = client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		keyA, keyB = "key-a-"+ns, "key-b-"+ns
		sim.AddAccount(keyA)
		sim.AddAccount(keyB)
		jobA = sim.AddFineTune(togethersim.FineTune{ID: "ft-a-" + ns, Model: "org/base", Status: "running", Account: keyA,
			Outcome: &togethersim.FineTuneOutcome{Stall: true}})
		jobB = sim.AddFineTune(togethersim.FineTune{ID: "ft-b-" + ns, Model: "org/base", Status: "running", Account: keyB,
			Outcome: &togethersim.FineTuneOutcome{Stall: true}})
		createSecret = func(name, key, value string) {
			Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				StringData: map[string]string{key: value}})).To(Succeed())
		}
		createSecret("team-a", credentials.APIKeyKey, keyA)
		createSecret("team-b", "token", keyB)
		refA = &togetherv1.APIKeySecretRef{Name: "team-a"}
		refB = &togetherv1.APIKeySecretRef{Name: "team-b", Key: "token"}
		refAbsent = &togetherv1.APIKeySecretRef{Name: "absent"}
	})

	// gone deletes a resource once the spec ends, so that the jobs its
	// accounts follow do not add list calls to other specs' poll cycles.
	gone := func(obj client.Object) {
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }).
				Should(BeTrue(), "waiting for %s to be deleted after the spec", obj.GetName())
		})
	}
	adopt := func(name, job string, ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherFineTune {
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: job, APIKeySecretRef: ref}}
		Expect(tenant.Create(ctx, ft)).To(Succeed())
		gone(ft)
		return ft
	}
	condition := func(ft *togetherv1.TogetherFineTune, typ string) func(Gomega) *metav1.Condition {
		return func(g Gomega) *metav1.Condition {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			c := apimeta.FindStatusCondition(ft.Status.Conditions, typ)
			g.Expect(c).NotTo(BeNil(), "no %s condition yet", typ)
			return c
		}
	}
	running := func(ft *togetherv1.TogetherFineTune) func(Gomega) {
		return func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
		}
	}

	It("runs under the key its Secret holds, and sees only that account's jobs", func() {
		ftA := adopt("on-a", jobA, refA)
		ftB := adopt("on-b", jobB, refB)
		// Another account's job: the key it names cannot see it.
		wrong := adopt("a-job-on-b", jobA, refB)

		Eventually(func(g Gomega) {
			c := condition(wrong, togetherv1.StalledCondition)(g)
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonJobNotFound), c.Message)
		}).Should(Succeed(), "waiting for the fine-tune naming team-b's Secret to find no job %s on that account", jobA)
		_, err := parts.Poller.PollOnce(ctx)
		Expect(err).NotTo(HaveOccurred())
		Eventually(running(ftA)).Should(Succeed(), "waiting for the fine-tune naming team-a's Secret to follow its account's job")
		Eventually(running(ftB)).Should(Succeed(), "waiting for the fine-tune naming team-b's Secret (key token) to follow its account's job")

		Expect(sim.CountCallsAs(keyA, "GET", "/v1/fine-tunes/"+jobA)).To(BeNumerically(">", 0), "team-a's job was read with team-a's key")
		Expect(sim.CountCallsAs(keyB, "GET", "/v1/fine-tunes/"+jobB)).To(BeNumerically(">", 0), "team-b's job was read with team-b's key")
		Expect(sim.CountCallsAs("", "GET", "/v1/fine-tunes/"+jobA)).To(BeZero(), "nothing ran on the operator-wide key")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(wrong), wrong)).To(Succeed())
		Expect(wrong.Status.Phase).To(BeEmpty(), "the poller did not give team-b's resource team-a's job")
	})

	It("reads an unchanged key from the API server once, however often its resource is reconciled", func() {
		ft := adopt("steady", jobA, refA)
		_, err := parts.Poller.PollOnce(ctx)
		Expect(err).NotTo(HaveOccurred())
		Eventually(running(ft)).Should(Succeed(), "waiting for the fine-tune naming team-a's Secret to follow its job")
		live, _ := secretReads.of(ns, "team-a")
		Expect(live).To(BeNumerically(">=", 1), "the key was read")
		// reads is every look at the Secret, live or cached: one or more per
		// resolution of the fine-tune's account.
		reads := func() int {
			l, c := secretReads.of(ns, "team-a")
			return l + c
		}

		// Each annotation is an update of the fine-tune, so a reconcile,
		// which resolves the account again.
		for i := range 10 {
			before := reads()
			Expect(k8s.Patch(ctx, ft, client.RawPatch(types.MergePatchType,
				fmt.Appendf(nil, `{"metadata":{"annotations":{"test.together.ai/nudge":"%d"}}}`, i)))).To(Succeed())
			Eventually(reads).Should(BeNumerically(">", before), "waiting for reconcile %d to resolve the fine-tune's account", i)
		}
		after, _ := secretReads.of(ns, "team-a")
		Expect(after).To(Equal(live), "reconciles on an unchanged Secret read it again from the API server")
		Expect(sim.CountCallsAs("", "GET", "/v1/fine-tunes/"+jobA)).To(BeZero(), "nothing ran on the operator-wide key")
	})

	It("stalls naming a missing Secret or key, calls nothing, and runs once the Secret is right", func() {
		// The namespace default exists: a named Secret never falls back to it.
		createSecret(credentials.DefaultSecretName, credentials.APIKeyKey, keyB)
		ft := adopt("absent", jobA, refAbsent)
		Eventually(func(g Gomega) {
			c := condition(ft, togetherv1.StalledCondition)(g)
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound), c.Message)
			g.Expect(c.Message).To(ContainSubstring("Secret " + ns + "/absent does not exist"))
			g.Expect(c.Message).To(ContainSubstring("kubectl -n " + ns + " create secret generic absent --from-literal=api-key="))
		}).Should(Succeed(), "waiting for the fine-tune to stall naming the Secret to create")

		By("creating the Secret without the key")
		// Nothing touches the fine-tune: the Secret watch (indexed by
		// spec.apiKeySecretRef) wakes it.
		createSecret("absent", "wrong-key", keyA)
		var msg string
		Eventually(func(g Gomega) {
			c := condition(ft, togetherv1.StalledCondition)(g)
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound), c.Message)
			g.Expect(c.Message).To(ContainSubstring(`Secret ` + ns + `/absent has no key "api-key"`))
			msg = c.Message
		}).Should(Succeed(), "waiting for the fine-tune to stall naming the missing key")
		for _, k := range []string{keyA, keyB, simKey} {
			Expect(msg).NotTo(ContainSubstring(k))
		}
		Expect(sim.CountCalls("GET", "/v1/fine-tunes/"+jobA)).To(BeZero(), "nothing was asked of Together for the stalled resource")

		By("putting the key where the resource looks")
		sec := &corev1.Secret{}
		Expect(tenant.Get(ctx, client.ObjectKey{Namespace: ns, Name: "absent"}, sec)).To(Succeed())
		sec.Data = map[string][]byte{credentials.APIKeyKey: []byte(keyA)}
		Expect(tenant.Update(ctx, sec)).To(Succeed())
		Eventually(func(g Gomega) {
			running(ft)(g)
			g.Expect(apimeta.FindStatusCondition(ft.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
		}).Should(Succeed(), "waiting for the fine-tune to run on the key now in its Secret, without a restart")
		Expect(sim.CountCallsAs(keyA, "GET", "/v1/fine-tunes/"+jobA)).To(BeNumerically(">", 0))
	})

	It("submits, and cancels on delete, with its own key", func() {
		Expect(tenant.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "data"},
			Data: map[string]string{"train.jsonl": `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}` + "\n"}})).To(Succeed())
		sim.SetFineTuneScript(func(r togethersim.FineTuneRequest) bool { return r.Model == "org/creds-long-running" }, togethersim.FineTuneOutcome{Stall: true})
		posts := sim.CountCallsAs(keyB, "POST", "/v1/fine-tunes")
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"},
			Spec: togetherv1.TogetherFineTuneSpec{APIKeySecretRef: refB, Training: &togetherv1.TrainingSpec{Model: "org/creds-long-running",
				TrainingData: &togetherv1.ConfigMapKeyRef{Name: "data", Key: "train.jsonl"}}}}
		Expect(tenant.Create(ctx, ft)).To(Succeed())
		gone(ft)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.JobID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the fine-tune to submit its job")
		Expect(sim.CountCallsAs(keyB, "POST", "/v1/fine-tunes")-posts).To(Equal(1), "the job was created on team-b's account")

		Expect(tenant.Delete(ctx, ft)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ft), &togetherv1.TogetherFineTune{}))
		}).Should(BeTrue(), "waiting for the fine-tune to be deleted")
		Expect(sim.CountCallsAs(keyB, "POST", "/v1/fine-tunes/"+ft.Status.JobID+"/cancel")).To(Equal(1), "the job was cancelled with the key that created it")
	})

	It("checks a migration's replacement model with the key its Secret holds", func() {
		migration := func(name string, ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherModelMigration {
			m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "org/old-model", ReplacementModel: "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, APIKeySecretRef: ref}}
			Expect(tenant.Create(ctx, m)).To(Succeed())
			gone(m)
			return m
		}
		lists := sim.CountCallsAs(keyB, "GET", "/v1/models")
		onB := migration("on-b", refB)
		missing := migration("absent", refAbsent)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(onB), onB)).To(Succeed())
			g.Expect(apimeta.FindStatusCondition(onB.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
			g.Expect(onB.Status.ObservedGeneration).To(Equal(onB.Generation))
		}).Should(Succeed(), "waiting for the migration naming team-b's Secret to pass its catalogue check")
		Expect(sim.CountCallsAs(keyB, "GET", "/v1/models")).To(BeNumerically(">", lists), "the model list was read with team-b's key")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(missing), missing)).To(Succeed())
			c := apimeta.FindStatusCondition(missing.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound), c.Message)
			g.Expect(c.Message).To(ContainSubstring("Secret " + ns + "/absent does not exist"))
		}).Should(Succeed(), "waiting for the migration naming a missing Secret to stall naming it")
	})

	It("registers a subscription's webhook on the account its Secret names", func() {
		url := eventsURL + webhook.PathFor(ns, "hooks")
		sub := createSubscription(ns, "hooks", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register, s.Spec.URL, s.Spec.APIKeySecretRef = true, url, refB
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(sub.Status.RemoteID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the subscription to register")
		Expect(sim.CountCallsAs(keyB, "POST", "/v1/webhooks")).To(Equal(1), "registered with team-b's key")
		Expect(k8s.Delete(ctx, sub)).To(Succeed())
		Eventually(func() int { return sim.CountCallsAs(keyB, "DELETE", "/v1/webhooks/"+sub.Status.RemoteID) }).Should(Equal(1),
			"waiting for the registration to be removed with the same key")
	})
})

var _ = Describe("The poller, with resources on several accounts", func() {
	It("lists once per account per cycle, not once per resource or Secret", func() {
		ns := newNamespaceLabelled(nil)
		cfg, err := testenv.AsTenant(ctx, adminCfg, k8s, ns, "tenant-of-"+ns)
		Expect(err).NotTo(HaveOccurred())
		tenant, err := client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		keyA, keyB := "poll-a-"+ns, "poll-b-"+ns
		sim.AddAccount(keyA)
		sim.AddAccount(keyB)
		// Two Secrets holding the same key are one account.
		for name, key := range map[string]string{"team-a": keyA, "team-a-copy": keyA, "team-b": keyB} {
			Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				StringData: map[string]string{credentials.APIKeyKey: key}})).To(Succeed())
		}
		var objs []client.Object
		for i, secret := range []string{"team-a", "team-a", "team-a-copy", "team-b", "team-b"} {
			key := keyA
			if secret == "team-b" {
				key = keyB
			}
			job := sim.AddFineTune(togethersim.FineTune{ID: fmt.Sprintf("ft-poll-%s-%d", ns, i), Model: "org/base", Status: "running", Account: key,
				Outcome: &togethersim.FineTuneOutcome{Stall: true}})
			objs = append(objs, &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ft-%d", i)},
				Spec: togetherv1.TogetherFineTuneSpec{JobID: job, APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: secret}}})
		}
		batch := sim.AddBatch(togethersim.Batch{Status: "IN_PROGRESS", Account: keyB, Endpoint: "/v1/chat/completions", ModelID: "org/base",
			Outcome: &togethersim.BatchOutcome{Stall: true}})
		objs = append(objs, &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "batch"},
			Spec: togetherv1.TogetherBatchSpec{BatchID: batch, APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: "team-b"}}})
		for _, o := range objs {
			Expect(tenant.Create(ctx, o)).To(Succeed())
			DeferCleanup(func() {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, o))).To(Succeed())
				Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)) }).
					Should(BeTrue(), "waiting for %s to be deleted after the spec", o.GetName())
			})
		}
		Eventually(func(g Gomega) {
			var fts togetherv1.TogetherFineTuneList
			g.Expect(k8s.List(ctx, &fts, client.InNamespace(ns))).To(Succeed())
			g.Expect(fts.Items).To(HaveLen(5))
			for _, ft := range fts.Items {
				g.Expect(ft.Status.JobID).NotTo(BeEmpty(), "%s has not adopted its job", ft.Name)
			}
		}).Should(Succeed(), "waiting for the fine-tunes to adopt their jobs")

		count := func(key, path string) int { return sim.CountCallsAs(key, "GET", path) }
		aFT, bFT, aB, bB := count(keyA, "/v1/fine-tunes"), count(keyB, "/v1/fine-tunes"), count(keyA, "/v1/batches"), count(keyB, "/v1/batches")
		_, err = parts.Poller.PollJobs(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(count(keyA, "/v1/fine-tunes")-aFT).To(Equal(1), "three fine-tunes through two Secrets holding one key: one list call")
		Expect(count(keyB, "/v1/fine-tunes")-bFT).To(Equal(1), "two fine-tunes on team-b's account: one list call")
		Expect(count(keyB, "/v1/batches")-bB).To(Equal(1), "one batch on team-b's account: one list call")
		Expect(count(keyA, "/v1/batches")-aB).To(BeZero(), "no batch on team-a's account: no list call")
		Eventually(func(g Gomega) {
			b := &togetherv1.TogetherBatch{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "batch"}, b)).To(Succeed())
			g.Expect(b.Status.Phase).To(Equal(togetherv1.BatchInProgress))
		}).Should(Succeed(), "waiting for the batch to follow its account's batch")
	})
})

var _ = Describe("A push through a subscription naming its API key Secret", func() {
	It("is applied only to resources on the subscription's account", func() {
		ns := newNamespaceLabelled(nil)
		keyA, keyB := "push-a-"+ns, "push-b-"+ns
		sim.AddAccount(keyA)
		sim.AddAccount(keyB)
		for name, key := range map[string]string{"team-a": keyA, "team-a-copy": keyA, "team-b": keyB} {
			Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				StringData: map[string]string{credentials.APIKeyKey: key}})).To(Succeed())
		}
		follow := func(name, secret, key string) *togetherv1.TogetherFineTune {
			job := sim.AddFineTune(togethersim.FineTune{ID: "ft-push-" + ns + "-" + name, Model: "org/base", Status: "running", Account: key,
				Outcome: &togethersim.FineTuneOutcome{Stall: true}})
			ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: togetherv1.TogetherFineTuneSpec{JobID: job, APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: secret}}}
			Expect(k8s.Create(ctx, ft)).To(Succeed())
			DeferCleanup(func() {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, ft))).To(Succeed())
				Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)) }).
					Should(BeTrue(), "waiting for %s to be deleted after the spec", ft.Name)
			})
			return ft
		}
		onA := follow("on-a", "team-a", keyA)
		// Another Secret holding the same key: the same account.
		onACopy := follow("on-a-copy", "team-a-copy", keyA)
		onB := follow("on-b", "team-b", keyB)
		createSubscription(ns, "hooks", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.APIKeySecretRef = &togetherv1.APIKeySecretRef{Name: "team-a"}
		})

		checkpoint := func(ft *togetherv1.TogetherFineTune, id string) int {
			body, err := json.Marshal(map[string]any{"id": id, "type": "fine_tune.checkpoint",
				"data": map[string]any{"fine_tune_id": ft.Spec.JobID, "step": 1, "loss": 1.5}})
			Expect(err).NotTo(HaveOccurred())
			return post(webhook.PathFor(ns, "hooks"), body)
		}
		processed := func(ft *togetherv1.TogetherFineTune) []string {
			got := &togetherv1.TogetherFineTune{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), got)).To(Succeed())
			return got.Status.ProcessedEvents
		}
		Eventually(func() int { return checkpoint(onA, "push-a-"+ns) }).Should(Equal(http.StatusOK), "waiting for team-a's checkpoint to be applied")
		Expect(processed(onA)).To(ContainElement("push-a-" + ns))
		Expect(checkpoint(onACopy, "push-a-copy-"+ns)).To(Equal(http.StatusOK), "a resource naming another Secret with the same key is on the same account")
		Expect(processed(onACopy)).To(ContainElement("push-a-copy-" + ns))

		Expect(checkpoint(onB, "push-b-"+ns)).To(Equal(http.StatusAccepted), "team-b's job is not the subscription's account's: unmatched")
		Consistently(func() []string { return processed(onB) }).WithTimeout(time.Second).ShouldNot(ContainElement("push-b-"+ns),
			"team-b's resource never records an event pushed for team-a's account")
		Eventually(func(g Gomega) {
			var l eventsv1.EventList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
			var notes []string
			for _, e := range l.Items {
				if e.Reason == togetherv1.ReasonEventForOtherAccount {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ConsistOf(And(ContainSubstring("another Together key than this subscription's"), Not(ContainSubstring(onB.Spec.JobID)))))
		}).Should(Succeed(), "waiting for the Warning Event that says the event was for another account, without naming the job")
	})
})
