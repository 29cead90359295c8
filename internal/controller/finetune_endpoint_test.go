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
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
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
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// These specs deploy fine-tuned models to dedicated endpoints through the v2
// API of the simulator, whose POST /v1/endpoints answers 403 as Together's
// does, against a real API server.
var _ = Describe("FineTune dedicated endpoint (v2)", func() {
	var (
		sim      *togethersim.Server
		api      *together.Client
		recorder *events.FakeRecorder
		r        *TogetherFineTuneReconciler
		ns       string
	)
	const (
		v2Endpoints = "/v2/projects/" + togethersim.SimProjectID + "/endpoints"
	)

	BeforeEach(func() {
		sim = togethersim.New(togethersim.Options{APIKey: "test-key"})
		_, err := sim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sim.Close)
		api, err = together.New(together.Options{BaseURL: sim.URL(), APIKey: "test-key", MaxRetries: -1, RateLimit: rate.Inf, Metrics: prometheus.NewRegistry()})
		Expect(err).NotTo(HaveOccurred())
		recorder = events.NewFakeRecorder(500)
		r = &TogetherFineTuneReconciler{Client: k8sClient, Recorder: recorder, TogetherAccess: TogetherAccess[FineTuneAPI]{API: api}, EndpointPollInterval: 10 * time.Millisecond}
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ftep-"}}
		Expect(k8sClient.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	get := func(key types.NamespacedName) *togetherv1.TogetherFineTune {
		ft := &togetherv1.TogetherFineTune{}
		ExpectWithOffset(1, k8sClient.Get(ctx, key, ft)).To(Succeed())
		return ft
	}
	condition := func(ft *togetherv1.TogetherFineTune, t string) *metav1.Condition {
		return apimeta.FindStatusCondition(ft.Status.Conditions, t)
	}

	// feed runs one cycle of the operator's poller and apply step.
	feed := feedThroughPoller(func() string { return ns }, func() *together.Client { return api })
	drive := func(key types.NamespacedName, cond func(g Gomega, ft *togetherv1.TogetherFineTune)) {
		EventuallyWithOffset(1, func(g Gomega) {
			sim.Advance()
			g.Expect(feed(key)).To(Succeed())
			_, _ = r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
			cond(g, get(key))
		}).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "the fine-tune never reached the expected state")
	}
	// deleteAndDrain deletes the resource and reconciles (advancing the
	// simulator, so stopping deployments stop) until it is gone, returning
	// the reasons of the Reconciling conditions seen meanwhile.
	deleteAndDrain := func(key types.NamespacedName) []string {
		Expect(k8sClient.Delete(ctx, get(key))).To(Succeed())
		var reasons []string
		EventuallyWithOffset(1, func(g Gomega) {
			sim.Advance()
			_, _ = r.Reconcile(ctx, ctrl.Request{NamespacedName: key}) // a lost status write is retried by the next round
			ft := &togetherv1.TogetherFineTune{}
			err := k8sClient.Get(ctx, key, ft)
			if err == nil {
				if c := condition(ft, togetherv1.ReconcilingCondition); c != nil {
					reasons = append(reasons, c.Reason)
				}
			}
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the resource is still there")
		}).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "deletion never finished")
		return reasons
	}
	newFineTune := func(name string, ep *togetherv1.EndpointSpec, target *togetherv1.DeploymentTarget, policy togetherv1.DeletionPolicy) types.NamespacedName {
		file := sim.AddFile("train.jsonl", "fine-tune", []byte(validJSONL)).ID
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: togetherv1.TogetherFineTuneSpec{
			Training:       &togetherv1.TrainingSpec{Model: "m", TrainingFile: file},
			Deploy:         &togetherv1.DeploySpec{Endpoint: ep, Deployment: target},
			DeletionPolicy: policy,
		}}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		return client.ObjectKeyFromObject(ft)
	}
	newDeployment := func(name string) {
		labels := map[string]string{"app": name}
		Expect(k8sClient.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "server", Image: "server:1", Env: []corev1.EnvVar{{Name: "TOGETHER_MODEL", Value: "base-model"}}},
				}}},
			},
		})).To(Succeed())
	}
	modelEnv := func(name string) string {
		dep := &appsv1.Deployment{}
		ExpectWithOffset(1, k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, dep)).To(Succeed())
		return dep.Spec.Template.Spec.Containers[0].Env[0].Value
	}
	// loseStatusWrites fails the reconciler's status writes while lose says so.
	loseStatusWrites := func(lose func() bool) {
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		r.Client = interceptor.NewClient(base, interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if lose() {
					return apierrors.NewServiceUnavailable("injected: status write lost")
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
	}
	// callIndex is the position of the first answered call with this method
	// and path, or -1.
	callIndex := func(method, path string) int {
		return slices.IndexFunc(sim.Calls(), func(c togethersim.Call) bool { return c.Method == method && c.Path == path })
	}
	spec := func() *togetherv1.EndpointSpec {
		return &togetherv1.EndpointSpec{Hardware: "2xnvidia-h100-80gb", MinReplicas: 1, MaxReplicas: 2}
	}

	It("creates an endpoint and a deployment on the config for the asked hardware, routes it, waits for READY and gives the Deployment the inference name", func() {
		newDeployment("app")
		key := newFineTune("support-bot", spec(), &togetherv1.DeploymentTarget{Name: "app", Env: "TOGETHER_MODEL"}, "")

		By("waiting for the deployment, Reconciling with a reason naming the wait, the Deployment untouched")
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.ReconcilingCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonWaitingForDeploymentReady))
			g.Expect(c.Message).To(ContainSubstring("waiting for DEPLOYMENT_STATE_READY"))
		})
		Expect(modelEnv("app")).To(Equal("base-model"), "the Deployment was patched before the endpoint was ready")

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		ft := get(key)
		es := ft.Status.Endpoint
		Expect(es).NotTo(BeNil())
		job, err := api.GetFineTune(ctx, ft.Status.JobID)
		Expect(err).NotTo(HaveOccurred())

		By("status records the endpoint, the deployment, the model and the inference name")
		Expect(es.ProjectID).To(Equal(togethersim.SimProjectID))
		Expect(es.ID).To(HavePrefix("ep_"))
		Expect(es.Name).To(MatchRegexp(`^` + togethersim.SimProjectSlug + `/support-bot-[0-9a-f]{8}$`))
		Expect(es.DeploymentID).To(HavePrefix("dep_"))
		Expect(es.DeploymentName).To(HavePrefix(es.Name + "/ft-"))
		Expect(es.Model).To(Equal(together.ModelResource(togethersim.SimProjectID, job.ModelObjectID, job.ModelObjectRevisionID)))
		Expect(es.State).To(Equal(together.DeploymentReady))
		Expect(es.Hardware).To(Equal("2xnvidia-h100-80gb"))
		Expect(es.Routed).To(BeTrue())

		By("the config is the one Together lists for 2x H100")
		cfgs, err := api.ListV2Configs(ctx, es.ProjectID, together.ModelResource(es.ProjectID, job.ModelObjectID, ""))
		Expect(err).NotTo(HaveOccurred())
		i := slices.IndexFunc(cfgs, func(c together.V2Config) bool { return c.ResourceName() == es.Config })
		Expect(i).To(BeNumerically(">=", 0), "status.endpoint.config %s is not a config of the model", es.Config)
		Expect(cfgs[i].Selector(together.SelectorAcceleratorCount)).To(Equal("2"))
		Expect(cfgs[i].Selector(together.SelectorAcceleratorType)).To(Equal("nvidia-h100-80gb"))

		By("Together has the deployment in the traffic split with the asked bounds")
		ep, err := api.GetV2Endpoint(ctx, es.ProjectID, es.ID)
		Expect(err).NotTo(HaveOccurred())
		w, ok := ep.Weight(es.DeploymentID)
		Expect(ok && w > 0).To(BeTrue(), "the deployment is not routed: %+v", ep.TrafficSplit)
		dep, err := api.GetV2Deployment(ctx, es.ProjectID, es.ID, es.DeploymentID)
		Expect(err).NotTo(HaveOccurred())
		Expect(dep.Autoscaling.MinReplicas).To(BeEquivalentTo(1))
		Expect(dep.Autoscaling.MaxReplicas).To(BeEquivalentTo(2))

		By("the Deployment env var holds the endpoint's inference name")
		Expect(modelEnv("app")).To(Equal(es.Name))
		Expect(ft.Status.DeployedModel).To(Equal(es.Name))

		By("v1 endpoint creation was never attempted; one endpoint and one deployment were created")
		Expect(sim.CountCalls(http.MethodPost, "/v1/endpoints")).To(Equal(0))
		Expect(sim.CountCalls(http.MethodPost, v2Endpoints)).To(Equal(1))
		Expect(sim.CountCalls(http.MethodPost, v2Endpoints+"/"+es.ID+"/deployments")).To(Equal(1))
	})

	DescribeTable("deleting the resource",
		func(policy togetherv1.DeletionPolicy) {
			key := newFineTune("deleted", spec(), nil, policy)
			drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
				g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
			})
			es, jobID := get(key).Status.Endpoint, get(key).Status.JobID

			By("someone else's endpoint, with a deployment of the same model, shares the project")
			other, err := api.CreateV2Endpoint(ctx, es.ProjectID, together.CreateV2EndpointRequest{Name: "someone-else"})
			Expect(err).NotTo(HaveOccurred())
			otherDep, err := api.CreateV2Deployment(ctx, es.ProjectID, other.ID, together.CreateV2DeploymentRequest{
				Name: "theirs", Model: es.Model, Config: es.Config, Autoscaling: together.V2Autoscaling{MinReplicas: 1, MaxReplicas: 1}})
			Expect(err).NotTo(HaveOccurred())

			reasons := deleteAndDrain(key)

			_, otherErr := api.GetV2Deployment(ctx, es.ProjectID, other.ID, otherDep.ID)
			Expect(otherErr).NotTo(HaveOccurred(), "a deployment the resource did not create was touched")
			Expect(sim.CountCalls(http.MethodDelete, v2Endpoints+"/"+other.ID)).To(Equal(0))
			Expect(sim.CountCalls(http.MethodPatch, v2Endpoints+"/"+other.ID+"/deployments/"+otherDep.ID)).To(Equal(0))

			depPath := v2Endpoints + "/" + es.ID + "/deployments/" + es.DeploymentID
			_, epErr := api.GetV2Endpoint(ctx, es.ProjectID, es.ID)
			if policy == togetherv1.DeletionPolicyRetain {
				Expect(epErr).NotTo(HaveOccurred(), "Retain deleted the endpoint")
				Expect(sim.CountCalls(http.MethodDelete, depPath)).To(Equal(0))
				Expect(sim.CountCalls(http.MethodPatch, depPath)).To(Equal(0))
				return
			}
			Expect(together.IsNotFound(epErr)).To(BeTrue(), "the endpoint outlived the resource: %v", epErr)
			stop, delDep, delEp := callIndex(http.MethodPatch, depPath), callIndex(http.MethodDelete, depPath), callIndex(http.MethodDelete, v2Endpoints+"/"+es.ID)
			Expect(stop).To(BeNumerically(">=", 0), "the deployment was never scaled to 0/0")
			Expect(delDep).To(BeNumerically(">", stop), "the deployment was deleted before it was stopped")
			Expect(delEp).To(BeNumerically(">", delDep), "the endpoint was deleted before its deployment")
			Expect(reasons).To(ContainElement(togetherv1.ReasonDeletingEndpoint), "deletion never said it was waiting for the deployment to stop")
			Expect(sim.CountCalls(http.MethodPost, "/v1/fine-tunes/"+jobID+"/cancel")).To(Equal(0), "the finished job was cancelled")
		},
		Entry("Cancel stops and deletes the deployment, then the endpoint, and only those", togetherv1.DeletionPolicyCancel),
		Entry("Retain leaves them", togetherv1.DeletionPolicyRetain),
	)

	It("creates one endpoint and one deployment when the status write after creating them is lost, and adopts them by name", func() {
		var lost atomic.Bool
		loseStatusWrites(func() bool {
			return len(sim.V2Deployments()) > 0 && lost.CompareAndSwap(false, true)
		})
		newDeployment("app")
		key := newFineTune("crash", spec(), &togetherv1.DeploymentTarget{Name: "app"}, "")
		drive(key, func(g Gomega, _ *togetherv1.TogetherFineTune) { g.Expect(lost.Load()).To(BeTrue()) })
		Expect(get(key).Status.Endpoint).To(Or(BeNil(), HaveField("ID", BeEmpty())), "the endpoint's ID was lost with the status write")

		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		Expect(sim.CountCalls(http.MethodPost, v2Endpoints)).To(Equal(1), "a second endpoint was created")
		Expect(sim.V2Endpoints()).To(HaveLen(1))
		Expect(sim.V2Deployments()).To(HaveLen(1), "a second deployment was created")
		es := get(key).Status.Endpoint
		Expect(sim.V2Endpoints()).To(ConsistOf(es.Name))
		Expect(sim.V2Deployments()).To(ConsistOf(es.DeploymentID))
		Expect(modelEnv("app")).To(Equal(es.Name))
		evs := drainEvents(recorder)
		Expect(evs).To(ContainElement(And(ContainSubstring("Normal EndpointAdopted"), ContainSubstring(es.Name))))
		Expect(evs).To(ContainElement(ContainSubstring("Normal EndpointDeploymentAdopted")))
	})

	It("keeps the endpoint, with a Warning, when someone added a deployment to it, and deletes only its own deployment", func() {
		key := newFineTune("shared", spec(), nil, "")
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		})
		es := get(key).Status.Endpoint
		theirs, err := api.CreateV2Deployment(ctx, es.ProjectID, es.ID, together.CreateV2DeploymentRequest{
			Name: "added-by-hand", Model: es.Model, Config: es.Config, Autoscaling: together.V2Autoscaling{MinReplicas: 1, MaxReplicas: 1}})
		Expect(err).NotTo(HaveOccurred())
		drainEvents(recorder)

		deleteAndDrain(key)
		_, err = api.GetV2Deployment(ctx, es.ProjectID, es.ID, es.DeploymentID)
		Expect(together.IsNotFound(err)).To(BeTrue(), "the resource's own deployment was not deleted: %v", err)
		_, err = api.GetV2Deployment(ctx, es.ProjectID, es.ID, theirs.ID)
		Expect(err).NotTo(HaveOccurred(), "a deployment the resource did not create was deleted")
		_, err = api.GetV2Endpoint(ctx, es.ProjectID, es.ID)
		Expect(err).NotTo(HaveOccurred(), "the endpoint was deleted although it still holds someone's deployment")
		Expect(drainEvents(recorder)).To(ContainElement(And(ContainSubstring("Warning EndpointKept"), ContainSubstring(theirs.Name))))
	})

	It("waits, creating nothing, while a completed job names no registry model", func() {
		sim.AddFineTune(togethersim.FineTune{ID: "ft-no-object", Status: "completed", Model: "m", ModelOutputName: "sim-user/m-old"})
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: "no-object", Namespace: ns}, Spec: togetherv1.TogetherFineTuneSpec{
			JobID: "ft-no-object", Deploy: &togetherv1.DeploySpec{Endpoint: spec()}}}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		key := client.ObjectKeyFromObject(ft)
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			c := condition(ft, togetherv1.ReconcilingCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(togetherv1.ReasonWaitingForModelObject))
		})
		Expect(sim.V2Endpoints()).To(BeEmpty())
	})

	It("deletes a v1 endpoint recorded before the move to v2 through the v1 API", func() {
		v1, err := sim.AddV1Endpoint(togethersim.V1EndpointRequest{Model: "m", Hardware: "1x_nvidia_a100_80gb_sxm", MinReplicas: 1, MaxReplicas: 1})
		Expect(err).NotTo(HaveOccurred())
		// An adopted job keeps its endpoint unless the resource says Cancel,
		// which for an adopted job is allowed only with spec.deploy.endpoint:
		// the endpoint is the resource's own.
		ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: ns}, Spec: togetherv1.TogetherFineTuneSpec{JobID: "ft-legacy",
			DeletionPolicy: togetherv1.DeletionPolicyCancel,
			Deploy:         &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb", MinReplicas: 1, MaxReplicas: 1}}}}
		Expect(k8sClient.Create(ctx, ft)).To(Succeed())
		key := client.ObjectKeyFromObject(ft)
		_, _ = r.Reconcile(ctx, ctrl.Request{NamespacedName: key}) // adds the finalizer
		ft = get(key)
		ft.Status.Endpoint = &togetherv1.EndpointStatus{ID: v1.ID, Name: v1.Name, State: "STARTED"}
		Expect(k8sClient.Status().Update(ctx, ft)).To(Succeed())

		deleteAndDrain(key)
		Expect(sim.CountCalls(http.MethodDelete, "/v1/endpoints/"+v1.ID)).To(Equal(1))
		_, err = api.GetEndpoint(ctx, v1.ID)
		Expect(together.IsNotFound(err)).To(BeTrue(), "the v1 endpoint outlived the resource: %v", err)
	})

	It("deletes an endpoint and deployment whose creation was never recorded", func() {
		loseStatusWrites(func() bool { return len(sim.V2Endpoints()) > 0 })
		key := newFineTune("orphan", spec(), nil, "")
		drive(key, func(g Gomega, _ *togetherv1.TogetherFineTune) { g.Expect(sim.V2Deployments()).To(HaveLen(1)) })
		Expect(get(key).Status.Endpoint).To(Or(BeNil(), HaveField("ID", BeEmpty())))
		deleteAndDrain(key)
		Expect(sim.V2Deployments()).To(BeEmpty(), "the deployment outlived the resource that created it")
		Expect(sim.V2Endpoints()).To(BeEmpty(), "the endpoint outlived the resource that created it")
	})

	DescribeTable("a 403 from Together is reported as what it is, not as a mistake in spec.deploy.endpoint",
		func(code, wantText string) {
			sim.RefuseV2EndpointCreate(http.StatusForbidden, code, "Forbidden for this project.", 0)
			key := newFineTune("forbidden", spec(), nil, "")
			drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
				g.Expect(condition(ft, togetherv1.StalledCondition)).NotTo(BeNil())
			})
			c := condition(get(key), togetherv1.StalledCondition)
			Expect(c.Reason).To(Equal(togetherv1.ReasonEndpointForbidden))
			Expect(c.Message).To(And(ContainSubstring("403"), ContainSubstring(code), ContainSubstring(wantText), ContainSubstring("not a problem in spec.deploy.endpoint")))
			Expect(c.Message).NotTo(ContainSubstring("Fix spec.deploy.endpoint"))
			Expect(sim.V2Endpoints()).To(BeEmpty())
			Expect(sim.CountCalls(http.MethodPost, "/v1/endpoints")).To(Equal(0))
		},
		Entry("a project without dedicated endpoints", "dedicated_endpoints_not_enabled", "not allowed"),
		Entry("the v1 retirement code", together.CodeV1EndpointCreateDisabled, "v1 endpoint creation is retired"),
	)

	It("stalls naming what the model offers when no config runs on the asked hardware, creating nothing", func() {
		key := newFineTune("no-config", &togetherv1.EndpointSpec{Hardware: "8xnvidia-b200", MinReplicas: 1, MaxReplicas: 1}, nil, "")
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.StalledCondition)).NotTo(BeNil())
		})
		c := condition(get(key), togetherv1.StalledCondition)
		Expect(c.Reason).To(Equal(togetherv1.ReasonNoMatchingConfig))
		Expect(c.Message).To(And(ContainSubstring("8xnvidia-b200"), ContainSubstring("1xnvidia-h100-80gb"), ContainSubstring("spec.deploy.endpoint.hardware")))
		Expect(sim.V2Endpoints()).To(BeEmpty())
	})

	It("stalls with Together's message when the deployment fails", func() {
		sim.FailNextV2Deployment("Timed out waiting for readiness")
		key := newFineTune("failing", spec(), nil, "")
		drive(key, func(g Gomega, ft *togetherv1.TogetherFineTune) {
			g.Expect(condition(ft, togetherv1.StalledCondition)).NotTo(BeNil())
		})
		ft := get(key)
		c := condition(ft, togetherv1.StalledCondition)
		Expect(c.Reason).To(Equal(togetherv1.ReasonEndpointFailed))
		Expect(c.Message).To(ContainSubstring("Timed out waiting for readiness"))
		Expect(ft.Status.Endpoint.State).To(Equal(together.DeploymentFailed))
	})
})

var _ = Describe("FineTune endpoint naming and config choice", func() {
	ft := func(name, uid string) *togetherv1.TogetherFineTune {
		return &togetherv1.TogetherFineTune{
			ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)},
			Spec:       togetherv1.TogetherFineTuneSpec{Deploy: &togetherv1.DeploySpec{Endpoint: &togetherv1.EndpointSpec{}}},
		}
	}
	It("names the endpoint after the resource with a tag from its UID, as a DNS label", func() {
		a, b := ft("My.Model", "uid-1"), ft("My.Model", "uid-2")
		Expect(endpointName(a)).To(MatchRegexp(`^my-model-[0-9a-f]{8}$`))
		Expect(endpointName(a)).To(Equal(endpointName(ft("My.Model", "uid-1"))), "the name must be stable across reconciles")
		Expect(endpointName(a)).NotTo(Equal(endpointName(b)), "two resources must not share an endpoint")
		long := ft(strings.Repeat("x", 250), "uid-3")
		Expect(len(endpointName(long))).To(BeNumerically("<=", 63))
		a.Spec.Deploy.Endpoint.NamePrefix = "bot"
		Expect(endpointName(a)).To(HavePrefix("bot-"))
		a.Status.Attempt = 2
		Expect(deploymentName(a)).To(Equal(deploymentNamePrefix(a) + "2"))
	})

	It("chooses the config by accelerator selectors, preferring balanced, and explains a miss", func() {
		cfg := func(id, typ, count, opt string) together.V2Config {
			return together.V2Config{ID: id, ProjectID: "proj_platform", Selectors: []together.V2ConfigSelector{
				{Key: "accelerator_type", Value: typ}, {Key: "accelerator_count", Value: count}, {Key: "optimization", Value: opt}}}
		}
		cfgs := []together.V2Config{cfg("cr_c", "nvidia-h100-80gb", "1", "latency"), cfg("cr_b", "nvidia-h100-80gb", "1", "balanced"), cfg("cr_a", "nvidia-a100-80gb", "1", "balanced")}
		pick := func(s togetherv1.EndpointSpec) string {
			c, problem := selectConfig(cfgs, &s, "projects/p/models/ml_1")
			if c == nil {
				return problem
			}
			return c.ID
		}
		Expect(pick(togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb"})).To(Equal("cr_b"))
		Expect(pick(togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb", Optimization: "latency"})).To(Equal("cr_c"))
		Expect(pick(togetherv1.EndpointSpec{Config: "projects/proj_platform/configs/cr_a"})).To(Equal("cr_a"))
		Expect(pick(togetherv1.EndpointSpec{Config: "cr_a"})).To(Equal("cr_a"))
		Expect(pick(togetherv1.EndpointSpec{Config: "cr_zzz"})).To(ContainSubstring("spec.deploy.endpoint.config"))
		Expect(pick(togetherv1.EndpointSpec{Hardware: "2xnvidia-h100-80gb"})).To(And(ContainSubstring("1xnvidia-a100-80gb (balanced) cr_a"), ContainSubstring("hardware")))
		c, problem := selectConfig(nil, &togetherv1.EndpointSpec{Hardware: "1xnvidia-h100-80gb"}, "projects/p/models/ml_1")
		Expect(c).To(BeNil())
		Expect(problem).To(ContainSubstring("no deployment config revisions"))
	})
})
