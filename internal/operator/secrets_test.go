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
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// The reconcilers watch the Secrets resources read, metadata only, so that
// a created or rotated Secret takes effect at once. These specs check what
// that watch costs in secrecy (the manager's cache keeps no annotation of a
// Secret, where kubectl apply leaves its data) and what it buys.
var _ = Describe("The Secret watch", func() {
	It("keeps no annotation, label or managed field of a Secret in the manager's cache", func() {
		ns := newNamespace()
		const value = "s3cr3t-value-in-last-applied"
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "applied", Labels: map[string]string{"app": "x"},
				Annotations: map[string]string{
					corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Secret","stringData":{"secret":"` + value + `"}}`,
				}},
			StringData: map[string]string{"secret": value},
		}
		Expect(k8s.Create(ctx, sec)).To(Succeed())

		cached := &metav1.PartialObjectMetadata{}
		cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		Eventually(func(g Gomega) {
			g.Expect(mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(sec), cached)).To(Succeed())
			g.Expect(cached.ResourceVersion).To(Equal(sec.ResourceVersion))
		}).Should(Succeed(), "waiting for the manager's Secret watch to see the Secret")
		Expect(cached.Annotations).To(BeEmpty(), "kubectl's last-applied-configuration carries the data in plain text")
		Expect(cached.Labels).To(BeEmpty())
		Expect(cached.ManagedFields).To(BeEmpty())

		stored := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sec), stored)).To(Succeed())
		Expect(stored.Annotations).To(HaveKey(corev1.LastAppliedConfigAnnotation), "the transform changes the cache, never the Secret")
	})

	It("makes a subscription whose signing Secret was missing Ready once the Secret is created", func() {
		ns := newNamespace()
		sub := &togetherv1.TogetherWebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late-secret"},
			Spec:       togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "late-signing"}},
		}
		Expect(k8s.Create(ctx, sub)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			c := apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonSecretNotFound))
		}).Should(Succeed(), "waiting for the subscription to stall with SecretNotFound")

		// The reconcile that stalled asked for no requeue (the controller
		// suite checks it), so only the watch can wake the subscription.
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late-signing"},
			StringData: map[string]string{"secret": "whsec-late"}})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			g.Expect(apimeta.IsStatusConditionTrue(sub.Status.Conditions, togetherv1.ReadyCondition)).To(BeTrue())
			g.Expect(apimeta.FindStatusCondition(sub.Status.Conditions, togetherv1.StalledCondition)).To(BeNil())
		}).Should(Succeed(), "waiting for the subscription to be Ready once its Secret exists")
	})
})
