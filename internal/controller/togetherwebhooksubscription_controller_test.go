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
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

var _ = Describe("TogetherWebhookSubscription reconciler", func() {
	var (
		sim      *togethersim.Server
		recorder *events.FakeRecorder
		r        *TogetherWebhookSubscriptionReconciler
		ns       string
	)

	BeforeEach(func() {
		sim = togethersim.New(togethersim.Options{APIKey: "sub-key"})
		_, err := sim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Close)
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: "sub-key", MaxRetries: -1})
		Expect(err).NotTo(HaveOccurred())
		recorder = events.NewFakeRecorder(50)
		r = &TogetherWebhookSubscriptionReconciler{Client: k8sClient, APIReader: k8sClient, Recorder: recorder, TogetherAccess: TogetherAccess[WebhookAPI]{API: api},
			check: subscriptionOwnership.check(subscriptionStatusOf)}
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sub-"}}
		Expect(k8sClient.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	reconcileSub := func(key client.ObjectKey) {
		_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
	}
	getSub := func(key client.ObjectKey) *togetherv1.TogetherWebhookSubscription {
		sub := &togetherv1.TogetherWebhookSubscription{}
		ExpectWithOffset(1, k8sClient.Get(ctx, key, sub)).To(Succeed())
		return sub
	}
	newSub := func(name string, register bool) client.ObjectKey {
		sub := &togetherv1.TogetherWebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: togetherv1.TogetherWebhookSubscriptionSpec{
				SecretRef: togetherv1.WebhookSecretRef{Name: name + "-secret"},
				Register:  register, URL: "https://relay.example.com/" + name,
			},
		}
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		return client.ObjectKeyFromObject(sub)
	}
	newSecret := func(name string) {
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			StringData: map[string]string{"secret": "s3cret-for-tests"}})).To(Succeed())
	}

	It("removes its finalizer once spec.register is turned off and the remote registration is gone", func() {
		newSecret("reg-secret")
		key := newSub("reg", true)
		reconcileSub(key)
		sub := getSub(key)
		Expect(controllerutil.ContainsFinalizer(sub, togetherv1.FinalizerName)).To(BeTrue())
		Expect(sub.Status.RemoteID).NotTo(BeEmpty())
		remoteID := sub.Status.RemoteID

		sub.Spec.Register = false
		Expect(k8sClient.Update(ctx, sub)).To(Succeed())
		reconcileSub(key)
		sub = getSub(key)
		Expect(sim.CountCalls(http.MethodDelete, "/v1/webhooks/"+remoteID)).To(Equal(1))
		Expect(sub.Status.RemoteID).To(BeEmpty())
		Expect(controllerutil.ContainsFinalizer(sub, togetherv1.FinalizerName)).To(BeFalse(),
			"nothing remote is left to clean up, so deleting the subscription must not wait for the operator")
		c := apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.RegisteredCondition)
		Expect(c).NotTo(BeNil())
		Expect(c.Reason).To(Equal(togetherv1.ReasonNotRequested))
		Expect(apimeta.IsStatusConditionTrue(sub.Status.Conditions, togetherv1.ReadyCondition)).To(BeTrue())

		By("deleting it now takes no reconcile")
		Expect(k8sClient.Delete(ctx, sub)).To(Succeed())
		Expect(k8sClient.Get(ctx, key, &togetherv1.TogetherWebhookSubscription{})).NotTo(Succeed())
	})

	It("warns once, with the command to fix it, while its Secret is missing", func() {
		key := newSub("nosecret", false)
		reconcileSub(key)
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "no recheck timer: the Secret watch wakes the subscription when the Secret is created (operator suite)")
		sub := getSub(key)
		c := apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)
		Expect(c).NotTo(BeNil())
		Expect(c.Reason).To(Equal(togetherv1.ReasonSecretNotFound))
		evs := drainEvents(recorder)
		Expect(evs).To(ConsistOf(And(HavePrefix("Warning SecretNotFound"), ContainSubstring("kubectl -n "+ns+" create secret generic nosecret-secret"))),
			"one Warning Event per change, not one per retry")

		By("creating the Secret clears the stall")
		newSecret("nosecret-secret")
		reconcileSub(key)
		sub = getSub(key)
		Expect(apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
		Expect(apimeta.IsStatusConditionTrue(sub.Status.Conditions, togetherv1.ReadyCondition)).To(BeTrue())
		Expect(sub.Status.ObservedGeneration).To(Equal(sub.Generation))
	})
})
