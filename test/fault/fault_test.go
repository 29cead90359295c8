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

package fault

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// delivery is one POST a sender makes.
type delivery struct {
	id   string
	body []byte
}

// workload is, per fine-tune, its events in the order they happened:
// checkpoints 1..steps, then completion.
func workload(jobs map[string]togetherv1.TogetherFineTuneStatus, steps int) map[string][][]byte {
	out := map[string][][]byte{}
	for job := range jobs {
		for s := 1; s <= steps; s++ {
			out[job] = append(out[job], checkpointBody(fmt.Sprintf("%s-cp-%d", job, s), job, int64(s)))
		}
		out[job] = append(out[job], completedBody(job+"-done", job))
	}
	return out
}

// interleave flattens a workload into one stream, jobs interleaved, each
// job's events in order.
func interleave(sent map[string][][]byte) []delivery {
	var out []delivery
	for i := 0; ; i++ {
		added := false
		for _, bodies := range sent {
			if i < len(bodies) {
				ev, err := event.Decode(bodies[i])
				Expect(err).NotTo(HaveOccurred())
				out = append(out, delivery{id: ev.ID, body: bodies[i]})
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

// chaos applies a webhook sender's delivery faults, as the simulator's
// SetDelivery knobs describe them: each delivery is duplicated with
// probability dup, the stream is shuffled within windows of reorder, and a
// fraction delayed is held back and sent after a delay.
func chaos(stream []delivery, dup float64, reorder int, delayed float64, seed uint64) (now, later []delivery) {
	rng := rand.New(rand.NewPCG(seed, seed^0xc4a05))
	var all []delivery
	for _, d := range stream {
		all = append(all, d)
		if rng.Float64() < dup {
			all = append(all, d)
		}
	}
	for start := 0; start < len(all); start += reorder {
		w := all[start:min(start+reorder, len(all))]
		rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
	}
	for _, d := range all {
		if rng.Float64() < delayed {
			later = append(later, d)
		} else {
			now = append(now, d)
		}
	}
	return now, later
}

// send delivers the stream from senders goroutines, and the held-back
// deliveries after delay, and waits for all of them.
func send(s *sender, path string, now, later []delivery, senders int, delay time.Duration) {
	GinkgoHelper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(now) {
					return
				}
				s.deliver(i, path, now[i].id, now[i].body, s.patience)
			}
		}()
	}
	for i, d := range later {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			<-time.After(delay)
			s.deliver(i, path, d.id, d.body, s.patience)
		}()
	}
	wg.Wait()
}

var _ = Describe("Sender chaos", func() {
	It("converges every fine-tune to the in-order result under duplicates, reordering and delays", func() {
		// 2,000 events in `make test`, 10,000 under SOAK=1.
		crs, steps := 8, 249
		if soak {
			crs, steps = 20, 499
		}
		f := newFixture("chaos")
		jobs := f.runningFineTunes("job", crs)
		in := startIntake(nil)
		defer in.stop()
		waitCached(in, f, jobs)

		sent := workload(jobs, steps)
		stream := interleave(sent)
		Expect(len(stream)).To(Equal(crs * (steps + 1)))
		now, later := chaos(stream, 0.30, 64, 0.05, 7)
		Expect(len(now)+len(later)).To(BeNumerically(">", len(stream)*12/10), "the chaos must add duplicates")
		log := newLedger()
		s := newSender(func(int) string { return in.url }, log)
		send(s, f.path, now, later, 16, 300*time.Millisecond)

		expectConverged(f, jobs, sent, log, true)
		for job := range jobs {
			got := getFineTune(f, job)
			Expect(got.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
			Expect(got.Status.Step).To(Equal(int64(steps)))
		}
	})
})

var _ = Describe("Two replicas", func() {
	It("applies nothing twice when senders and retries are split across two endpoints", func() {
		crs, steps := 6, 99
		if soak {
			crs, steps = 12, 399
		}
		f := newFixture("replicas")
		jobs := f.runningFineTunes("job", crs)
		// The poller of the leader reads these jobs once at start: running,
		// no new events, so it adds nothing the senders do not.
		sim := newSimulator()
		for job := range jobs {
			sim.AddFineTune(togethersim.FineTune{ID: job, Status: "running", Model: "base"})
		}
		a, b := startReplica(sim), startReplica(sim)
		defer a.stop()
		defer b.stop()
		waitCached(a.intake, f, jobs)
		waitCached(b.intake, f, jobs)

		sent := workload(jobs, steps)
		now, later := chaos(interleave(sent), 0.30, 32, 0.05, 11)
		urls := []string{a.url, b.url}
		log := newLedger()
		// Delivery i goes to replica i%2; a duplicate of it usually lands
		// on the other one, so both write the same objects at once.
		s := newSender(func(i int) string { return urls[i%2] }, log)
		send(s, f.path, now, later, 16, 200*time.Millisecond)

		expectConverged(f, jobs, sent, log, true)
		Eventually(func() int { return leaders(a, b) }).Should(Equal(1), "exactly one replica runs the reconcilers and the poller")
	})
})

var _ = Describe("Two replicas submitting", func() {
	It("creates each fine-tune's job once, across both replicas and a leader handover", func() {
		const n = 4
		s := newSimulator()
		f := newFixture("submit")
		file := s.AddFile("train.jsonl", "fine-tune", []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`+"\n"))
		posts := func() int { return s.CountCalls("POST", "/v1/fine-tunes") }
		before := posts()
		for i := range n {
			Expect(k8s.Create(ctx, &togetherv1.TogetherFineTune{
				ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: fmt.Sprintf("train-%d", i)},
				Spec:       togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "base", TrainingFile: file.ID}},
			})).To(Succeed())
		}
		statuses := func() []togetherv1.TogetherFineTuneStatus {
			var l togetherv1.TogetherFineTuneList
			Expect(k8s.List(ctx, &l, client.InNamespace(f.ns))).To(Succeed())
			out := make([]togetherv1.TogetherFineTuneStatus, 0, len(l.Items))
			for _, ft := range l.Items {
				out = append(out, ft.Status)
			}
			return out
		}
		jobIDs := func() []string {
			var ids []string
			for _, st := range statuses() {
				ids = append(ids, st.JobID)
			}
			slices.Sort(ids)
			return ids
		}

		a, b := startReplica(s), startReplica(s)
		defer a.stop()
		defer b.stop()
		Eventually(jobIDs, time.Minute).ShouldNot(ContainElement(""), "waiting for every fine-tune to record its job")
		submitted := jobIDs()
		Expect(posts() - before).To(Equal(n))

		By("the leader goes away; the other replica takes over the same resources")
		leader, other := a, b
		if leaders(b) == 1 {
			leader, other = b, a
		}
		s.Advance()
		s.Advance()
		s.Advance()
		leader.stop()
		lists := s.CountCalls("GET", "/v1/fine-tunes")
		Eventually(func() int { return leaders(other) }, time.Minute).Should(Equal(1), "waiting for the other replica to be elected")
		// The new leader's poller lists the jobs once it starts; after that
		// its reconcilers have had the resources too.
		Eventually(func() int { return s.CountCalls("GET", "/v1/fine-tunes") }, time.Minute).Should(BeNumerically(">", lists), "waiting for the new leader's poller to list the jobs")
		Eventually(statuses, time.Minute).Should(HaveEach(HaveField("Phase", togetherv1.FineTuneRunning)), "waiting for every fine-tune to be Running")
		Consistently(posts, 2*time.Second).Should(Equal(before+n), "a job was submitted twice")
		Expect(jobIDs()).To(Equal(submitted))

		By("events about the submitted jobs are acknowledged only once stored")
		log := newLedger()
		snd := newSender(func(int) string { return other.url }, log)
		for i, job := range submitted {
			id := fmt.Sprintf("handover-cp-%d", i)
			Expect(snd.deliver(0, f.path, id, checkpointBody(id, job, 1000), time.Minute)).To(Equal(http.StatusOK), "delivering %s", id)
		}
		expectLedger(f.history, log)
	})
})

func getFineTune(f fixture, name string) *togetherv1.TogetherFineTune {
	GinkgoHelper()
	ft := &togetherv1.TogetherFineTune{}
	Expect(k8s.Get(ctx, keyOf(f, name), ft)).To(Succeed())
	return ft
}

// keyOf names a fine-tune of a fixture.
func keyOf(f fixture, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: f.ns, Name: name}
}
