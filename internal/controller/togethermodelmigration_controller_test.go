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
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admissionregistration/v1"
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

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/catalogue"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

const (
	oldModel = "acme/old-model"
	newModel = "acme/new-model"
)

var _ = Describe("TogetherModelMigration", func() {
	var (
		ns       string
		clock    time.Time
		recorder *events.FakeRecorder
		r        *TogetherModelMigrationReconciler
		sim      *togethersim.Server
	)

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tmm-"}}
		Expect(k8sClient.Create(ctx, n)).To(Succeed())
		ns = n.Name
		clock = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		recorder = events.NewFakeRecorder(100)
		r = &TogetherModelMigrationReconciler{
			Client: k8sClient, Recorder: recorder,
			Now:      func() time.Time { return clock },
			PageSize: 2, // several pages even in small tests
		}
		r.check = migrationOwnership.check(migrationStatusOf)
		// Together's catalogue, as the simulator serves it (GET /v1/models),
		// lists the replacements these specs migrate to.
		sim = togethersim.New(togethersim.Options{APIKey: "test-key"})
		_, err := sim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Close)
		sim.AddModel(newModel)
		sim.AddModel("acme/third-model")
		api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: "test-key", MaxRetries: -1, RateLimit: rate.Inf, Metrics: prometheus.NewRegistry()})
		Expect(err).NotTo(HaveOccurred())
		r.API = api
		r.Catalogue = catalogue.New(0, 0, func() time.Time { return clock })
	})

	container := func(name string, env map[string]string, args ...string) corev1.Container {
		c := corev1.Container{Name: name, Image: "example.com/app:1", Args: args}
		for k, v := range env {
			c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
		}
		return c
	}
	template := func(name string, containers ...corev1.Container) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: containers},
		}
	}
	makeDeployment := func(name string, annotations map[string]string, containers ...corev1.Container) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name, togetherv1.MigrateOptInLabel: "true"}, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: template(name, containers...),
			},
		}
		Expect(k8sClient.Create(ctx, d)).To(Succeed())
		return d
	}
	makeStatefulSet := func(name string, containers ...corev1.Container) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name, togetherv1.MigrateOptInLabel: "true"}},
			Spec: appsv1.StatefulSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: template(name, containers...),
			},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		return s
	}
	makeMigration := func(name string, mutate func(*togetherv1.TogetherModelMigrationSpec)) *togetherv1.TogetherModelMigration {
		m := &togetherv1.TogetherModelMigration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       togetherv1.TogetherModelMigrationSpec{ModelID: oldModel, ReplacementModel: newModel},
		}
		if mutate != nil {
			mutate(&m.Spec)
		}
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		return m
	}
	reconcile := func(m *togetherv1.TogetherModelMigration) ctrl.Result {
		GinkgoHelper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(m)})
		Expect(err).NotTo(HaveOccurred())
		return res
	}
	get := func(obj client.Object) client.Object {
		GinkgoHelper()
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		return obj
	}
	getDeployment := func(name string) *appsv1.Deployment {
		GinkgoHelper()
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		get(d)
		return d
	}
	getMigration := func(m *togetherv1.TogetherModelMigration) *togetherv1.TogetherModelMigration {
		GinkgoHelper()
		out := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: ns}}
		get(out)
		return out
	}
	envOf := func(c corev1.Container, name string) string {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
		return ""
	}
	condition := func(m *togetherv1.TogetherModelMigration, t string) *metav1.Condition {
		return apimeta.FindStatusCondition(m.Status.Conditions, t)
	}

	It("moves env, args and annotation forms in Deployments and StatefulSets and leaves substrings alone", func() {
		makeDeployment("env", nil, container("app", map[string]string{"MODEL": oldModel, "OTHER": oldModel + "-v2"}))
		makeDeployment("args", nil,
			container("app", nil, "--model="+oldModel, "--fallback", oldModel, "--tag=x"+oldModel),
			container("sidecar", map[string]string{"MODEL": oldModel}))
		makeDeployment("annotated", map[string]string{togetherv1.ModelAnnotation: oldModel, "keep": "me"},
			container("app", nil))
		untouched := makeDeployment("similar", map[string]string{togetherv1.ModelAnnotation: oldModel + "-v2"},
			container("app", map[string]string{"MODEL": "x" + oldModel}, "--model="+oldModel+"-v2", oldModel+" "))
		makeStatefulSet("sts", container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("immediate", nil)

		res := reconcile(m)
		Expect(res.RequeueAfter).To(Equal(DefaultMigrationRescanInterval), "new workloads are looked for periodically")

		env := getDeployment("env").Spec.Template.Spec.Containers[0]
		Expect(envOf(env, "MODEL")).To(Equal(newModel))
		Expect(envOf(env, "OTHER")).To(Equal(oldModel+"-v2"), "a longer model name is a different model")

		args := getDeployment("args").Spec.Template.Spec.Containers
		Expect(args[0].Args).To(Equal([]string{"--model=" + newModel, "--fallback", oldModel, "--tag=x" + oldModel}), "only --model arguments name the model")
		Expect(envOf(args[1], "MODEL")).To(Equal(newModel))

		annotated := getDeployment("annotated")
		Expect(annotated.Annotations).To(HaveKeyWithValue(togetherv1.ModelAnnotation, newModel))
		Expect(annotated.Annotations).To(HaveKeyWithValue("keep", "me"))

		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "sts", Namespace: ns}}
		get(sts)
		Expect(envOf(sts.Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))

		Expect(getDeployment("similar").ResourceVersion).To(Equal(untouched.ResourceVersion), "nothing in it names the model exactly")

		got := getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationCompleted))
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		Expect(got.Status.Migrated).To(Equal(int32(5)))
		Expect(got.Status.LastScanTime).NotTo(BeNil())
		ready := condition(got, togetherv1.ReadyCondition)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		Expect(ready.ObservedGeneration).To(Equal(got.Generation))
		Expect(condition(got, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(condition(got, togetherv1.StalledCondition)).To(BeNil())
		for _, t := range got.Status.Targets {
			Expect(t.PatchedAt).NotTo(BeNil(), "target %+v", t)
			Expect(t.Error).To(BeEmpty())
		}
		Expect(got.Status.Targets).To(ContainElements(
			togetherv1.MigrationTarget{Kind: "Deployment", Name: "args", Container: "app",
				Field: "spec.template.spec.containers[app].args[0]", From: "--model=" + oldModel, To: "--model=" + newModel,
				PatchedAt: got.Status.Targets[0].PatchedAt},
			togetherv1.MigrationTarget{Kind: "StatefulSet", Name: "sts", Container: "app",
				Field: "spec.template.spec.containers[app].env[MODEL]", From: oldModel, To: newModel,
				PatchedAt: got.Status.Targets[0].PatchedAt},
			togetherv1.MigrationTarget{Kind: "Deployment", Name: "annotated",
				Field: "metadata.annotations[together.ai/model]", From: oldModel, To: newModel,
				PatchedAt: got.Status.Targets[0].PatchedAt},
		))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Normal Migrated Moved 5 target(s) in 4 workload(s)")))
	})

	It("leaves an env var a fine-tune holds alone and lists it as held", func() {
		held := makeDeployment("held", map[string]string{togetherv1.DeployedByAnnotation("app", "MODEL"): "support-bot"},
			container("app", map[string]string{"MODEL": oldModel, "TOGETHER_MODEL": oldModel}))
		m := makeMigration("precedence", nil)
		reconcile(m)

		app := getDeployment("held").Spec.Template.Spec.Containers[0]
		Expect(envOf(app, "MODEL")).To(Equal(oldModel), "the fine-tune's env var keeps its model")
		Expect(envOf(app, "TOGETHER_MODEL")).To(Equal(newModel), "an env var nobody holds is migrated")
		Expect(held.Annotations).To(HaveKey(togetherv1.DeployedByAnnotation("app", "MODEL")))

		got := getMigration(m)
		Expect(got.Status.Migrated).To(Equal(int32(1)))
		Expect(got.Status.Targets).To(ContainElement(togetherv1.MigrationTarget{
			Kind: "Deployment", Name: "held", Container: "app", Field: "spec.template.spec.containers[app].env[MODEL]",
			From: oldModel, To: oldModel, HeldBy: "support-bot"}))
		ready := condition(got, togetherv1.ReadyCondition)
		Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		Expect(ready.Message).To(ContainSubstring("1 env var(s) held by a fine-tune"))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Normal Migrated Moved 1 target(s) in 1 workload(s)")))

		By("staying put when reconciled again")
		rv := getMigration(m).ResourceVersion
		reconcile(m)
		Expect(getMigration(m).ResourceVersion).To(Equal(rv))
		Expect(drainEvents(recorder)).To(BeEmpty())
	})

	It("records one rollback patch that restores it", func() {
		makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}, "--model", oldModel))
		m := makeMigration("rollback", nil)
		reconcile(m)

		d := getDeployment("app")
		Expect(d.Annotations).To(HaveKey(togetherv1.RollbackAnnotation))
		Expect(d.Annotations).NotTo(HaveKey(togetherv1.LegacyMigrationRollbackAnnotation), "only the current format is written")
		Expect(d.Annotations).NotTo(HaveKey(togetherv1.LegacyMigrationPreviousModelAnnotation), "only the current format is written")

		// What docs/migration.md tells a person to run, after deleting the migration.
		Expect(k8sClient.Delete(ctx, m)).To(Succeed())
		Expect(k8sClient.Patch(ctx, d, client.RawPatch(types.JSONPatchType, []byte(d.Annotations[togetherv1.RollbackAnnotation])))).To(Succeed())
		d = getDeployment("app")
		Expect(envOf(d.Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(oldModel))
		Expect(d.Spec.Template.Spec.Containers[0].Args).To(Equal([]string{"--model", oldModel}))
		Expect(d.Annotations).NotTo(HaveKey(togetherv1.RollbackAnnotation))
		Expect(d.Annotations).To(HaveKeyWithValue(togetherv1.RolledBackAnnotation, oldModel))

		By("not moving the rolled-back workload again when the migration is created anew")
		rv := d.ResourceVersion
		again := makeMigration("rollback", nil)
		reconcile(again)
		Expect(getDeployment("app").ResourceVersion).To(Equal(rv), "the rollback sticks")
		Expect(getMigration(again).Status.Targets).To(BeEmpty())
	})

	It("reads the rollback record an earlier version wrote, counts the workload as moved and carries the record into the current format", func() {
		// As an earlier version left a workload it had migrated: the old
		// JSON-patch record and the previous-model annotation.
		oldRecord := `[{"op":"test","path":"/spec/template/spec/containers/0/name","value":"app"},` +
			`{"op":"test","path":"/spec/template/spec/containers/0/env/0/name","value":"MODEL"},` +
			`{"op":"test","path":"/spec/template/spec/containers/0/env/0/value","value":"` + newModel + `"},` +
			`{"op":"replace","path":"/spec/template/spec/containers/0/env/0/value","value":"` + oldModel + `"},` +
			`{"op":"remove","path":"/metadata/annotations/migration.together.ai~1previous.model"},` +
			`{"op":"remove","path":"/metadata/annotations/migration.together.ai~1previous.rollback"},` +
			`{"op":"add","path":"/metadata/annotations/migration.together.ai~1previous.rolled-back","value":"` + oldModel + `"}]`
		makeDeployment("old", map[string]string{
			togetherv1.LegacyMigrationPreviousModelAnnotation: oldModel,
			togetherv1.LegacyMigrationRollbackAnnotation:      oldRecord,
		}, container("app", map[string]string{"MODEL": newModel}))
		m := makeMigration("upgrade", func(s *togetherv1.TogetherModelMigrationSpec) { s.DryRun = true })
		reconcile(m)
		Expect(getMigration(m).Status.Targets).To(ConsistOf(HaveField("Name", "old")),
			"a field the old record restores to the old model is the migration's own work")
		Expect(getMigration(m).Status.Migrated).To(Equal(int32(1)))

		By("merging a later change into one record in the current format")
		d := getDeployment("old")
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, container("late", map[string]string{"TOGETHER_MODEL": oldModel}))
		Expect(k8sClient.Update(ctx, d)).To(Succeed())
		m = getMigration(m)
		m.Spec.DryRun = false
		Expect(k8sClient.Update(ctx, m)).To(Succeed())
		reconcile(m)
		d = getDeployment("old")
		Expect(envOf(d.Spec.Template.Spec.Containers[1], "TOGETHER_MODEL")).To(Equal(newModel))
		Expect(d.Annotations).To(HaveKey(togetherv1.RollbackAnnotation))
		Expect(d.Annotations).NotTo(HaveKey(togetherv1.LegacyMigrationRollbackAnnotation))
		Expect(d.Annotations).NotTo(HaveKey(togetherv1.LegacyMigrationPreviousModelAnnotation))
		Expect(getMigration(m).Status.Migrated).To(Equal(int32(2)))

		By("rolling back both changes, the old one too, from the one record")
		Expect(k8sClient.Delete(ctx, m)).To(Succeed())
		Expect(k8sClient.Patch(ctx, d, client.RawPatch(types.JSONPatchType, []byte(d.Annotations[togetherv1.RollbackAnnotation])))).To(Succeed())
		d = getDeployment("old")
		Expect(envOf(d.Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(oldModel))
		Expect(envOf(d.Spec.Template.Spec.Containers[1], "TOGETHER_MODEL")).To(Equal(oldModel))
		Expect(d.Annotations).To(Equal(map[string]string{togetherv1.RolledBackAnnotation: oldModel}))
	})
	It("touches only model fields of opted-in or selected workloads, never a command or another variable", func() {
		// The attack of issue 13: values that equal the "model" outside model
		// fields, and a workload that neither opted in nor is selected.
		container := func(env map[string]string, command ...string) corev1.Container {
			c := corev1.Container{Name: "app", Image: "example.com/app:1", Command: command}
			for k, v := range env {
				c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
			}
			return c
		}
		optedIn := makeDeployment("opted-in", nil, container(map[string]string{"TOGETHER_BASE_URL": oldModel, "MODEL": oldModel}, oldModel, "serve"))
		plain := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns, Labels: map[string]string{"app": "plain"}},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "plain"}},
				Template: template("plain", container(map[string]string{"MODEL": oldModel})),
			},
		}
		Expect(k8sClient.Create(ctx, plain)).To(Succeed())
		m := makeMigration("model-fields", nil)
		reconcile(m)

		d := getDeployment("opted-in")
		c := d.Spec.Template.Spec.Containers[0]
		Expect(envOf(c, "MODEL")).To(Equal(newModel))
		Expect(envOf(c, "TOGETHER_BASE_URL")).To(Equal(oldModel), "not a model variable")
		Expect(c.Command).To(Equal(optedIn.Spec.Template.Spec.Containers[0].Command), "a command is never rewritten")
		Expect(getDeployment("plain").ResourceVersion).To(Equal(plain.ResourceVersion), "no selector and no opt-in label: untouched")

		By("rewriting only the variables spec.envNames names, for a selected workload")
		sel := makeMigration("selected", func(s *togetherv1.TogetherModelMigrationSpec) {
			s.ModelID, s.ReplacementModel = oldModel, "acme/third-model"
			s.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "plain"}}
			s.EnvNames = []string{"CHAT_MODEL"}
		})
		reconcile(sel)
		Expect(getDeployment("plain").ResourceVersion).To(Equal(plain.ResourceVersion), "MODEL is not in spec.envNames")
	})

	It("stalls and changes nothing when the replacement is not in Together's catalogue, and migrates once it is listed", func() {
		dep := makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("typo", func(s *togetherv1.TogetherModelMigrationSpec) { s.ReplacementModel = "acme/new-modle" })
		reconcile(m)

		got := getMigration(m)
		stalled := condition(got, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonReplacementNotInCatalogue))
		Expect(stalled.Message).To(ContainSubstring(`"acme/new-modle"`))
		Expect(stalled.Message).To(ContainSubstring("spec.skipCatalogCheck: true"), "the message names the opt-out")
		Expect(condition(got, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationPending))
		Expect(got.Status.Migrated).To(BeZero())
		Expect(got.Status.Targets).To(ConsistOf(HaveField("PatchedAt", BeNil())), "what would move is still listed")
		Expect(getDeployment("app").ResourceVersion).To(Equal(dep.ResourceVersion), "nothing is patched")
		Expect(envOf(getDeployment("app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(oldModel))
		Expect(drainEvents(recorder)).To(ContainElement(HavePrefix("Warning " + togetherv1.ReasonReplacementNotInCatalogue)))

		By("reconciled again within the TTL: the list is not read again")
		reconcile(m)
		Expect(sim.CountCalls("GET", "/v1/models")).To(Equal(1))
		Expect(getDeployment("app").ResourceVersion).To(Equal(dep.ResourceVersion))

		By("listed after the TTL: migrated")
		sim.AddModel("acme/new-modle")
		clock = clock.Add(catalogue.DefaultTTL)
		reconcile(m)
		Expect(envOf(getDeployment("app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal("acme/new-modle"))
		got = getMigration(m)
		Expect(condition(got, togetherv1.StalledCondition)).To(BeNil())
		Expect(got.Status.Migrated).To(Equal(int32(1)))
	})

	It("migrates when the replacement is listed, reading the list once for many migrations", func() {
		var ms []*togetherv1.TogetherModelMigration
		for _, name := range []string{"a", "b", "c"} {
			model := "acme/old-" + name
			makeDeployment("app-"+name, nil, container("app", map[string]string{"MODEL": model}))
			ms = append(ms, makeMigration("m-"+name, func(s *togetherv1.TogetherModelMigrationSpec) { s.ModelID = model }))
		}
		for range 2 {
			for _, m := range ms {
				reconcile(m)
			}
		}
		for _, name := range []string{"a", "b", "c"} {
			Expect(envOf(getDeployment("app-" + name).Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		}
		Expect(sim.CountCalls("GET", "/v1/models")).To(Equal(1), "one list per account per TTL, not per migration per reconcile")
	})

	It("migrates to a model the catalogue does not list with spec.skipCatalogCheck, without asking Together or needing credentials", func() {
		makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}))
		r.Accounts = noAccounts{}
		m := makeMigration("private", func(s *togetherv1.TogetherModelMigrationSpec) {
			s.ReplacementModel = "me/Meta-Llama-3-8B-ft-abc123"
			s.SkipCatalogCheck = true
		})
		reconcile(m)
		Expect(envOf(getDeployment("app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal("me/Meta-Llama-3-8B-ft-abc123"))
		Expect(getMigration(m).Status.Migrated).To(Equal(int32(1)))
		Expect(sim.CountCalls("GET", "/v1/models")).To(BeZero())

		By("without the opt-out, a namespace with no credentials is stalled and nothing moves")
		dep := makeDeployment("other", nil, container("app", map[string]string{"MODEL": "acme/older"}))
		checked := makeMigration("checked", func(s *togetherv1.TogetherModelMigrationSpec) { s.ModelID = "acme/older" })
		reconcile(checked)
		stalled := condition(getMigration(checked), togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonNoCredentials))
		Expect(stalled.Message).To(ContainSubstring("spec.skipCatalogCheck"))
		Expect(getDeployment("other").ResourceVersion).To(Equal(dep.ResourceVersion))
	})

	It("leaves a workload whose rollback record cannot be read alone, naming the annotation, and migrates the others", func() {
		makeDeployment("good", nil, container("app", map[string]string{"MODEL": oldModel}))
		bad := makeDeployment("bad", map[string]string{togetherv1.RollbackAnnotation: "{not a patch"}, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("partial", nil)
		reconcile(m)

		Expect(envOf(getDeployment("good").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		Expect(getDeployment("bad").ResourceVersion).To(Equal(bad.ResourceVersion), "no patch without a rollback it can keep")
		got := getMigration(m)
		Expect(got.Status.Targets).To(ContainElement(SatisfyAll(
			HaveField("Name", "bad"), HaveField("PatchedAt", BeNil()),
			HaveField("Error", SatisfyAll(ContainSubstring(togetherv1.RollbackAnnotation), ContainSubstring("not a JSON patch"))))))
		stalled := condition(got, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonPartiallyMigrated))
	})

	It("writes nothing when reconciled again with nothing new", func() {
		makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("noop", nil)
		reconcile(m)
		drainEvents(recorder)
		depRV := getDeployment("app").ResourceVersion
		crRV := getMigration(m).ResourceVersion

		clock = clock.Add(time.Hour)
		reconcile(m)
		Expect(getDeployment("app").ResourceVersion).To(Equal(depRV))
		Expect(getMigration(m).ResourceVersion).To(Equal(crRV))
		Expect(drainEvents(recorder)).To(BeEmpty())
	})

	It("lists every would-be change in a dry run and changes nothing", func() {
		a := makeDeployment("a", nil, container("app", map[string]string{"MODEL": oldModel}))
		b := makeDeployment("b", nil, container("app", nil, "--model="+oldModel))
		m := makeMigration("dry", func(s *togetherv1.TogetherModelMigrationSpec) { s.DryRun = true })

		reconcile(m)
		Expect(getDeployment("a").ResourceVersion).To(Equal(a.ResourceVersion))
		Expect(getDeployment("b").ResourceVersion).To(Equal(b.ResourceVersion))
		got := getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationCompleted))
		Expect(got.Status.Migrated).To(BeZero())
		Expect(got.Status.Targets).To(ConsistOf(
			togetherv1.MigrationTarget{Kind: "Deployment", Name: "a", Container: "app",
				Field: "spec.template.spec.containers[app].env[MODEL]", From: oldModel, To: newModel},
			togetherv1.MigrationTarget{Kind: "Deployment", Name: "b", Container: "app",
				Field: "spec.template.spec.containers[app].args[0]", From: "--model=" + oldModel, To: "--model=" + newModel},
		))
		ready := condition(got, togetherv1.ReadyCondition)
		Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		Expect(ready.Reason).To(Equal(togetherv1.ReasonDryRun))

		reconcile(m)
		Expect(getMigration(m).ResourceVersion).To(Equal(got.ResourceVersion), "a second dry run writes nothing")
	})

	It("schedules a BeforeSunset migration and runs it when the clock reaches sunset minus lead time", func() {
		before := makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("sunset", func(s *togetherv1.TogetherModelMigrationSpec) {
			s.Strategy = togetherv1.MigrationBeforeSunset
			s.SunsetDate = "2030-01-10"
			s.LeadTime = &metav1.Duration{Duration: 168 * time.Hour}
		})

		res := reconcile(m)
		Expect(res.RequeueAfter).To(BeNumerically(">", 0))
		Expect(res.RequeueAfter).To(BeNumerically("<=", DefaultMigrationRescanInterval))
		got := getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationScheduled))
		Expect(got.Status.ScheduledTime.UTC()).To(Equal(time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC)))
		Expect(condition(got, togetherv1.ReconcilingCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(got, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(getDeployment("app").ResourceVersion).To(Equal(before.ResourceVersion))
		Expect(got.Status.Targets).To(HaveLen(1), "the preview shows what will move")

		clock = time.Date(2030, 1, 2, 23, 58, 0, 0, time.UTC)
		Expect(reconcile(m).RequeueAfter).To(Equal(2 * time.Minute))
		Expect(getDeployment("app").ResourceVersion).To(Equal(before.ResourceVersion))

		clock = time.Date(2030, 1, 3, 0, 0, 1, 0, time.UTC)
		reconcile(m)
		Expect(envOf(getDeployment("app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		got = getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationCompleted))
		Expect(condition(got, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(got, togetherv1.ReconcilingCondition)).To(BeNil())
	})

	It("waits for the approval annotation in a Manual migration", func() {
		before := makeDeployment("app", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("manual", func(s *togetherv1.TogetherModelMigrationSpec) { s.Strategy = togetherv1.MigrationManual })

		reconcile(m)
		got := getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationPending))
		ready := condition(got, togetherv1.ReadyCondition)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(togetherv1.ReasonAwaitingApproval))
		Expect(ready.Message).To(ContainSubstring("together.ai/approve-migration=true"))
		Expect(condition(got, togetherv1.StalledCondition)).To(BeNil())
		Expect(condition(got, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(getDeployment("app").ResourceVersion).To(Equal(before.ResourceVersion))

		got.Annotations = map[string]string{togetherv1.ApproveMigrationAnnotation: "true"}
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		reconcile(m)
		Expect(envOf(getDeployment("app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		Expect(getMigration(m).Status.Phase).To(Equal(togetherv1.MigrationCompleted))
	})

	It("catches a workload that starts using the old model after the migration ran", func() {
		makeDeployment("first", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("later", nil)
		reconcile(m)
		Expect(getMigration(m).Status.Migrated).To(Equal(int32(1)))

		makeDeployment("second", nil, container("app", map[string]string{"MODEL": oldModel}))
		Expect(reconcile(m).RequeueAfter).To(BeNumerically(">", 0))
		Expect(envOf(getDeployment("second").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		got := getMigration(m)
		Expect(got.Status.Migrated).To(Equal(int32(2)))
		Expect(got.Status.Targets).To(HaveLen(2))
	})

	Context("when the event intake writes status.processedEvents", func() {
		// recordEvent writes what the intake writes after creating the
		// migration from a model.deprecated event: a status Update of a fresh
		// read that keeps every other status field.
		recordEvent := func(key client.ObjectKey, id string) {
			GinkgoHelper()
			m := &togetherv1.TogetherModelMigration{}
			Expect(k8sClient.Get(ctx, key, m)).To(Succeed())
			m.Status.ProcessedEvents = append(m.Status.ProcessedEvents, id)
			m.Status.LastEvent = &togetherv1.EventRecord{ID: id, Type: "model.deprecated", Time: metav1.NewTime(clock)}
			Expect(k8sClient.Status().Update(ctx, m)).To(Succeed())
		}
		expectMigrated := func(m *togetherv1.TogetherModelMigration, eventID string) {
			GinkgoHelper()
			got := getMigration(m)
			Expect(got.Status.ProcessedEvents).To(Equal([]string{eventID}), "the intake's record is kept")
			Expect(got.Status.Phase).To(Equal(togetherv1.MigrationCompleted))
			Expect(got.Status.Migrated).To(Equal(int32(1)))
			Expect(got.Status.Targets).To(HaveLen(1))
			t := got.Status.Targets[0]
			Expect(t.PatchedAt).NotTo(BeNil())
			Expect(t).To(Equal(togetherv1.MigrationTarget{Kind: "Deployment", Name: "chat-app", Container: "app",
				Field: "spec.template.spec.containers[app].env[MODEL]", From: oldModel, To: newModel, PatchedAt: t.PatchedAt}))
			ready := condition(got, togetherv1.ReadyCondition)
			Expect(ready).NotTo(BeNil())
			Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			Expect(ready.Message).To(ContainSubstring("1 target(s) moved"))
			Expect(envOf(getDeployment("chat-app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		}

		It("keeps the record of patched targets when the write follows the migration", func() {
			makeDeployment("chat-app", nil, container("app", map[string]string{"MODEL": oldModel}))
			m := makeMigration("deprecated-after", nil)
			reconcile(m)
			recordEvent(client.ObjectKeyFromObject(m), "evt-1")
			reconcile(m)
			expectMigrated(m, "evt-1")
			Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Normal Migrated Moved 1 target(s) in 1 workload(s)")))
		})

		It("keeps the record of patched targets when the write precedes the first reconcile", func() {
			makeDeployment("chat-app", nil, container("app", map[string]string{"MODEL": oldModel}))
			m := makeMigration("deprecated-before", nil)
			recordEvent(client.ObjectKeyFromObject(m), "evt-1")
			reconcile(m)
			reconcile(m)
			expectMigrated(m, "evt-1")
		})

		It("keeps the record of patched targets when the write races the reconcile", func() {
			makeDeployment("chat-app", nil, container("app", map[string]string{"MODEL": oldModel}))
			m := makeMigration("deprecated-race", nil)
			// The reconciler reads the migration (from its cache) before the
			// intake's write lands, as right after Create: its status write
			// then conflicts after the Deployment was already patched.
			var once bool
			r.Client = &afterGetClient{Client: k8sClient, after: func(obj client.Object) {
				if _, ok := obj.(*togetherv1.TogetherModelMigration); ok && !once {
					once = true
					recordEvent(client.ObjectKeyFromObject(m), "evt-1")
				}
			}}
			_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(m)})
			Expect(once).To(BeTrue())
			Expect(apierrors.IsConflict(err)).To(BeTrue(), "the status write must not overwrite the intake's: %v", err)
			Expect(envOf(getDeployment("chat-app").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
			reconcile(m) // the retry, which finds nothing left to patch
			expectMigrated(m, "evt-1")
			Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Normal Migrated Moved 1 target(s) in 1 workload(s)")))

			By("staying put when reconciled again")
			rv := getMigration(m).ResourceVersion
			reconcile(m)
			Expect(getMigration(m).ResourceVersion).To(Equal(rv))
		})
	})

	It("forgets a patched target whose workload was deleted", func() {
		makeDeployment("gone", nil, container("app", map[string]string{"MODEL": oldModel}))
		makeDeployment("kept", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("prune", nil)
		reconcile(m)
		Expect(getMigration(m).Status.Targets).To(HaveLen(2))

		Expect(k8sClient.Delete(ctx, getDeployment("gone"))).To(Succeed())
		reconcile(m)
		got := getMigration(m)
		Expect(got.Status.Targets).To(HaveLen(1))
		Expect(got.Status.Targets[0].Name).To(Equal("kept"))
		Expect(got.Status.Targets[0].PatchedAt).NotTo(BeNil())
		Expect(got.Status.Migrated).To(Equal(int32(1)))
	})

	It("reports a workload it may not patch and migrates the others", func() {
		policy := &admissionv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-locked"},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionv1.RuleWithOperations{
						Operations: []admissionv1.OperationType{admissionv1.Update},
						Rule:       admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
					},
				}}},
				Validations: []admissionv1.Validation{{
					Expression: "object.metadata.name != 'locked'",
					Message:    "locked by policy",
					Reason:     ptr.To(metav1.StatusReasonForbidden),
				}},
			},
		}
		Expect(k8sClient.Create(ctx, policy)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, policy)).To(Succeed()) })
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-locked"},
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        policy.Name,
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
				MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
				}},
			},
		}
		Expect(k8sClient.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, binding)).To(Succeed()) })

		locked := makeDeployment("locked", nil, container("app", map[string]string{"MODEL": oldModel}))
		makeDeployment("free", nil, container("app", map[string]string{"MODEL": oldModel}))
		// The API server loads policies asynchronously; wait until it enforces this one.
		Eventually(func() error {
			return k8sClient.Patch(ctx, locked.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"probe":"x"}}}`)), client.DryRunAll)
		}).Should(Satisfy(apierrors.IsForbidden), "waiting for the API server to refuse the write")

		m := makeMigration("partial", nil)
		res := reconcile(m)
		Expect(res.RequeueAfter).To(BeNumerically(">", 0))
		Expect(envOf(getDeployment("free").Spec.Template.Spec.Containers[0], "MODEL")).To(Equal(newModel))
		Expect(getDeployment("locked").ResourceVersion).To(Equal(locked.ResourceVersion))

		got := getMigration(m)
		Expect(got.Status.Phase).To(Equal(togetherv1.MigrationCompleted))
		Expect(got.Status.Migrated).To(Equal(int32(1)))
		var lockedTarget togetherv1.MigrationTarget
		for _, t := range got.Status.Targets {
			if t.Name == "locked" {
				lockedTarget = t
			}
		}
		Expect(lockedTarget.PatchedAt).To(BeNil())
		Expect(lockedTarget.Error).To(And(HavePrefix("Forbidden"), ContainSubstring("locked by policy")))
		stalled := condition(got, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonPartiallyMigrated))
		Expect(condition(got, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		evs := drainEvents(recorder)
		Expect(evs).To(ContainElement(HavePrefix("Warning PatchFailed")))
		Expect(evs).To(ContainElement(HavePrefix("Normal Migrated Moved 1 target(s) in 1 workload(s)")))

		By("retrying without a second Event or status write")
		reconcile(m)
		Expect(getMigration(m).ResourceVersion).To(Equal(got.ResourceVersion))
		Expect(drainEvents(recorder)).To(BeEmpty())

		By("failing when nothing could be done")
		only := makeMigration("only-locked", func(s *togetherv1.TogetherModelMigrationSpec) {
			s.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "locked"}}
		})
		reconcile(only)
		gotOnly := getMigration(only)
		Expect(gotOnly.Status.Phase).To(Equal(togetherv1.MigrationFailed))
		Expect(condition(gotOnly, togetherv1.StalledCondition).Reason).To(Equal(togetherv1.ReasonMigrationFailed))
		Expect(gotOnly.Status.Targets).To(HaveLen(1))
	})

	It("warns once and exports a metric for workloads still on the model after sunset", func() {
		makeDeployment("a", nil, container("app", map[string]string{"MODEL": oldModel}))
		m := makeMigration("risk", func(s *togetherv1.TogetherModelMigrationSpec) {
			s.DryRun = true
			s.SunsetDate = "2029-12-31"
		})
		gauge := func() float64 {
			var pb dto.Metric
			Expect(workloadsAtRisk.WithLabelValues(ns, m.Name).Write(&pb)).To(Succeed())
			return pb.GetGauge().GetValue()
		}

		reconcile(m)
		Expect(getMigration(m).Status.AtRisk).To(Equal(int32(1)))
		Expect(gauge()).To(Equal(1.0))
		Expect(drainEvents(recorder)).To(ConsistOf(HavePrefix("Warning WorkloadsAtRisk 1 workload(s) still use " + oldModel)))

		reconcile(m)
		Expect(drainEvents(recorder)).To(BeEmpty(), "the same set at risk is not warned again")

		makeDeployment("b", nil, container("app", map[string]string{"MODEL": oldModel}))
		reconcile(m)
		Expect(getMigration(m).Status.AtRisk).To(Equal(int32(2)))
		Expect(gauge()).To(Equal(2.0))
		evs := drainEvents(recorder)
		Expect(evs).To(HaveLen(1))
		Expect(evs[0]).To(ContainSubstring("Deployment/a, Deployment/b"))

		By("clearing when the migration moves them")
		got := getMigration(m)
		got.Spec.DryRun = false
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		reconcile(m)
		got = getMigration(m)
		Expect(got.Status.AtRisk).To(BeZero())
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		Expect(gauge()).To(BeZero())
		Expect(strings.Join(drainEvents(recorder), "\n")).To(ContainSubstring("Normal NoWorkloadsAtRisk"))

		By("dropping the metric when the migration is deleted")
		series := migrationSeriesCount()
		Expect(k8sClient.Delete(ctx, got)).To(Succeed())
		reconcile(m)
		Expect(migrationSeriesCount()).To(Equal(series - 1))
	})
})

// migrationSeriesCount counts the series of the at-risk gauge.
func migrationSeriesCount() int {
	ch := make(chan prometheus.Metric)
	go func() { workloadsAtRisk.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// afterGetClient calls after once each Get has returned, to let a test write
// concurrently between a reconcile's read and its writes.
type afterGetClient struct {
	client.Client
	after func(client.Object)
}

func (c *afterGetClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, key, obj, opts...)
	if err == nil {
		c.after(obj)
	}
	return err
}

// noAccounts is a credentials resolver for a namespace that has no key and
// may not use the operator-wide one.
type noAccounts struct{}

func (noAccounts) For(_ context.Context, ns string, _ *credentials.SecretRef) (*credentials.Account, error) {
	return nil, fmt.Errorf("%w: create Secret %s/together-api-key", credentials.ErrNoCredentials, ns)
}
