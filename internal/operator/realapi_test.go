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
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/poller"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// These specs run the poller against a simulator of their own, driven step
// by step, and count its calls where they are served: at the simulator.

// ownSim starts a simulator whose clock only moves on Advance, and a client
// for it.
func ownSim(totalSteps int) (*togethersim.Server, *together.Client) {
	s := togethersim.New(togethersim.Options{APIKey: simKey, TotalSteps: totalSteps})
	_, err := s.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	c, err := together.New(together.Options{BaseURL: s.URL(), APIKey: simKey, MaxRetries: -1})
	Expect(err).NotTo(HaveOccurred())
	return s, c
}

// followedJob creates a fine-tune that follows job id: the suite's
// simulator holds a stalled copy so that the suite's reconciler adopts it,
// and own holds the job the spec's poller reads.
func followedJob(ns, name, id string) types.NamespacedName {
	sim.AddStalledFineTune(togethersim.FineTune{ID: id, Model: "m"})
	ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: togetherv1.TogetherFineTuneSpec{JobID: id}}
	Expect(k8s.Create(ctx, ft)).To(Succeed())
	key := client.ObjectKeyFromObject(ft)
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, ft)).To(Succeed())
		g.Expect(ft.Status.JobID).To(Equal(id))
	}).Should(Succeed(), "the reconciler should adopt job %s", id)
	return key
}

func routeCalls(s *togethersim.Server, route string) []togethersim.Call {
	var out []togethersim.Call
	for _, c := range s.Calls() {
		if c.Route == route {
			out = append(out, c)
		}
	}
	return out
}

func getFT(key types.NamespacedName) *togetherv1.TogetherFineTune {
	ft := &togetherv1.TogetherFineTune{}
	ExpectWithOffset(1, k8s.Get(ctx, key, ft)).To(Succeed())
	return ft
}

var _ = Describe("Poller against the API as published", func() {
	It("reads loss, step and eval loss from the job's metrics rows, one filtered call per moving job per cycle", func() {
		ns := newNamespace()
		own, api := ownSim(8)
		id := fmt.Sprintf("ft-metrics-%s", ns)
		own.AddFineTune(togethersim.FineTune{ID: id, Status: "running", Model: "m", ValidationFile: "file-v", NEvals: 4})
		key := followedJob(ns, "metrics", id)
		p := &poller.Poller{Client: k8s, API: api, Applier: parts.Applier}

		var stepsSeen []int64
		var evalSeen []float64
		var remainingSeen bool
		for cycle := 0; cycle < 20 && getFT(key).Status.Phase != togetherv1.FineTuneSucceeded; cycle++ {
			own.Advance()
			before := getFT(key).Status.Step
			listsBefore, metricsBefore := len(routeCalls(own, "GET /v1/fine-tunes")), len(routeCalls(own, "GET /v1/fine-tunes/{id}/metrics"))
			_, err := p.PollJobs(ctx)
			Expect(err).NotTo(HaveOccurred())
			// Counted at the server: one list, at most one metrics read.
			Expect(len(routeCalls(own, "GET /v1/fine-tunes")) - listsBefore).To(Equal(1))
			metrics := routeCalls(own, "GET /v1/fine-tunes/{id}/metrics")[metricsBefore:]
			Expect(len(metrics)).To(BeNumerically("<=", 1))
			for _, c := range metrics {
				q, err := url.ParseQuery(c.Query)
				Expect(err).NotTo(HaveOccurred())
				Expect(q.Get("resolution")).To(Equal("20"), "training rows are capped by the API's own filter")
				if before > 0 {
					Expect(q.Get("global_step_from")).To(Equal(fmt.Sprint(before)), "only rows from the recorded step on are read")
				}
			}
			Expect(routeCalls(own, "GET /v1/fine-tunes/{id}/events")).To(BeEmpty(), "a running job's lifecycle comes from the list")
			Eventually(func(g Gomega) {
				ft := getFT(key)
				g.Expect(ft.Status.Step).To(BeNumerically(">=", before))
			}).Should(Succeed())
			ft := getFT(key)
			if ft.Status.Step > 0 && (len(stepsSeen) == 0 || stepsSeen[len(stepsSeen)-1] != ft.Status.Step) {
				stepsSeen = append(stepsSeen, ft.Status.Step)
				Expect(ft.Status.Loss).NotTo(BeNil(), "step %d has its train/loss", ft.Status.Step)
			}
			if ft.Status.EvalLoss != nil && ft.Status.Phase == togetherv1.FineTuneRunning {
				evalSeen = append(evalSeen, *ft.Status.EvalLoss)
			}
			remainingSeen = remainingSeen || ft.Status.SecondsRemaining != nil
		}
		ft := getFT(key)
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(ft.Status.Step).To(BeEquivalentTo(8))
		Expect(len(stepsSeen)).To(BeNumerically(">=", 4), "the step should move while training: %v", stepsSeen)
		Expect(len(evalSeen)).To(BeNumerically(">=", 2), "the eval loss should move while training")
		Expect(evalSeen[0]).To(BeNumerically(">", evalSeen[len(evalSeen)-1]))
		Expect(ft.Status.EvalLoss).To(HaveValue(Equal(0.42)), "the finished model's eval/loss")
		Expect(ft.Status.Checkpoints).To(HaveLen(8))
		for i, c := range ft.Status.Checkpoints {
			Expect(c.Step).To(BeEquivalentTo(i + 1))
			Expect(c.Loss).NotTo(BeNil())
		}
		Expect(remainingSeen).To(BeTrue(), "progress.seconds_remaining should show while the job runs")
		Expect(ft.Status.SecondsRemaining).To(BeNil(), "no estimate once the job has ended")

		By("a job that does not move costs nothing more than the list")
		metricsBefore := len(routeCalls(own, "GET /v1/fine-tunes/{id}/metrics"))
		_, err := p.PollJobs(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(routeCalls(own, "GET /v1/fine-tunes/{id}/metrics")).To(HaveLen(metricsBefore))
	})

	It("makes a rejected key visible on the resources it stops, once, and says when it recovers", func() {
		ns := newNamespace()
		own, api := ownSim(5)
		id := fmt.Sprintf("ft-401-%s", ns)
		own.AddStalledFineTune(togethersim.FineTune{ID: id, Model: "m"})
		key := followedJob(ns, "unauthorized", id)
		rec := &namedRecorder{}
		p := &poller.Poller{Client: k8s, API: api, Applier: parts.Applier, Recorder: rec}

		own.Faults().RejectKey(true)
		for range 3 {
			_, err := p.PollJobs(ctx)
			Expect(together.IsUnauthorized(err)).To(BeTrue(), "cycle error: %v", err)
		}
		got := rec.about(key)
		Expect(got).To(HaveLen(1), "one Warning per change, not one per cycle: %v", got)
		Expect(got[0]).To(And(HavePrefix("Warning "+poller.ReasonPollFailed), ContainSubstring("401"), ContainSubstring("API key")))

		own.Faults().RejectKey(false)
		_, err := p.PollJobs(ctx)
		Expect(err).NotTo(HaveOccurred())
		got = rec.about(key)
		Expect(got).To(HaveLen(2))
		Expect(got[1]).To(HavePrefix("Normal " + poller.ReasonPollRecovered))
	})

	It("applies the rest of a cycle when one resource's write fails, and forgets resources that are gone", func() {
		ns := newNamespace()
		own, api := ownSim(5)
		idA, idB := fmt.Sprintf("ft-a-%s", ns), fmt.Sprintf("ft-b-%s", ns)
		own.AddFineTune(togethersim.FineTune{ID: idA, Status: "running", Model: "m"})
		own.AddFineTune(togethersim.FineTune{ID: idB, Status: "running", Model: "m"})
		broken := followedJob(ns, "a-broken", idA)
		fine := followedJob(ns, "b-fine", idB)
		own.Advance()
		failing := func(obj client.Object) error {
			if obj.GetName() == broken.Name && obj.GetNamespace() == broken.Namespace {
				return apierrors.NewServiceUnavailable("injected: this resource's status write fails")
			}
			return nil
		}
		applier := &intake.Applier{Reader: parts.Applier.Reader, Client: failingStatus{Client: parts.Applier.Client, fail: failing},
			MaxConflictRetries: 1, WriteTimeout: 2 * time.Second}
		rec := &namedRecorder{}
		p := &poller.Poller{Client: k8s, API: api, Applier: applier, Recorder: rec}
		_, err := p.PollJobs(ctx)
		Expect(err).To(HaveOccurred(), "the failed write is reported")
		Eventually(func(g Gomega) {
			g.Expect(getFT(fine).Status.Step).To(BeNumerically(">=", 1), "the other resource's state is applied in the same cycle")
		}).Should(Succeed())
		Expect(getFT(broken).Status.Step).To(BeZero())
		Expect(rec.about(broken)).To(ConsistOf(And(HavePrefix("Warning "+poller.ReasonPollFailed), ContainSubstring("injected"))))
		Expect(rec.about(fine)).To(BeEmpty())
		Expect(p.MemoryEntries()).To(BeNumerically(">", 0))

		By("deleting both resources empties the poller's per-job memory on the next cycle")
		for _, key := range []types.NamespacedName{broken, fine} {
			Expect(k8s.Delete(ctx, getFT(key))).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key, &togetherv1.TogetherFineTune{})) }).Should(BeTrue())
		}
		_, _ = p.PollJobs(ctx)
		Expect(p.MemoryEntries()).To(BeZero())
	})
})

var _ = Describe("Deprecations from /v2/supported-models", func() {
	It("joins the catalogue's deprecated status with the subscription's replacement and sunset, listing each namespace's workloads once, and one failed namespace does not stop the others", func() {
		own, api := ownSim(5)
		own.DeprecateModel("org/old-a", "", "")
		own.DeprecateModel("org/old-b", "", "")
		bad, good := newNamespace(), newNamespace()
		for _, ns := range []string{bad, good} {
			createSubscription(ns, "catalogue", func(s *togetherv1.TogetherWebhookSubscription) {
				s.Spec.ModelReplacements = []togetherv1.ModelReplacement{
					{ModelID: "org/old-a", ReplacementModel: "org/new-a", SunsetDate: "2027-03-01"},
					{ModelID: "org/old-b", ReplacementModel: "org/new-b"},
				}
				s.Spec.Migration = &togetherv1.MigrationTemplate{Strategy: togetherv1.MigrationManual}
			})
			Expect(k8s.Create(ctx, deployment(ns, "uses-a", "org/old-a"))).To(Succeed())
			Expect(k8s.Create(ctx, deployment(ns, "uses-b", "org/old-b"))).To(Succeed())
		}
		// A second subscription in the healthy namespace: the scan is per
		// namespace, not per subscription.
		createSubscription(good, "catalogue-too", nil)
		var mu sync.Mutex
		lists := map[string]int{}
		setLists := map[string]int{}
		counting := listHook{Client: k8s, hook: func(list client.ObjectList, opts []client.ListOption) error {
			o := (&client.ListOptions{}).ApplyOptions(opts)
			switch list.(type) {
			case *appsv1.DeploymentList:
				mu.Lock()
				lists[o.Namespace]++
				mu.Unlock()
				if o.Namespace == bad {
					return apierrors.NewServiceUnavailable("injected: listing Deployments fails here")
				}
			case *appsv1.StatefulSetList:
				mu.Lock()
				setLists[o.Namespace]++
				mu.Unlock()
			}
			return nil
		}}
		p := &poller.Poller{Client: counting, API: api, Applier: parts.Applier, ModelsInterval: time.Millisecond}
		_, err := p.PollOnce(ctx)
		Expect(err).To(MatchError(ContainSubstring("injected")), "the failed namespace is reported")
		Expect(lists[good]).To(Equal(1), "one Deployment list per namespace per scan, whatever the number of deprecated models and subscriptions")
		Expect(setLists[good]).To(Equal(1), "one StatefulSet list per namespace per scan")
		Expect(routeCalls(own, "GET /v2/supported-models")).NotTo(BeEmpty())
		Expect(routeCalls(own, "GET /v1/models")).To(BeEmpty(), "v1 /models has no deprecation field")
		Eventually(func(g Gomega) {
			var l togetherv1.TogetherModelMigrationList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(good))).To(Succeed())
			g.Expect(l.Items).To(HaveLen(2))
			byModel := map[string]togetherv1.TogetherModelMigrationSpec{}
			for _, m := range l.Items {
				byModel[m.Spec.ModelID] = m.Spec
			}
			g.Expect(byModel["org/old-a"].ReplacementModel).To(Equal("org/new-a"))
			g.Expect(byModel["org/old-a"].SunsetDate).To(Equal("2027-03-01"), "the sunset comes from the subscription")
			g.Expect(byModel["org/old-b"].ReplacementModel).To(Equal("org/new-b"))
		}).Should(Succeed(), "the healthy namespace gets its migrations although the other failed")
	})

	It("never delays job polling behind a slow catalogue read", func() {
		ns := newNamespace()
		own, api := ownSim(6)
		createSubscription(ns, "slow-catalogue", nil)
		own.Faults().SetRoute("GET", "/v2/supported-models", togethersim.RouteFault{Delay: 20 * time.Second})
		id := fmt.Sprintf("ft-busy-%s", ns)
		own.AddFineTune(togethersim.FineTune{ID: id, Status: "running", Model: "m"})
		key := followedJob(ns, "busy", id)
		p := &poller.Poller{Client: k8s, API: api, Applier: parts.Applier, Interval: 20 * time.Millisecond, IdleInterval: 20 * time.Millisecond, ModelsInterval: time.Hour}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Start(pctx) }()
		DeferCleanup(func() { stop(); <-done })
		Eventually(func(g Gomega) {
			own.Advance()
			g.Expect(getFT(key).Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		}).WithTimeout(10*time.Second).Should(Succeed(), "fine-tune polling should go on while the catalogue read hangs")
	})
})

// namedRecorder keeps each Event with the object it is about.
type namedRecorder struct {
	mu  sync.Mutex
	evs map[types.NamespacedName][]string
}

func (r *namedRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	obj, ok := regarding.(client.Object)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.evs == nil {
		r.evs = map[types.NamespacedName][]string{}
	}
	k := client.ObjectKeyFromObject(obj)
	r.evs[k] = append(r.evs[k], eventtype+" "+reason+" "+fmt.Sprintf(note, args...))
}

func (r *namedRecorder) about(k types.NamespacedName) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs[k]...)
}

// failingStatus fails the status writes fail says to.
type failingStatus struct {
	client.Client
	fail func(client.Object) error
}

func (f failingStatus) Status() client.SubResourceWriter {
	return failingWriter{SubResourceWriter: f.Client.Status(), fail: f.fail}
}

type failingWriter struct {
	client.SubResourceWriter
	fail func(client.Object) error
}

func (w failingWriter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if err := w.fail(obj); err != nil {
		return err
	}
	return w.SubResourceWriter.Update(ctx, obj, opts...)
}

func (w failingWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if err := w.fail(obj); err != nil {
		return err
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// listHook runs hook before each List and fails the List with its error.
type listHook struct {
	client.Client
	hook func(client.ObjectList, []client.ListOption) error
}

func (l listHook) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := l.hook(list, opts); err != nil {
		return err
	}
	return l.Client.List(ctx, list, opts...)
}
