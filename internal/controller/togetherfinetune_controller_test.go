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
	"context"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/poller"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

const validJSONL = `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}
{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"2+2"},{"role":"assistant","content":"4"}]}
`

var _ = Describe("FineTune reconciler", func() {
	var (
		sim      *togethersim.Server
		api      *together.Client
		recorder *events.FakeRecorder
		r        *TogetherFineTuneReconciler
		ns       string
		// intakePoller is the spec's poller (see feed).
		intakePoller *poller.Poller
	)

	BeforeEach(func() {
		sim = togethersim.New(togethersim.Options{APIKey: "test-key"})
		_, err := sim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Close)
		api, err = together.New(together.Options{
			BaseURL: sim.URL(), APIKey: "test-key", MaxRetries: -1,
			RateLimit: rate.Inf, Metrics: prometheus.NewRegistry(),
		})
		Expect(err).NotTo(HaveOccurred())
		recorder = events.NewFakeRecorder(200)
		intakePoller = nil
		r = &TogetherFineTuneReconciler{Client: k8sClient, Recorder: recorder, TogetherAccess: TogetherAccess[FineTuneAPI]{API: api}, EndpointPollInterval: 10 * time.Millisecond}
		r.check = fineTuneOwnership.check(ftStatusOf)
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ft-"}}
		Expect(k8sClient.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	// reconcile runs one reconcile of key with r.
	reconcile := func(key types.NamespacedName) (ctrl.Result, error) {
		return r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	}
	get := func(key types.NamespacedName) *togetherv1.TogetherFineTune {
		ft := &togetherv1.TogetherFineTune{}
		ExpectWithOffset(1, k8sClient.Get(ctx, key, ft)).To(Succeed())
		return ft
	}

	// feed runs one cycle of the operator's poller against the simulator,
	// which applies what it finds with the operator's apply step.
	feed := func(types.NamespacedName) error {
		if intakePoller == nil {
			intakePoller = realIntake(ns, api)
		}
		_, err := intakePoller.PollOnce(ctx)
		return err
	}

	// drive advances the simulator, feeds the intake and reconciles until
	// cond holds.
	drive := func(key types.NamespacedName, cond func(g Gomega, ft *togetherv1.TogetherFineTune)) {
		EventuallyWithOffset(1, func(g Gomega) {
			sim.Advance()
			g.Expect(feed(key)).To(Succeed())
			_, _ = reconcile(key) // conflicts with the feed are retried by the next round
			cond(g, get(key))
		}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	}

	condition := func(ft *togetherv1.TogetherFineTune, t string) *metav1.Condition {
		return apimeta.FindStatusCondition(ft.Status.Conditions, t)
	}

	counterValue := func(c *prometheus.CounterVec) float64 {
		m := &dto.Metric{}
		Expect(c.WithLabelValues(ns).Write(m)).To(Succeed())
		return m.GetCounter().GetValue()
	}

	newConfigMap := func(name, data string) {
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Data:       map[string]string{"train.jsonl": data},
		})).To(Succeed())
	}

	newDeployment := func(name string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{
						{Name: "sidecar", Image: "proxy:1", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "sidecar-value"}}},
						{Name: "server", Image: "server:1", Env: []corev1.EnvVar{
							{Name: "LOG_LEVEL", Value: "debug"},
							{Name: "TOGETHER_MODEL", Value: "base-model"},
						}},
					}},
				},
			},
		}
		Expect(k8sClient.Create(ctx, d)).To(Succeed())
		return d
	}

	newFineTune := func(name string, spec togetherv1.TogetherFineTuneSpec) types.NamespacedName {
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		return client.ObjectKeyFromObject(ft)
	}

	uploadedFile := func() string {
		return sim.AddFile("train.jsonl", "fine-tune", []byte(validJSONL)).ID
	}

	// loseStatusWrites makes the reconciler's status writes fail, as a lost
	// write or a crash before it would, whenever lose says so for the patch
	// about to be sent.
	loseStatusWrites := func(lose func(patch string) bool) {
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		r.Client = interceptor.NewClient(base, interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				data, err := patch.Data(obj)
				if err != nil {
					return err
				}
				if lose(string(data)) {
					return apierrors.NewServiceUnavailable("injected: status write lost")
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
	}

	It("submits once Together has validated the file, follows the metrics to completion and patches only the target env var", func() {
		newConfigMap("data", validJSONL)
		newDeployment("chat")
		key := newFineTune("tune", togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "meta-llama/Llama-3-8b", Suffix: "support",
				TrainingData:   &togetherv1.ConfigMapKeyRef{Name: "data", Key: "train.jsonl"},
				ValidationFile: uploadedFile(), NEvals: 2},
			Deploy: &togetherv1.DeploySpec{MaxEvalLoss: ptr.To(0.5),
				Deployment: &togetherv1.DeploymentTarget{Name: "chat", Container: "server", Env: "TOGETHER_MODEL"}},
		})

		By("waiting while Together validates the uploaded file")
		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft := get(key)
		Expect(ft.Status.JobID).To(BeEmpty())
		Expect(ft.Status.TrainingFileID).NotTo(BeEmpty())
		Expect(sim.FileStatus(ft.Status.TrainingFileID)).To(Equal("PENDING"))
		Expect(condition(ft, togetherv1.ReconcilingCondition).Reason).To(Equal(togetherv1.ReasonTrainingFileValidating))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(BeZero(), "no job may be created on a file Together has not validated")
		Eventually(func(g Gomega) {
			sim.Advance()
			_, err := reconcile(key)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(get(key).Status.JobID).NotTo(BeEmpty())
		}).WithTimeout(10*time.Second).Should(Succeed(), "the job should be submitted once the file is COMPLETED")
		Expect(sim.FileStatus(get(key).Status.TrainingFileID)).To(Equal("COMPLETED"))
		ft = get(key)
		Expect(ft.Finalizers).To(ContainElement(togetherv1.FinalizerName))
		Expect(ft.Status.JobID).NotTo(BeEmpty())
		Expect(ft.Status.TrainingFileID).NotTo(BeEmpty())
		Expect(ft.Status.Submission).To(BeNil())
		Expect(condition(ft, togetherv1.ReconcilingCondition).Status).To(Equal(metav1.ConditionTrue))

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
			g.Expect(ft.Status.Step).To(BeNumerically(">=", 2))
			g.Expect(condition(ft, togetherv1.ReconcilingCondition)).NotTo(BeNil())
			g.Expect(condition(ft, togetherv1.ReconcilingCondition).Reason).To(Equal(togetherv1.ReasonJobRunning))
		})

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		ft = get(key)
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(ft.Status.Step).To(BeEquivalentTo(5))
		Expect(ft.Status.Checkpoints).To(HaveLen(5))
		Expect(ft.Status.Loss).NotTo(BeNil())
		Expect(ft.Status.EvalLoss).To(HaveValue(Equal(0.42)), "the eval loss comes from the job's eval/loss metrics rows")
		Expect(ft.Status.OutputModel).To(ContainSubstring("support-" + ft.SubmissionTag(1)))
		Expect(togetherv1.TaggedFor(ft.Status.OutputModel, ft.Namespace)).To(BeTrue(), "the job names the namespace that created it")
		Expect(ft.Status.DeployedModel).To(Equal(ft.Status.OutputModel))
		Expect(ft.Status.DeployedAttempt).To(BeEquivalentTo(1))
		Expect(ft.Status.ObservedGeneration).To(Equal(ft.Generation))
		Expect(condition(ft, togetherv1.DeployedCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(ft, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(condition(ft, togetherv1.StalledCondition)).To(BeNil())
		Expect(ft.Status.Attempts).To(HaveLen(1))
		Expect(ft.Status.Attempts[0].Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(ft.Status.Deployment).NotTo(BeNil())

		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "chat"}, dep)).To(Succeed())
		Expect(ft.Status.Deployment.Name).To(Equal("chat"))
		Expect(ft.Status.Deployment.Container).To(Equal("server"))
		Expect(ft.Status.Deployment.PreviousValue).To(Equal("base-model"))
		Expect(ft.Status.Deployment.Generation).To(Equal(dep.Generation))
		Expect(dep.Annotations).To(HaveKey(togetherv1.RollbackAnnotation), "the one rollback record")
		Expect(dep.Annotations).NotTo(HaveKey("together.ai/previous-model.server.TOGETHER_MODEL"), "the old format is not written")
		Expect(dep.Spec.Template.Spec.Containers[1].Env).To(Equal([]corev1.EnvVar{
			{Name: "LOG_LEVEL", Value: "debug"}, {Name: "TOGETHER_MODEL", Value: ft.Status.OutputModel}}))
		Expect(dep.Spec.Template.Spec.Containers[0].Env).To(Equal([]corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "sidecar-value"}}))
		Expect(*dep.Spec.Replicas).To(BeEquivalentTo(3))

		Expect(sim.CountCalls("POST", "/v1/files/upload")).To(Equal(1))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1))
		Expect(counterValue(fineTuneCompletions)).To(Equal(1.0))
		g := &dto.Metric{}
		Expect(fineTuneStepGauge.WithLabelValues(ns, "tune").Write(g)).To(Succeed())
		Expect(g.GetGauge().GetValue()).To(Equal(5.0))
		evs := strings.Join(drainEvents(recorder), "\n")
		for _, want := range []string{"Normal Uploaded", "Normal Submitted", "Normal Completed", "Normal DeploymentPatched", "Normal Deployed"} {
			Expect(evs).To(ContainSubstring(want))
		}

		By("re-reconciling changes nothing")
		rv := dep.ResourceVersion
		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "chat"}, dep)).To(Succeed())
		Expect(dep.ResourceVersion).To(Equal(rv))
		Expect(drainEvents(recorder)).To(BeEmpty())
		Expect(counterValue(fineTuneCompletions)).To(Equal(1.0))

		By("rolling back from the recorded patch, as docs/finetune.md says")
		rolled := dep.DeepCopy()
		Expect(k8sClient.Patch(ctx, rolled, client.RawPatch(types.JSONPatchType, []byte(dep.Annotations[togetherv1.RollbackAnnotation])))).To(Succeed())
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "chat"}, rolled)).To(Succeed())
		Expect(rolled.Spec.Template.Spec.Containers[1].Env).To(Equal([]corev1.EnvVar{
			{Name: "LOG_LEVEL", Value: "debug"}, {Name: "TOGETHER_MODEL", Value: "base-model"}}))
		Expect(rolled.Annotations).NotTo(HaveKey(togetherv1.RollbackAnnotation))
		Expect(rolled.Annotations).NotTo(HaveKey(togetherv1.RolledBackAnnotation), "a fine-tune's rollback does not stop migrations")
	})

	It("adopts an existing job by spec.jobID, reading it once", func() {
		sim.AddFineTune(togethersim.FineTune{ID: "ft-existing-1", Model: "meta-llama/Llama-3-8b", Status: "running", LearningRate: 2e-5})
		key := newFineTune("adopted", togetherv1.TogetherFineTuneSpec{JobID: "ft-existing-1"})

		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft := get(key)
		Expect(ft.Status.JobID).To(Equal("ft-existing-1"))
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
		Expect(ft.Status.Attempt).To(BeEquivalentTo(1))
		Expect(ft.Status.Attempts).To(HaveLen(1))
		Expect(*ft.Status.Attempts[0].LearningRate).To(Equal(2e-5))
		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(sim.CountCalls("GET", "/v1/fine-tunes/ft-existing-1")).To(Equal(1))

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		ft = get(key)
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(condition(ft, togetherv1.DeployedCondition)).To(BeNil())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(0))
		Expect(drainEvents(recorder)).To(ContainElement(ContainSubstring("Normal Adopted")))
	})

	It("never cancels an adopted job when the resource is deleted (issue 13, scenario 1)", func() {
		// Another team's running job, named by ID.
		sim.AddFineTune(togethersim.FineTune{ID: "ft-someone-elses", Model: "meta-llama/Llama-3-8b", Status: "running"})
		key := newFineTune("adopter", togetherv1.TogetherFineTuneSpec{JobID: "ft-someone-elses"})
		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(get(key).Status.Phase).To(Equal(togetherv1.FineTuneRunning))
		Expect(get(key).Spec.DeletionPolicy).To(BeEmpty(), "the CRD defaults nothing")
		Expect(get(key).Status.DeletionPolicy).To(Equal(togetherv1.DeletionPolicyRetain), "adopted work is retained")

		Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &togetherv1.TogetherFineTune{}))).To(BeTrue())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes/ft-someone-elses/cancel")).To(BeZero())
		job, err := api.GetFineTune(ctx, "ft-someone-elses")
		Expect(err).NotTo(HaveOccurred())
		Expect(job.Status).NotTo(Equal(together.FineTuneCancelled))
	})

	Context("deleting while Together refuses the cleanup (issue 13, scenario 4)", func() {
		submitRunning := func(name string) types.NamespacedName {
			newConfigMap(name+"-data", validJSONL)
			key := newFineTune(name, togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{
				Model: "meta-llama/Llama-3-8b", TrainingData: &togetherv1.ConfigMapKeyRef{Name: name + "-data", Key: "train.jsonl"},
			}})
			drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) { g.Expect(ft.Status.JobID).NotTo(BeEmpty()) })
			drainEvents(recorder)
			return key
		}
		expectGone := func(key types.NamespacedName, reason string) {
			GinkgoHelper()
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &togetherv1.TogetherFineTune{}))).To(BeTrue(), "the finalizer let go")
			Expect(drainEvents(recorder)).To(ContainElement(HavePrefix("Warning " + reason)))
		}

		It("lets go at once on 403, with a Warning Event", func() {
			key := submitRunning("forbidden")
			sim.Faults().SetRoute("POST", "/v1/fine-tunes/", togethersim.RouteFault{Status: 403})
			Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
			_, err := reconcile(key)
			Expect(err).NotTo(HaveOccurred())
			expectGone(key, togetherv1.ReasonCleanupUnauthorized)
		})

		It("lets go at once on 401", func() {
			key := submitRunning("unauthorized")
			sim.Faults().RejectKey(true)
			Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
			_, err := reconcile(key)
			Expect(err).NotTo(HaveOccurred())
			expectGone(key, togetherv1.ReasonCleanupUnauthorized)
		})

		It("lets go after a bounded number of failed attempts, counting them in status", func() {
			key := submitRunning("failing")
			sim.Faults().SetRoute("", "/v1/fine-tunes", togethersim.RouteFault{Status: 500})
			Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
			for i := int32(1); i < togetherv1.MaxCleanupAttempts; i++ {
				_, err := reconcile(key)
				Expect(err).To(HaveOccurred(), "attempt %d is retried", i)
				Expect(get(key).Status.CleanupAttempts).To(Equal(i))
			}
			_, err := reconcile(key)
			Expect(err).NotTo(HaveOccurred())
			expectGone(key, togetherv1.ReasonCleanupGaveUp)
		})

		It("skips the cleanup on purpose when annotated", func() {
			key := submitRunning("skipped")
			ft := get(key)
			ft.Annotations = map[string]string{togetherv1.SkipRemoteCleanupAnnotation: "true"}
			Expect(k8sClient.Update(ctx, ft)).To(Succeed())
			id := ft.Status.JobID
			Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
			_, err := reconcile(key)
			Expect(err).NotTo(HaveOccurred())
			expectGone(key, togetherv1.ReasonCleanupSkippedOnRequest)
			Expect(sim.CountCalls("POST", "/v1/fine-tunes/"+id+"/cancel")).To(BeZero())
		})
	})

	It("stalls without a timer while its evaluation data ConfigMap is missing, and goes on once it exists", func() {
		newConfigMap("train-ok", validJSONL)
		key := newFineTune("eval-missing", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{
			Model: "m", TrainingData: &togetherv1.ConfigMapKeyRef{Name: "train-ok", Key: "train.jsonl"},
			ValidationData: &togetherv1.ConfigMapKeyRef{Name: "eval", Key: "train.jsonl"}}})
		Expect(trainingConfigMapNames(get(key))).To(ConsistOf("train-ok", "eval"),
			"the ConfigMap watch's index names the evaluation data too, so creating it wakes the fine-tune")

		res, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "the ConfigMap is watched: creating it wakes the fine-tune, no timer needed")
		stalled := condition(get(key), togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonTrainingDataNotFound))
		Expect(stalled.Message).To(ContainSubstring("spec.training.validationData"))

		newConfigMap("eval", validJSONL)
		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(condition(get(key), togetherv1.StalledCondition)).To(BeNil(), "the evaluation data exists now")
	})

	It("rejects invalid JSONL naming the line and uploads nothing", func() {
		newConfigMap("bad", validJSONL+`{"messages":[{"role":"assistant","content":"first"}]}`+"\n")
		key := newFineTune("bad-data", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{
			Model: "m", TrainingData: &togetherv1.ConfigMapKeyRef{Name: "bad", Key: "train.jsonl"}}})

		res, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "the ConfigMap is watched: fixing it wakes the fine-tune, no timer needed")
		ft := get(key)
		stalled := condition(ft, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonInvalidTrainingData))
		Expect(stalled.Message).To(ContainSubstring("line 3"))
		Expect(stalled.Message).To(ContainSubstring("starts with an assistant message"))
		Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(condition(ft, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(ft.Status.ObservedGeneration).To(Equal(ft.Generation))
		Expect(drainEvents(recorder)).To(ConsistOf(And(ContainSubstring("Warning InvalidTrainingData"), ContainSubstring("line 3"))))

		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(drainEvents(recorder)).To(BeEmpty(), "the same problem is reported once, not per retry")
		Expect(sim.CountCalls("POST", "/v1/files/upload")).To(Equal(0))
		Expect(sim.CountCalls("GET", "/v1/files")).To(Equal(0))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(0))
	})

	It("stalls with Together's validation error and submits nothing when the file is INVALID_FORMAT", func() {
		bad := sim.AddFile("theirs.jsonl", "fine-tune", []byte(`{"question":"no known format"}`+"\n"))
		Expect(sim.FileStatus(bad.ID)).To(Equal("INVALID_FORMAT"))
		key := newFineTune("rejected-file", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: bad.ID}})

		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft := get(key)
		stalled := condition(ft, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonTrainingFileRejected))
		Expect(stalled.Message).To(And(ContainSubstring(bad.ID), ContainSubstring("INVALID_FORMAT"), ContainSubstring("Line 1: no known format")))
		Expect(condition(ft, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(ft.Status.JobID).To(BeEmpty())
		Expect(ft.Status.Submission).To(BeNil(), "no submission may be in flight for a rejected file")
		Expect(drainEvents(recorder)).To(ContainElement(ContainSubstring("Warning TrainingFileRejected")))
		for range 3 {
			sim.Advance()
			_, err = reconcile(key)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(BeZero())
	})

	It("creates exactly one job when the status write after creation fails", func() {
		var failed atomic.Bool
		loseStatusWrites(func(string) bool {
			return sim.CountCalls("POST", "/v1/fine-tunes") > 0 && failed.CompareAndSwap(false, true)
		})
		key := newFineTune("crash", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile()}})

		_, err := reconcile(key)
		Expect(err).To(HaveOccurred())
		Expect(failed.Load()).To(BeTrue())
		ft := get(key)
		Expect(ft.Status.JobID).To(BeEmpty(), "the job's ID was lost with the status write")
		Expect(ft.Status.Submission).NotTo(BeNil(), "the marker was written before the POST")
		Expect(ft.Status.Submission.Tag).To(Equal(ft.SubmissionTag(1)))

		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft = get(key)
		Expect(sim.CountCalls("GET", "/v1/fine-tunes")).To(Equal(1), "the second reconcile looked for the tagged job")
		jobs, err := api.ListFineTunes(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(jobs).To(HaveLen(1))
		Expect(ft.Status.JobID).To(Equal(jobs[0].ID))
		Expect(ft.Status.Submission).To(BeNil())
		Expect(ft.Status.Attempts).To(HaveLen(1))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1))
		submitted := []string{}
		for _, e := range drainEvents(recorder) {
			if strings.HasPrefix(e, "Normal Submitted") {
				submitted = append(submitted, e)
			}
		}
		Expect(submitted).To(ConsistOf(ContainSubstring("created before an interrupted status write")),
			"one Event for the one job, telling what happened")
	})

	It("finds the job of a submission interrupted under the tag of an earlier version (no namespace in it)", func() {
		key := newFineTune("legacy-tag", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile(), Suffix: "legacy"}})
		// What an earlier version left behind: its 8-hex-digit tag in the
		// marker and in the job's suffix, and no recorded job ID.
		const oldTag = "0badc0de"
		job, err := api.CreateFineTune(ctx, together.CreateFineTuneRequest{Model: "m", TrainingFile: get(key).Spec.Training.TrainingFile, Suffix: "legacy-" + oldTag})
		Expect(err).NotTo(HaveOccurred())
		ft := get(key)
		ft.Status.Submission = &togetherv1.SubmissionMarker{Attempt: 1, Tag: oldTag, StartedAt: metav1.Now()}
		Expect(k8sClient.Status().Update(ctx, ft)).To(Succeed())

		_, err = reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft = get(key)
		Expect(ft.Status.JobID).To(Equal(job.ID), "the earlier version's job is found by its tag")
		Expect(ft.Status.Submission).To(BeNil())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1), "only the earlier version's create: nothing paid twice")
	})

	It("tags a new job with its namespace as well as the resource and attempt", func() {
		key := newFineTune("ns-tag", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile(), Suffix: strings.Repeat("s", 40)}})
		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		ft := get(key)
		Expect(ft.Status.JobID).NotTo(BeEmpty())
		jobs, err := api.ListFineTunes(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(jobs).To(HaveLen(1))
		Expect(len(jobs[0].Suffix)).To(BeNumerically("<=", 40), "within the limit Together's Python client enforces")
		Expect(jobs[0].Suffix).To(HaveSuffix("-" + ft.SubmissionTag(1)))
		tag, ok := togetherv1.NamespaceTagIn(jobs[0].Suffix)
		Expect(ok).To(BeTrue())
		Expect(tag).To(Equal(togetherv1.NamespaceTag(ns)))
		Expect(togetherv1.TaggedFor(jobs[0].Suffix, "some-other-namespace")).To(BeFalse())
	})

	It("retries a failure with a smaller learning rate, succeeds, and ignores events of the old attempt", func() {
		sim.SetFineTuneScript(func(req togethersim.FineTuneRequest) bool {
			return req.LearningRate != nil && *req.LearningRate > 5e-5
		}, togethersim.FineTuneOutcome{FailAtStep: 2, FailMessage: "loss diverged"})
		key := newFineTune("retry", togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile(), LearningRate: ptr.To(1e-4)},
			Retry:    &togetherv1.RetrySpec{MaxAttempts: 2, LearningRateFactor: ptr.To(0.1)},
		})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		ft := get(key)
		Expect(ft.Status.Attempt).To(BeEquivalentTo(2))
		Expect(ft.Status.Attempts).To(HaveLen(2))
		first, second := ft.Status.Attempts[0], ft.Status.Attempts[1]
		Expect(first.Phase).To(Equal(togetherv1.FineTuneFailed))
		Expect(*first.LearningRate).To(BeNumerically("~", 1e-4, 1e-12))
		Expect(first.Error).To(Equal(&togetherv1.JobError{Message: "loss diverged", Step: 2}))
		Expect(second.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(*second.LearningRate).To(BeNumerically("~", 1e-5, 1e-12))
		Expect(second.JobID).NotTo(Equal(first.JobID))
		Expect(ft.Status.JobID).To(Equal(second.JobID))
		Expect(ft.Status.Error).To(BeNil())
		Expect(ft.Status.Step).To(BeNumerically(">", 2), "attempt 2's progress is not bounded by the step attempt 1 ended at")
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(2))
		Expect(counterValue(fineTuneFailures)).To(Equal(1.0))
		Expect(counterValue(fineTuneCompletions)).To(Equal(1.0))
		failures := 0
		for _, e := range drainEvents(recorder) {
			if strings.HasPrefix(e, "Warning JobFailed") {
				failures++
				Expect(e).To(And(ContainSubstring("loss diverged"), ContainSubstring("step 2")))
			}
		}
		Expect(failures).To(Equal(1))

		By("an event about attempt 1's job, delivered to the apply step, changes nothing")
		before := get(key)
		late := event.Event{ID: "late-1", Type: togetherv1.EventFineTuneFailed, JobID: first.JobID, ErrorMessage: "late", Step: 9}
		applier := &intake.Applier{Client: k8sClient, Reader: k8sClient}
		Expect(applier.ApplyTo(ctx, intake.KindFineTune, key, late).Outcome).To(Equal(lattice.Stale))
		Expect(get(key).ResourceVersion).To(Equal(before.ResourceVersion), "the old attempt's event was written")
		_, err := reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		after := get(key)
		Expect(after.Status).To(Equal(before.Status))
		Expect(after.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(2))
	})

	It("stops with Stalled JobFailed when no attempt is left", func() {
		sim.SetFineTuneScript(func(togethersim.FineTuneRequest) bool { return true }, togethersim.FineTuneOutcome{FailAtStep: 1, FailMessage: "out of memory"})
		key := newFineTune("fails", togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile()}})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonJobFailed))
			g.Expect(c.Message).To(ContainSubstring("out of memory"))
		})
		ft := get(key)
		Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(condition(ft, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1))
	})

	It("blocks deployment when the eval loss is above the quality gate", func() {
		sim.SetFineTuneScript(func(togethersim.FineTuneRequest) bool { return true }, togethersim.FineTuneOutcome{EvalLoss: 0.9})
		newDeployment("gated")
		key := newFineTune("gate", togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile(), ValidationFile: uploadedFile(), NEvals: 1},
			Deploy: &togetherv1.DeploySpec{MaxEvalLoss: ptr.To(0.5),
				Deployment: &togetherv1.DeploymentTarget{Name: "gated", Container: "server"}},
		})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.DeployedCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonQualityGateFailed))
		})
		ft := get(key)
		Expect(condition(ft, togetherv1.DeployedCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(condition(ft, togetherv1.DeployedCondition).Message).To(And(ContainSubstring("0.9"), ContainSubstring("0.5")))
		Expect(condition(ft, togetherv1.StalledCondition).Reason).To(Equal(togetherv1.ReasonQualityGateFailed))
		Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(ft.Status.DeployedModel).To(BeEmpty())
		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gated"}, dep)).To(Succeed())
		Expect(dep.Annotations).To(BeEmpty())
		Expect(dep.Spec.Template.Spec.Containers[1].Env[1].Value).To(Equal("base-model"))
		Expect(drainEvents(recorder)).To(ContainElement(ContainSubstring("Warning QualityGateFailed")))
	})

	It("reports a Deployment missing when the model is ready as a condition", func() {
		key := newFineTune("nodep", togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile()},
			// Submit: train although the target is missing (the default
			// waits for it, see finetune_target_test.go).
			Deploy: &togetherv1.DeploySpec{OnTargetNotReady: togetherv1.TargetNotReadySubmit, Deployment: &togetherv1.DeploymentTarget{Name: "missing"}},
		})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.DeployedCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonDeploymentNotFound))
			g.Expect(c.Message).To(ContainSubstring(`"missing"`))
		})
		Expect(condition(get(key), togetherv1.StalledCondition).Reason).To(Equal(togetherv1.ReasonDeploymentNotFound))
	})

	It("keeps an env var and an annotation another writer added to an empty list and map while the model was being deployed", func() {
		labels := map[string]string{"app": "bare"}
		Expect(k8sClient.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					// No env list and no annotations: the patch must add both.
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "server:1"}}}},
			},
		})).To(Succeed())
		sim.AddFineTune(togethersim.FineTune{ID: "ft-done-bare", Model: "m", Status: "completed", ModelOutputName: "org/m-bare"})
		key := newFineTune("bare", togetherv1.TogetherFineTuneSpec{JobID: "ft-done-bare",
			Deploy: &togetherv1.DeploySpec{Deployment: &togetherv1.DeploymentTarget{Name: "bare", Container: "server", Env: "TOGETHER_MODEL"}}})

		// Another writer (a person, a GitOps tool) adds its own env var and
		// annotation after the reconciler read the Deployment and before its
		// patch reaches the API server.
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		var raced atomic.Bool
		r.Client = interceptor.NewClient(base, interceptor.Funcs{
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				if _, ok := obj.(*appsv1.Deployment); ok && raced.CompareAndSwap(false, true) {
					d := &appsv1.Deployment{}
					Expect(c.Get(ctx, client.ObjectKeyFromObject(obj), d)).To(Succeed())
					d.Annotations = map[string]string{"team.example.com/owner": "search"}
					d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}
					Expect(c.Update(ctx, d)).To(Succeed())
				}
				return c.Patch(ctx, obj, patch, opts...)
			},
		})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.DeployedCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		})
		Expect(raced.Load()).To(BeTrue(), "the concurrent edit should have happened")
		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "bare"}, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers[0].Env).To(ConsistOf(
			corev1.EnvVar{Name: "LOG_LEVEL", Value: "debug"},
			corev1.EnvVar{Name: "TOGETHER_MODEL", Value: "org/m-bare"},
		), "the other writer's env var must survive the deploy")
		Expect(d.Annotations).To(HaveKeyWithValue("team.example.com/owner", "search"),
			"the other writer's annotation must survive the deploy")
	})

	It("deploys over a Deployment an earlier version patched: reads its old previous-value annotation, writes only the one record", func() {
		labels := map[string]string{"app": "legacy"}
		// As an earlier version left it after deploying org/m-legacy, its
		// status write lost: the model in the env var, the value before in
		// the old annotation, no holder recorded.
		Expect(k8sClient.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: ns, Annotations: map[string]string{
				"together.ai/previous-model.server.TOGETHER_MODEL": "base-model"}},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "server:1",
						Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "org/m-legacy"}}}}}},
			},
		})).To(Succeed())
		sim.AddFineTune(togethersim.FineTune{ID: "ft-done-legacy", Model: "m", Status: "completed", ModelOutputName: "org/m-legacy"})
		key := newFineTune("legacy", togetherv1.TogetherFineTuneSpec{JobID: "ft-done-legacy",
			Deploy: &togetherv1.DeploySpec{Deployment: &togetherv1.DeploymentTarget{Name: "legacy", Container: "server", Env: "TOGETHER_MODEL"}}})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.DeployedCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		})
		ft := &togetherv1.TogetherFineTune{}
		Expect(k8sClient.Get(ctx, key, ft)).To(Succeed())
		Expect(ft.Status.Deployment.PreviousValue).To(Equal("base-model"), "the value before comes from the old annotation")
		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "legacy"}, d)).To(Succeed())
		Expect(d.Annotations).NotTo(HaveKey("together.ai/previous-model.server.TOGETHER_MODEL"), "the old format is carried into the record, not kept")
		Expect(d.Annotations).To(HaveKeyWithValue(togetherv1.DeployedByAnnotation("server", "TOGETHER_MODEL"), "legacy"))
		Expect(k8sClient.Patch(ctx, d, client.RawPatch(types.JSONPatchType, []byte(d.Annotations[togetherv1.RollbackAnnotation])))).To(Succeed())
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "legacy"}, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers[0].Env).To(Equal([]corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "base-model"}}))
	})

	It("counts a failed attempt and warns about it once when the write recording it is lost", func() {
		sim.SetFineTuneScript(func(togethersim.FineTuneRequest) bool { return true },
			togethersim.FineTuneOutcome{FailAtStep: 2, FailMessage: "loss diverged"})
		var lost atomic.Bool
		loseStatusWrites(func(patch string) bool {
			return strings.Contains(patch, `"phase":"Failed"`) && strings.Contains(patch, `"attempts"`) && lost.CompareAndSwap(false, true)
		})
		key := newFineTune("lost-end", togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile()},
			Retry:    &togetherv1.RetrySpec{MaxAttempts: 1},
		})
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.StalledCondition)).NotTo(BeNil())
		})
		Expect(lost.Load()).To(BeTrue(), "the injected loss never happened")
		ft := get(key)
		Expect(ft.Status.Attempts).To(HaveLen(1))
		Expect(ft.Status.Attempts[0].Phase).To(Equal(togetherv1.FineTuneFailed))
		Expect(counterValue(fineTuneFailures)).To(Equal(1.0))
		warnings := 0
		for _, e := range drainEvents(recorder) {
			if strings.HasPrefix(e, "Warning JobFailed") {
				warnings++
			}
		}
		Expect(warnings).To(Equal(1))
	})

	DescribeTable("deleting a running fine-tune",
		func(policy togetherv1.DeletionPolicy, wantCancels int, wantStatus together.FineTuneStatus) {
			key := newFineTune("delete", togetherv1.TogetherFineTuneSpec{
				Training:       &togetherv1.TrainingSpec{Model: "m", TrainingFile: uploadedFile()},
				DeletionPolicy: policy,
			})
			drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
				g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
			})
			ft := get(key)
			Expect(k8sClient.Delete(ctx, ft)).To(Succeed())
			_, err := reconcile(key)
			Expect(err).NotTo(HaveOccurred())
			Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &togetherv1.TogetherFineTune{}))).To(BeTrue())
			Expect(sim.CountCalls("POST", "/v1/fine-tunes/"+ft.Status.JobID+"/cancel")).To(Equal(wantCancels))
			sim.Advance()
			job, err := api.GetFineTune(ctx, ft.Status.JobID)
			Expect(err).NotTo(HaveOccurred())
			Expect(job.Status).To(Equal(wantStatus))
		},
		Entry("Cancel cancels the job", togetherv1.DeletionPolicyCancel, 1, together.FineTuneCancelled),
		Entry("Retain leaves it running", togetherv1.DeletionPolicyRetain, 0, together.FineTuneRunning),
	)
})
