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
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
	"github.com/together-operator/together-operator/internal/webhook"
)

// These specs are issue 13's scenarios, played by a tenant: a user who may
// create the operator's resources (and ConfigMaps and Secrets) in one
// namespace and nothing else, against the manager running with exactly
// config/rbac's permissions. Each ends in a clear condition or Event, with no
// effect outside the tenant's namespace and remote work.
var _ = Describe("A tenant in a shared cluster", func() {
	var (
		ns     string
		tenant client.Client
	)

	BeforeEach(func() {
		ns = newNamespace()
		cfg, err := testenv.AsTenant(ctx, adminCfg, k8s, ns, "tenant-of-"+ns)
		Expect(err).NotTo(HaveOccurred())
		tenant, err = client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
	})

	warnings := func(g Gomega, reason string) []string {
		var l eventsv1.EventList
		g.Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range l.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason {
				out = append(out, e.Note)
			}
		}
		return out
	}

	It("holds only the namespace-scoped rights the tenant role grants", func() {
		other := newNamespace()
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "elsewhere"},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-x"}}
		Expect(apierrors.IsForbidden(tenant.Create(ctx, ft))).To(BeTrue(), "another namespace is out of reach")
		dep := deployment(ns, "app", "org/model")
		Expect(k8s.Create(ctx, dep)).To(Succeed())
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`))
		Expect(apierrors.IsForbidden(tenant.Patch(ctx, dep, patch))).To(BeTrue(), "the tenant may not edit workloads")
	})

	It("cannot make a migration rewrite a URL or a command, nor reach workloads that did not opt in (scenario 2)", func() {
		for _, bad := range [][2]string{{"https://api.together.xyz/v1", "https://attacker.example/v1"}, {"python", "sh"}} {
			m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "evil-"},
				Spec: togetherv1.TogetherModelMigrationSpec{ModelID: bad[0], ReplacementModel: bad[1], Strategy: togetherv1.MigrationImmediate}}
			err := tenant.Create(ctx, m)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "modelID %q: %v", bad[0], err)
			Expect(err.Error()).To(ContainSubstring("spec.modelID"))
		}

		// A workload whose base URL, command and model variable all hold
		// "org/old", and one that never opted in.
		optedIn := deployment(ns, "opted-in", "org/old")
		optedIn.Labels = map[string]string{togetherv1.MigrateOptInLabel: "true"}
		c := &optedIn.Spec.Template.Spec.Containers[0]
		c.Command = []string{"org/old"}
		c.Env = append(c.Env, corev1.EnvVar{Name: "TOGETHER_BASE_URL", Value: "org/old"})
		Expect(k8s.Create(ctx, optedIn)).To(Succeed())
		bystander := deployment(ns, "bystander", "org/old")
		Expect(k8s.Create(ctx, bystander)).To(Succeed())

		m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "move"},
			Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "org/old", ReplacementModel: "org/new", Strategy: togetherv1.MigrationImmediate}}
		Expect(tenant.Create(ctx, m)).To(Succeed())
		Eventually(readyAndObserved(m, func() []metav1.Condition { return m.Status.Conditions })).Should(Succeed(), "waiting for the migration to be Ready for its generation")

		got := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(optedIn), got)).To(Succeed())
		gc := got.Spec.Template.Spec.Containers[0]
		Expect(gc.Env).To(ConsistOf(
			corev1.EnvVar{Name: "TOGETHER_MODEL", Value: "org/new"},
			corev1.EnvVar{Name: "TOGETHER_BASE_URL", Value: "org/old"}), "only the model variable moves")
		Expect(gc.Command).To(Equal([]string{"org/old"}), "a command is never rewritten")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(bystander), got)).To(Succeed())
		Expect(got.ResourceVersion).To(Equal(bystander.ResourceVersion), "no selector and no opt-in label: untouched")
	})

	It("cannot have another team's job cancelled by adopting and deleting it (scenario 1)", func() {
		// The other team's job keeps training for as long as the spec runs:
		// the scenario is a delete while it runs, and a job that finished
		// on its own would not be cancelled anyway.
		sim.AddFineTune(togethersim.FineTune{ID: "ft-other-team", Model: "org/base", Status: "running",
			Outcome: &togethersim.FineTuneOutcome{Stall: true}})
		By("asking for Cancel on an adopted job: the API server refuses it")
		cancelling := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grab-cancel"},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-other-team", DeletionPolicy: togetherv1.DeletionPolicyCancel}}
		err := tenant.Create(ctx, cancelling)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "Cancel with spec.jobID: %v", err)
		Expect(err.Error()).To(ContainSubstring("cannot apply to an adopted job"))
		batchCancelling := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grab-cancel"},
			Spec: togetherv1.TogetherBatchSpec{BatchID: "batch-other-team", DeletionPolicy: togetherv1.DeletionPolicyCancel}}
		err = tenant.Create(ctx, batchCancelling)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "Cancel with spec.batchID: %v", err)
		Expect(err.Error()).To(ContainSubstring("cannot apply to an adopted batch"))

		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grab"},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-other-team"}}
		Expect(tenant.Create(ctx, ft)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
			g.Expect(ft.Finalizers).To(ContainElement(togetherv1.FinalizerName))
		}).Should(Succeed(), "waiting for the adopted job to be followed (Running) under the finalizer")
		Expect(ft.Spec.DeletionPolicy).To(BeEmpty(), "no CRD default")
		Expect(ft.Status.DeletionPolicy).To(Equal(togetherv1.DeletionPolicyRetain), "the effective policy of adopted work, shown in status")
		Expect(tenant.Delete(ctx, ft)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ft), &togetherv1.TogetherFineTune{}))
		}).Should(BeTrue(), "waiting for the fine-tune to be deleted")
		Expect(sim.CountCalls("POST", "/v1/fine-tunes/ft-other-team/cancel")).To(BeZero())
	})

	It("adopts through a push only the work the operator created for its namespace, not another team's on the same account (scenario 1)", func() {
		// Both namespaces run on the operator-wide key: one account, where
		// only the namespace tag tells their work apart.
		other := newNamespace()
		sim.SetFineTuneScript(func(r togethersim.FineTuneRequest) bool { return r.Model == "org/keeps-running" }, togethersim.FineTuneOutcome{Stall: true})
		submit := func(namespace, name string, policy togetherv1.DeletionPolicy) *togetherv1.TogetherFineTune {
			Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-data"},
				Data: map[string]string{"train.jsonl": `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}` + "\n"}})).To(Succeed())
			ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
				Spec: togetherv1.TogetherFineTuneSpec{DeletionPolicy: policy, Training: &togetherv1.TrainingSpec{Model: "org/keeps-running",
					TrainingData: &togetherv1.ConfigMapKeyRef{Name: name + "-data", Key: "train.jsonl"}}}}
			Expect(k8s.Create(ctx, ft)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
				g.Expect(ft.Status.JobID).NotTo(BeEmpty())
			}).Should(Succeed(), "waiting for %s/%s to submit its job", namespace, name)
			return ft
		}
		theirs := submit(other, "their-job", "")
		mine := submit(ns, "my-job", togetherv1.DeletionPolicyRetain)
		// The resource goes; its job, retained, keeps running unfollowed.
		Expect(k8s.Delete(ctx, mine)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(mine), &togetherv1.TogetherFineTune{}))
		}).Should(BeTrue(), "waiting for the fine-tune to be deleted")

		createSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		path := webhook.PathFor(ns, "adopter")
		checkpoint := func(id, job string) []byte {
			b, err := json.Marshal(map[string]any{"id": id, "type": "fine_tune.checkpoint", "created_at": time.Now().UTC().Format(time.RFC3339),
				"data": map[string]any{"fine_tune_id": job, "step": 1, "loss": 1.0}})
			Expect(err).NotTo(HaveOccurred())
			return b
		}
		Eventually(func() int { return post(path, checkpoint("theirs-"+ns, theirs.Status.JobID)) }).Should(Equal(http.StatusAccepted),
			"another namespace's job is answered unmatched (once the subscription is served)")
		var fts togetherv1.TogetherFineTuneList
		Expect(k8s.List(ctx, &fts, client.InNamespace(ns))).To(Succeed())
		Expect(fts.Items).To(BeEmpty(), "nothing adopted from another namespace")

		Expect(post(path, checkpoint("mine-"+ns, mine.Status.JobID))).To(Equal(http.StatusOK))
		Expect(k8s.List(ctx, &fts, client.InNamespace(ns))).To(Succeed())
		Expect(fts.Items).To(HaveLen(1))
		Expect(fts.Items[0].Spec.JobID).To(Equal(mine.Status.JobID), "this namespace's own job is adopted")
		Eventually(func(g Gomega) {
			ft := &togetherv1.TogetherFineTune{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&fts.Items[0]), ft)).To(Succeed())
			g.Expect(ft.Status.DeletionPolicy).To(Equal(togetherv1.DeletionPolicyRetain))
		}).Should(Succeed(), "waiting for the adopted fine-tune to show that it is retained")

		var evs eventsv1.EventList
		Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		for _, e := range evs.Items {
			Expect(e.Note).NotTo(ContainSubstring(theirs.Status.JobID), "an Event in this namespace names another team's job")
		}
	})

	It("gets a fetch Job without a token, as a role-less account, on a claim that opted in only (scenario 3)", func() {
		in := sim.AddFile("in.jsonl", "batch-api", []byte(`{"custom_id":"a","body":{"messages":[{"role":"user","content":"x"}]}}`+"\n"))
		out := sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		id := "batch-" + ns
		sim.AddBatch(togethersim.Batch{ID: id, InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: out.ID})
		// The namespace's own key: the batch acts with it, and so does its
		// fetch Job.
		Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.DefaultSecretName},
			StringData: map[string]string{credentials.APIKeyKey: simKey}})).To(Succeed())
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team-data"},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "results"},
			Spec: togetherv1.TogetherBatchSpec{BatchID: id, Output: &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{
				ClaimName: "team-data"}}}}
		Expect(tenant.Create(ctx, tb)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tb), tb)).To(Succeed())
			c := apimeta.FindStatusCondition(tb.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal("ClaimNotOptedIn"), c.Message)
		}).Should(Succeed(), "waiting for the batch to stall with ClaimNotOptedIn")
		job := &batchv1.Job{}
		Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "results-fetch"}, job))).To(BeTrue())

		By("the claim's owner opting it in")
		claim.Annotations = map[string]string{togetherv1.BatchOutputOptInAnnotation: "true"}
		Expect(k8s.Update(ctx, claim)).To(Succeed())
		// Nothing touches the batch and it asked for no requeue: the claim's
		// metadata watch wakes it.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "results-fetch"}, job)).To(Succeed())
		}).Should(Succeed(), "waiting for the fetch Job to be created once the claim opted in")
		pod := job.Spec.Template.Spec
		Expect(pod.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name).To(Equal(credentials.DefaultSecretName), "the key of the batch's own account")
		Expect(pod.AutomountServiceAccountToken).To(Equal(ptr.To(false)))
		Expect(pod.ServiceAccountName).To(Equal(togetherv1.FetchServiceAccount))
		sa := &corev1.ServiceAccount{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: togetherv1.FetchServiceAccount}, sa)).To(Succeed())
		Expect(sa.AutomountServiceAccountToken).To(Equal(ptr.To(false)))
	})

	It("never gets the operator-wide key into its namespace through a fetch Job: PVC output needs its own key Secret (scenario 3)", func() {
		// ns may use the operator-wide key and has no Secret of its own.
		in := sim.AddFile("in.jsonl", "batch-api", []byte(`{"custom_id":"a","body":{"messages":[{"role":"user","content":"x"}]}}`+"\n"))
		out := sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		id := "batch-shared-" + ns
		sim.AddBatch(togethersim.Batch{ID: id, InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: out.ID})
		Expect(k8s.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team-data", Annotations: map[string]string{togetherv1.BatchOutputOptInAnnotation: "true"}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		})).To(Succeed())
		tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "results"},
			Spec: togetherv1.TogetherBatchSpec{BatchID: id, Output: &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "team-data"}}}}
		Expect(tenant.Create(ctx, tb)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tb), tb)).To(Succeed())
			c := apimeta.FindStatusCondition(tb.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonOutputNeedsNamespaceKey), c.Message)
			g.Expect(c.Message).To(ContainSubstring("kubectl -n " + ns + " create secret generic together-api-key"))
		}).Should(Succeed(), "waiting for the batch to say its PVC output needs the namespace's own key")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "results-fetch"}, &batchv1.Job{}))).To(BeTrue(), "no fetch Job")
		var secrets corev1.SecretList
		Expect(k8s.List(ctx, &secrets, client.InNamespace(ns))).To(Succeed())
		for _, sec := range secrets.Items {
			for k, v := range sec.Data {
				Expect(string(v)).NotTo(Equal(simKey), "Secret %s key %s holds the operator-wide key", sec.Name, k)
			}
		}
	})

	It("can always delete a fine-tune, even when Together refuses the cleanup (scenario 4)", func() {
		Expect(tenant.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "data"},
			Data: map[string]string{"train.jsonl": `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}` + "\n"}})).To(Succeed())
		// A job that keeps running, so that deleting the resource must cancel it.
		sim.SetFineTuneScript(func(r togethersim.FineTuneRequest) bool { return r.Model == "org/long-running" }, togethersim.FineTuneOutcome{Stall: true})
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stuck"},
			Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "org/long-running",
				TrainingData: &togetherv1.ConfigMapKeyRef{Name: "data", Key: "train.jsonl"}}}}
		Expect(tenant.Create(ctx, ft)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
			g.Expect(ft.Status.JobID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the fine-tune to have submitted its job")
		sim.Faults().SetRoute("POST", "/v1/fine-tunes/"+ft.Status.JobID+"/cancel", togethersim.RouteFault{Status: 403})
		DeferCleanup(sim.Faults().ClearRoutes)

		Expect(tenant.Delete(ctx, ft)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ft), &togetherv1.TogetherFineTune{}))
		}).Should(BeTrue(), "the finalizer let go")
		Eventually(func(g Gomega) {
			g.Expect(warnings(g, togetherv1.ReasonCleanupUnauthorized)).To(ConsistOf(ContainSubstring("HTTP 403")))
		}).Should(Succeed(), "waiting for the Warning Event that says the cleanup was skipped on 403")
	})

	It("keeps other teams' Jobs out of the manager's cache (scenario 5)", func() {
		job := func(name string, labels map[string]string) *batchv1.Job {
			return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "c", Image: "example.com/ci"}}}}}}
		}
		for i := range 3 {
			Expect(k8s.Create(ctx, job(fmt.Sprintf("ci-%d", i), nil))).To(Succeed())
		}
		// Created last: once the cache holds it, it has seen the others.
		Expect(k8s.Create(ctx, job("ours", map[string]string{togetherv1.ManagedByLabel: togetherv1.ManagedByValue}))).To(Succeed())
		Eventually(func(g Gomega) {
			var l batchv1.JobList
			g.Expect(mgr.GetCache().List(ctx, &l, client.InNamespace(ns))).To(Succeed())
			var names []string
			for _, j := range l.Items {
				names = append(names, j.Name)
			}
			g.Expect(names).To(Equal([]string{"ours"}))
		}).Should(Succeed(), "waiting for the subscription to record the earlier registration's ID")
	})

	It("registers a webhook once, even after a lost status write, and leaves no orphan behind (scenario 6)", func() {
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: simKey})
		Expect(err).NotTo(HaveOccurred())
		url := eventsURL + webhook.PathFor(ns, "once")
		// What a reconcile that registered and then lost its status write
		// leaves behind.
		earlier, err := api.CreateWebhook(ctx, together.WebhookRequest{URL: url, Events: []string{"batch.done"}, Secret: "old"})
		Expect(err).NotTo(HaveOccurred())

		sub := createSubscription(ns, "once", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Register = true
			s.Spec.URL = url
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(sub.Status.RemoteID).To(Equal(earlier.ID), "the earlier registration is found, not duplicated")
		}).Should(Succeed(), "waiting for the manager's cache to hold only the labelled Job")
		registered := func() []string {
			hooks, err := api.ListWebhooks(ctx)
			Expect(err).NotTo(HaveOccurred())
			var ids []string
			for _, h := range hooks {
				if h.URL == url {
					ids = append(ids, h.ID)
				}
			}
			return ids
		}
		Expect(registered()).To(Equal([]string{earlier.ID}))

		Expect(k8s.Delete(ctx, sub)).To(Succeed())
		Eventually(registered).Should(BeEmpty(), "no registration keeps pushing after the subscription is gone")
	})

	Context("with no key of its own", func() {
		BeforeEach(func() {
			// A namespace no administrator allowed the operator-wide key.
			ns = newNamespaceLabelled(nil)
			cfg, err := testenv.AsTenant(ctx, adminCfg, k8s, ns, "tenant-of-"+ns)
			Expect(err).NotTo(HaveOccurred())
			tenant, err = client.New(cfg, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
		})

		fineTune := func(name string) *togetherv1.TogetherFineTune {
			ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-" + ns + "-" + name}}
			// A job that keeps running: the specs look for Running after
			// a key is fixed, which a job that finished meanwhile skips.
			sim.AddFineTune(togethersim.FineTune{ID: ft.Spec.JobID, Model: "org/base", Status: "running",
				Outcome: &togethersim.FineTuneOutcome{Stall: true}})
			Expect(tenant.Create(ctx, ft)).To(Succeed())
			return ft
		}
		stalled := func(ft *togetherv1.TogetherFineTune, reason string) func(Gomega) string {
			return func(g Gomega) string {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
				c := apimeta.FindStatusCondition(ft.Status.Conditions, togetherv1.StalledCondition)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Reason).To(Equal(reason), c.Message)
				return c.Message
			}
		}

		It("does not run on the operator-wide key; it says which Secret to create", func() {
			ft := fineTune("nokey")
			var msg string
			Eventually(func(g Gomega) { msg = stalled(ft, togetherv1.ReasonNoCredentials)(g) }).Should(Succeed(), "waiting for the fine-tune to stall with NoCredentials")
			Expect(msg).To(ContainSubstring("kubectl -n " + ns + " create secret generic together-api-key"))
			Expect(msg).NotTo(ContainSubstring(simKey))
			Expect(ft.Status.Phase).To(BeEmpty(), "nothing was read from Together with the operator's key")
		})

		It("runs under its own Secret, and a rotated key takes effect without a restart", func() {
			Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.DefaultSecretName},
				StringData: map[string]string{credentials.APIKeyKey: "revoked-key"}})).To(Succeed())
			ft := fineTune("ownkey")
			var msg string
			Eventually(func(g Gomega) { msg = stalled(ft, togetherv1.ReasonUnauthorized)(g) }).Should(Succeed(), "waiting for the fine-tune to stall with Unauthorized on the namespace's revoked key")
			Expect(msg).To(ContainSubstring("Secret " + ns + "/" + credentials.DefaultSecretName))
			Expect(msg).NotTo(ContainSubstring("revoked-key"))

			By("rotating the key in the namespace's Secret")
			sec := &corev1.Secret{}
			Expect(tenant.Get(ctx, types.NamespacedName{Namespace: ns, Name: credentials.DefaultSecretName}, sec)).To(Succeed())
			sec.Data = map[string][]byte{credentials.APIKeyKey: []byte(simKey)}
			Expect(tenant.Update(ctx, sec)).To(Succeed())
			// Nothing else moves the fine-tune: a rejected key looks again
			// only after 5 minutes, so it is the Secret watch that wakes it.
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
				g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
				g.Expect(apimeta.FindStatusCondition(ft.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
			}).Should(Succeed(), "waiting for the fine-tune to run on the rotated key")
		})

		// running: the job was read from Together (the simulator may have
		// finished it already) and nothing stalls.
		running := func(ft *togetherv1.TogetherFineTune) func(Gomega) {
			return func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ft), ft)).To(Succeed())
				g.Expect(ft.Status.Phase).To(BeElementOf(togetherv1.FineTuneRunning, togetherv1.FineTuneSucceeded))
				g.Expect(apimeta.FindStatusCondition(ft.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
			}
		}

		It("runs as soon as the namespace's Secret is created: the Secret watch wakes it, no recheck timer", func() {
			ft := fineTune("latekey")
			Eventually(func(g Gomega) { stalled(ft, togetherv1.ReasonNoCredentials)(g) }).Should(Succeed(), "waiting for the fine-tune to stall with NoCredentials")
			Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.DefaultSecretName},
				StringData: map[string]string{credentials.APIKeyKey: simKey}})).To(Succeed())
			// The spec's wait (15 s) is shorter than the 30 s recheck this
			// replaced, and nothing else touches the fine-tune.
			Eventually(running(ft)).Should(Succeed(), "waiting for the fine-tune to run once its namespace's Secret exists")
		})

		It("runs as soon as an administrator allows the namespace the operator-wide key", func() {
			ft := fineTune("allowed")
			Eventually(func(g Gomega) { stalled(ft, togetherv1.ReasonNoCredentials)(g) }).Should(Succeed(), "waiting for the fine-tune to stall with NoCredentials")
			nsObj := &corev1.Namespace{}
			Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, nsObj)).To(Succeed())
			nsObj.Labels = map[string]string{credentials.SharedKeyLabel: "true"}
			Expect(k8s.Update(ctx, nsObj)).To(Succeed())
			Eventually(running(ft)).Should(Succeed(), "waiting for the fine-tune to run on the operator-wide key once its namespace is labelled")
		})

		It("can still be deleted while it has no key (the finalizer lets go)", func() {
			ft := fineTune("gone")
			Eventually(func(g Gomega) { stalled(ft, togetherv1.ReasonNoCredentials)(g) }).Should(Succeed(), "waiting for the fine-tune to stall with NoCredentials")
			Expect(tenant.Delete(ctx, ft)).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ft), &togetherv1.TogetherFineTune{}))
			}).Should(BeTrue(), "waiting for the fine-tune to be deleted without a key")
		})

		It("a migration waits for the namespace's key to check its replacement, changing nothing, and moves once the Secret exists", func() {
			dep := deployment(ns, "app", "org/old")
			dep.Labels = map[string]string{togetherv1.MigrateOptInLabel: "true"}
			Expect(k8s.Create(ctx, dep)).To(Succeed())
			m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "move"},
				Spec: togetherv1.TogetherModelMigrationSpec{ModelID: "org/old", ReplacementModel: "org/new", Strategy: togetherv1.MigrationImmediate}}
			Expect(tenant.Create(ctx, m)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
				c := apimeta.FindStatusCondition(m.Status.Conditions, togetherv1.StalledCondition)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Reason).To(Equal(togetherv1.ReasonNoCredentials), c.Message)
				g.Expect(c.Message).To(ContainSubstring("spec.skipCatalogCheck"))
			}).Should(Succeed(), "waiting for the migration to stall with NoCredentials")
			got := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), got)).To(Succeed())
			Expect(got.ResourceVersion).To(Equal(dep.ResourceVersion), "nothing is patched before the check")

			By("creating the namespace's key Secret: the Secret watch wakes the migration (a stalled migration has no timer)")
			Expect(tenant.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.DefaultSecretName},
				StringData: map[string]string{credentials.APIKeyKey: simKey}})).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), got)).To(Succeed())
				g.Expect(got.Spec.Template.Spec.Containers[0].Env[0].Value).To(Equal("org/new"))
			}).Should(Succeed(), "waiting for the migration to move the workload once the namespace has a key")
		})
	})
})
