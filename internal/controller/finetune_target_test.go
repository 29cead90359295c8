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
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// These specs are about a fine-tune's Deployment target: checked before
// anything is paid for, held by one fine-tune at a time, taken over only
// when the spec says so, and released when the holder is deleted.
var _ = Describe("FineTune deploy target", func() {
	var (
		sim      *togethersim.Server
		api      *together.Client
		recorder *events.FakeRecorder
		r        *TogetherFineTuneReconciler
		ns       string
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
		r = &TogetherFineTuneReconciler{Client: k8sClient, Recorder: recorder, TogetherAccess: TogetherAccess[FineTuneAPI]{API: api}}
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "target-"}}
		Expect(k8sClient.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	reconcileOnce := func(key types.NamespacedName) {
		GinkgoHelper()
		_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
		Expect(err).NotTo(HaveOccurred())
	}
	get := func(key types.NamespacedName) *togetherv1.TogetherFineTune {
		GinkgoHelper()
		ft := &togetherv1.TogetherFineTune{}
		Expect(k8sClient.Get(ctx, key, ft)).To(Succeed())
		return ft
	}
	condition := func(ft *togetherv1.TogetherFineTune, t string) *metav1.Condition {
		return apimeta.FindStatusCondition(ft.Status.Conditions, t)
	}
	// feed runs one cycle of the operator's poller and apply step.
	feed := feedThroughPoller(func() string { return ns }, func() *together.Client { return api })
	drive := func(key types.NamespacedName, cond func(g Gomega, ft *togetherv1.TogetherFineTune)) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			sim.Advance()
			g.Expect(feed(key)).To(Succeed())
			_, _ = r.Reconcile(ctx, ctrl.Request{NamespacedName: key}) // conflicts with the feed are retried next round
			cond(g, get(key))
		}).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "fine-tune %s never reached the expected state", key.Name)
	}
	newDeployment := func(name string, containers ...corev1.Container) {
		GinkgoHelper()
		labels := map[string]string{"app": name}
		Expect(k8sClient.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: containers}},
			},
		})).To(Succeed())
	}
	app := corev1.Container{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "base-model"}}}
	deployment := func(name string) *appsv1.Deployment {
		GinkgoHelper()
		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d)).To(Succeed())
		return d
	}
	envValue := func(d *appsv1.Deployment) string {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "TOGETHER_MODEL" {
				return e.Value
			}
		}
		return ""
	}
	newFineTune := func(name string, deploy *togetherv1.DeploySpec) types.NamespacedName {
		GinkgoHelper()
		file := sim.AddFile("train.jsonl", "fine-tune", []byte(validJSONL)).ID
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "meta-llama/Llama-3-8b", TrainingFile: file}, Deploy: deploy}}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		return client.ObjectKeyFromObject(ft)
	}
	target := func(dep string) *togetherv1.DeploySpec {
		return &togetherv1.DeploySpec{Deployment: &togetherv1.DeploymentTarget{Name: dep, Container: "app", Env: "TOGETHER_MODEL"}}
	}
	holderKey := togetherv1.DeployedByAnnotation("app", "TOGETHER_MODEL")

	It("refuses a second fine-tune on a held env var before it is paid for, lets it take over only when told, and tells the first", func() {
		newDeployment("chat", app)
		first := newFineTune("first", target("chat"))
		drive(first, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition)).To(HaveField("Status", metav1.ConditionTrue))
		})
		firstModel := get(first).Status.DeployedModel
		Expect(envValue(deployment("chat"))).To(Equal(firstModel))
		Expect(deployment("chat").Annotations).To(HaveKeyWithValue(holderKey, "first"), "the Deployment names who holds the env var")
		reconcileOnce(first)
		Expect(condition(get(first), togetherv1.DeployTargetReadyCondition)).To(BeNil(), "once deployed, Deployed says the rest")
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1))
		drainEvents(recorder)

		By("a second fine-tune on the same env var is refused, naming the holder, and nothing is submitted")
		second := newFineTune("second", target("chat"))
		reconcileOnce(second)
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: second})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "no recheck timer: the holder's changes and the Deployment's wake it (operator suite)")
		ft := get(second)
		Expect(ft.Status.JobID).To(BeEmpty())
		Expect(ft.Status.Submission).To(BeNil())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1), "no job is paid for while the target is held")
		ready := condition(ft, togetherv1.DeployTargetReadyCondition)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(togetherv1.ReasonDeployTargetHeld))
		Expect(ready.Message).To(And(ContainSubstring(`fine-tune "first"`), ContainSubstring("spec.deploy.takeOver"), HavePrefix("Nothing was submitted")))
		Expect(condition(ft, togetherv1.StalledCondition)).To(HaveField("Reason", togetherv1.ReasonDeployTargetHeld))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Warning DeployTargetHeld")), "one Warning, not one per reconcile")

		By("takeOver: the second trains, deploys, and records itself as the holder")
		ft.Spec.Deploy.TakeOver = true
		Expect(k8sClient.Update(ctx, ft)).To(Succeed())
		reconcileOnce(second)
		ft = get(second)
		Expect(ft.Status.JobID).NotTo(BeEmpty())
		Expect(condition(ft, togetherv1.DeployTargetReadyCondition)).To(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring(`held by fine-tune "first"`))))
		drive(second, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition)).To(HaveField("Status", metav1.ConditionTrue))
		})
		secondModel := get(second).Status.DeployedModel
		Expect(secondModel).NotTo(Equal(firstModel))
		Expect(envValue(deployment("chat"))).To(Equal(secondModel))
		Expect(deployment("chat").Annotations).To(HaveKeyWithValue(holderKey, "second"))
		Expect(drainEvents(recorder)).To(ContainElement(And(HavePrefix("Normal DeployTargetTakenOver"), ContainSubstring(`"first"`))))

		By("the first no longer claims the target, and does not take it back")
		reconcileOnce(first)
		ft = get(first)
		deployed := condition(ft, togetherv1.DeployedCondition)
		Expect(deployed.Status).To(Equal(metav1.ConditionFalse))
		Expect(deployed.Reason).To(Equal(togetherv1.ReasonDeployTargetLost))
		Expect(deployed.Message).To(ContainSubstring(`Fine-tune "second" took over`))
		Expect(condition(ft, togetherv1.ReadyCondition)).To(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", togetherv1.ReasonDeployTargetLost)))
		rv := deployment("chat").ResourceVersion
		reconcileOnce(first)
		Expect(deployment("chat").ResourceVersion).To(Equal(rv))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Warning DeployTargetLost")))

		By("deleting the holder frees the env var and leaves its value")
		Expect(k8sClient.Delete(ctx, get(second))).To(Succeed())
		reconcileOnce(second)
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, second, &togetherv1.TogetherFineTune{}))).To(BeTrue())
		Expect(deployment("chat").Annotations).NotTo(HaveKey(holderKey))
		Expect(envValue(deployment("chat"))).To(Equal(secondModel))
	})

	It("does not submit while the Deployment is missing, warns once, and submits as soon as it exists", func() {
		key := newFineTune("early", target("later"))
		reconcileOnce(key)
		reconcileOnce(key)
		ft := get(key)
		Expect(ft.Status.JobID).To(BeEmpty())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(BeZero())
		c := condition(ft, togetherv1.DeployTargetReadyCondition)
		Expect(c).NotTo(BeNil())
		Expect(c.Reason).To(Equal(togetherv1.ReasonDeploymentNotFound))
		Expect(c.Message).To(And(HavePrefix("Nothing was submitted"), ContainSubstring(`Deployment "later" does not exist`), ContainSubstring("onTargetNotReady: Submit")))
		Expect(condition(ft, togetherv1.StalledCondition)).To(HaveField("Reason", togetherv1.ReasonDeploymentNotFound))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Warning DeploymentNotFound")))

		By("a Deployment without the container is still not a target")
		newDeployment("later", corev1.Container{Name: "other", Image: "x:1"})
		reconcileOnce(key)
		Expect(get(key).Status.JobID).To(BeEmpty())
		Expect(condition(get(key), togetherv1.DeployTargetReadyCondition)).To(HaveField("Reason", togetherv1.ReasonContainerNotFound))

		By("once the container is there, the job is submitted")
		d := deployment("later")
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, app)
		Expect(k8sClient.Update(ctx, d)).To(Succeed())
		reconcileOnce(key)
		ft = get(key)
		Expect(ft.Status.JobID).NotTo(BeEmpty())
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1))
		Expect(condition(ft, togetherv1.DeployTargetReadyCondition)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(condition(ft, togetherv1.StalledCondition)).To(BeNil())
	})

	It("does not pay for a retry while the target is missing, and retries once it is back", func() {
		sim.SetFineTuneScript(func(req togethersim.FineTuneRequest) bool {
			return req.LearningRate != nil && *req.LearningRate > 5e-5
		}, togethersim.FineTuneOutcome{FailAtStep: 2, FailMessage: "loss diverged"})
		newDeployment("chat", app)
		file := sim.AddFile("train.jsonl", "fine-tune", []byte(validJSONL)).ID
		lr, factor := 1e-4, 0.1
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: "retry", Namespace: ns}, Spec: togetherv1.TogetherFineTuneSpec{
			Training: &togetherv1.TrainingSpec{Model: "m", TrainingFile: file, LearningRate: &lr},
			Retry:    &togetherv1.RetrySpec{MaxAttempts: 2, LearningRateFactor: &factor},
			Deploy:   target("chat"),
		}}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		key := client.ObjectKeyFromObject(ft)
		reconcileOnce(key)
		Expect(get(key).Status.JobID).NotTo(BeEmpty())
		d := deployment("chat")
		Expect(k8sClient.Delete(ctx, d)).To(Succeed())

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneFailed))
			g.Expect(condition(ft, togetherv1.StalledCondition)).To(HaveField("Reason", togetherv1.ReasonDeploymentNotFound))
		})
		ft = get(key)
		Expect(ft.Status.Attempt).To(BeEquivalentTo(1))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(1), "no second job while the model would have nowhere to go")
		Expect(condition(ft, togetherv1.DeployTargetReadyCondition).Message).To(HavePrefix("Attempt 2 was not submitted"))

		newDeployment("chat", app)
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition)).To(HaveField("Status", metav1.ConditionTrue))
		})
		Expect(get(key).Status.Attempt).To(BeEquivalentTo(2))
		Expect(sim.CountCalls("POST", "/v1/fine-tunes")).To(Equal(2))
	})

	It("trains anyway with onTargetNotReady: Submit, reporting the target and deploying once it exists", func() {
		deploy := target("later")
		deploy.OnTargetNotReady = togetherv1.TargetNotReadySubmit
		key := newFineTune("anyway", deploy)
		reconcileOnce(key)
		ft := get(key)
		Expect(ft.Status.JobID).NotTo(BeEmpty())
		Expect(condition(ft, togetherv1.DeployTargetReadyCondition)).To(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", togetherv1.ReasonDeploymentNotFound)))
		Expect(condition(ft, togetherv1.StalledCondition)).To(BeNil(), "training goes on")
		evs := drainEvents(recorder)
		Expect(strings.Join(evs, "\n")).To(ContainSubstring("Warning DeploymentNotFound"))

		newDeployment("later", app)
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.DeployedCondition)).To(HaveField("Status", metav1.ConditionTrue))
		})
		Expect(envValue(deployment("later"))).To(Equal(get(key).Status.DeployedModel))
	})
})

var _ = Describe("FineTune deploy target naming", func() {
	It("names the holder under a readable key, or a hashed one when that is invalid", func() {
		Expect(togetherv1.DeployedByAnnotation("app", "TOGETHER_MODEL")).To(Equal("together.ai/deployed-by.app.TOGETHER_MODEL"))
		k := togetherv1.DeployedByAnnotation(strings.Repeat("c", 60), "MODEL_")
		Expect(k).To(HavePrefix(togetherv1.DeployedByAnnotationPrefix))
		Expect(len(k) - len("together.ai/")).To(BeNumerically("<=", 63))
	})
})
