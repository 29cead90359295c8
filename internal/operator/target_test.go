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
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/togethersim"
)

var _ = Describe("A deploy target held by another fine-tune", func() {
	It("is taken up as soon as the holder lets go, even when its annotation stays behind (no recheck timer)", func() {
		ns := newNamespace()
		dep := deployment(ns, "chat", "org/base")
		Expect(k8s.Create(ctx, dep)).To(Succeed())
		target := func(name string) *togetherv1.DeploySpec {
			return &togetherv1.DeploySpec{Deployment: &togetherv1.DeploymentTarget{Name: name, Container: "app", Env: "TOGETHER_MODEL"}}
		}

		By("a fine-tune that holds the env var (the Deployment's annotation names it)")
		holderJob := "ft-holder-" + ns
		sim.AddStalledFineTune(togethersim.FineTune{ID: holderJob, Model: "org/base"})
		holder := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "holder"},
			Spec: togetherv1.TogetherFineTuneSpec{JobID: holderJob, Deploy: target("chat")}}
		Expect(k8s.Create(ctx, holder)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
		dep.Annotations = map[string]string{togetherv1.DeployedByAnnotation("app", "TOGETHER_MODEL"): "holder"}
		Expect(k8s.Update(ctx, dep)).To(Succeed())

		By("a second fine-tune on the same env var waits, nothing submitted")
		file := sim.AddFile("train.jsonl", "fine-tune", []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`+"\n")).ID
		waiting := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "waiting"},
			Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "org/base", TrainingFile: file}, Deploy: target("chat")}}
		Expect(k8s.Create(ctx, waiting)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(waiting), waiting)).To(Succeed())
			c := apimeta.FindStatusCondition(waiting.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonDeployTargetHeld))
		}).Should(Succeed(), "waiting for the second fine-tune to stall with DeployTargetHeld")
		Expect(waiting.Status.JobID).To(BeEmpty())

		By("the holder moving to another target, leaving its annotation on the Deployment")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(holder), holder)).To(Succeed())
		holder.Spec.Deploy = target("elsewhere")
		Expect(k8s.Update(ctx, holder)).To(Succeed())
		// Nothing changes the Deployment or the waiting fine-tune, and its
		// stall asked for no requeue: only the holder's change can wake it.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(waiting), waiting)).To(Succeed())
			g.Expect(waiting.Status.JobID).NotTo(BeEmpty())
		}).Should(Succeed(), "waiting for the second fine-tune to submit once the holder targets something else")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
		Expect(dep.Annotations).To(HaveKeyWithValue(togetherv1.DeployedByAnnotation("app", "TOGETHER_MODEL"), "holder"), "the stale annotation stayed: the Deployment watch did not do it")
	})
})
