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

package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/togethersim"
	"github.com/together-operator/together-operator/pkg/push"
)

const testSecret = "whsec-test-secret"

var nsCounter int

func newNamespace() string {
	nsCounter++
	name := fmt.Sprintf("wh-%d-%d", GinkgoParallelProcess(), nsCounter)
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}

func makeSubscription(ns, name string, mut func(*togetherv1.TogetherWebhookSubscription)) *togetherv1.TogetherWebhookSubscription {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-secret"}, StringData: map[string]string{"secret": testSecret}}
	Expect(k8s.Create(ctx, secret)).To(Succeed())
	awaitCachedSecret(client.ObjectKeyFromObject(secret), secret.ResourceVersion)
	sub := &togetherv1.TogetherWebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: secret.Name},
			// Most specs sign the short way; those about the signature
			// policy set their own.
			AcceptedSignatures: []togetherv1.SignatureScheme{togetherv1.SignatureStandardWebhooks, togetherv1.SignatureHexHMAC}},
	}
	if mut != nil {
		mut(sub)
	}
	Expect(k8s.Create(ctx, sub)).To(Succeed())
	Eventually(func() error {
		return srv.Client.Get(ctx, client.ObjectKeyFromObject(sub), &togetherv1.TogetherWebhookSubscription{})
	}).Should(Succeed(), "waiting for the cache to see the subscription")
	return sub
}

// makeFineTune creates a fine-tune whose status already tracks jobID, as
// the fine-tune reconciler leaves it after submitting, and waits until the
// manager's cache can find it by job ID.
func makeFineTune(ns, name, jobID string) *togetherv1.TogetherFineTune {
	ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "base", TrainingFile: "file-1"}}}
	Expect(k8s.Create(ctx, ft)).To(Succeed())
	ft.Status = togetherv1.TogetherFineTuneStatus{JobID: jobID, Phase: togetherv1.FineTunePending, Attempt: 1}
	Expect(k8s.Status().Update(ctx, ft)).To(Succeed())
	Eventually(func() int {
		var l togetherv1.TogetherFineTuneList
		Expect(srv.Client.List(ctx, &l, client.InNamespace(ns), client.MatchingFields{intake.IndexFineTuneJobID: jobID})).To(Succeed())
		return len(l.Items)
	}).Should(Equal(1), "waiting for the cache to find the fine-tune by job ID")
	return ft
}

func envelope(id, typ string, data any) []byte {
	b, err := json.Marshal(map[string]any{"id": id, "type": typ, "created_at": time.Now().UTC().Format(time.RFC3339), "data": data})
	Expect(err).NotTo(HaveOccurred())
	return b
}

type request struct {
	method, path string
	body         []byte
	header       http.Header
}

func hexSigned(path string, body []byte) request {
	return request{method: http.MethodPost, path: path, body: body, header: http.Header{
		"Content-Type": {"application/json"}, push.HeaderSignature: {push.Hex([]byte(testSecret), body)}}}
}

// standardSigned signs body the Standard Webhooks way, with a webhook-id
// derived from the body (one message, one id, as a sender keeps it across
// its retries).
func standardSigned(path string, body []byte, at time.Time) request {
	sum := sha256.Sum256(body)
	id := "msg_" + hex.EncodeToString(sum[:8])
	return request{method: http.MethodPost, path: path, body: body, header: http.Header{
		"Content-Type":              {"application/json"},
		push.HeaderWebhookID:        {id},
		push.HeaderWebhookTimestamp: {strconv.FormatInt(at.Unix(), 10)},
		push.HeaderWebhookSignature: {push.Standard([]byte(testSecret), id, at, body)},
	}}
}

func send(r request) (int, string) {
	req, err := http.NewRequest(r.method, endpoint.URL+r.path, bytes.NewReader(r.body))
	Expect(err).NotTo(HaveOccurred())
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

func getFineTune(ns, name string) *togetherv1.TogetherFineTune {
	ft := &togetherv1.TogetherFineTune{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ft)).To(Succeed())
	return ft
}

func eventsFor(ns, name, reason string) int {
	var l eventsv1.EventList
	Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
	n := 0
	for _, e := range l.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			n++
		}
	}
	return n
}

var _ = Describe("Events endpoint", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("answers each bad delivery with its 4xx and writes nothing", func() {
		makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.Events = []togetherv1.EventType{togetherv1.EventFineTuneCheckpoint, togetherv1.EventFineTuneCompleted}
		})
		other := newNamespace()
		makeSubscription(other, "sub", nil)
		makeFineTune(ns, "ft", "ft-bad")
		before := getFineTune(ns, "ft").ResourceVersion

		path := PathFor(ns, "sub")
		good := envelope("e1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-bad", "step": 5, "loss": 1.0})
		otherBody := envelope("e1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-bad", "step": 6})
		stale := standardSigned(path, good, time.Now().Add(-10*time.Minute))
		future := standardSigned(path, good, time.Now().Add(10*time.Minute))
		noSig := hexSigned(path, good)
		noSig.header.Del(push.HeaderSignature)
		garbled := hexSigned(path, good)
		garbled.header.Set(push.HeaderSignature, "sha256=not-hex")
		wrongSecret := hexSigned(path, good)
		wrongSecret.header.Set(push.HeaderSignature, push.Hex([]byte("another-secret"), good))
		otherSig := hexSigned(path, good)
		otherSig.header.Set(push.HeaderSignature, push.Hex([]byte(testSecret), otherBody))
		stdWrongID := standardSigned(path, good, time.Now())
		stdWrongID.header.Set(push.HeaderWebhookID, "msg_2")
		textPlain := hexSigned(path, good)
		textPlain.header.Set("Content-Type", "text/plain")
		oversize := bytes.Repeat([]byte(" "), 1<<20+1)
		get := hexSigned(path, good)
		get.method = http.MethodGet

		cases := []struct {
			name string
			req  request
			code int
		}{
			{"missing signature", noSig, 401},
			{"garbled signature", garbled, 401},
			{"wrong secret", wrongSecret, 401},
			{"signature over a different body", otherSig, 401},
			{"stale timestamp", stale, 401},
			{"future timestamp", future, 401},
			{"standard signature for another id", stdWrongID, 401},
			{"oversize body", hexSigned(path, oversize), 413},
			{"not JSON", textPlain, 415},
			{"truncated JSON", hexSigned(path, good[:len(good)-5]), 400},
			{"wrong type for a field", hexSigned(path, envelope("e2", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-bad", "step": "five"})), 400},
			{"missing id", hexSigned(path, []byte(`{"type":"fine_tune.checkpoint","data":{"fine_tune_id":"ft-bad","step":5}}`)), 400},
			{"unknown type", hexSigned(path, envelope("e3", "fine_tune.started", map[string]any{"fine_tune_id": "ft-bad"})), 202},
			{"type the subscription does not ask for", hexSigned(path, envelope("e4", "fine_tune.failed", map[string]any{"fine_tune_id": "ft-bad", "error_message": "x"})), 202},
			{"subscription that does not exist", hexSigned(PathFor(ns, "nope"), good), 401},
			{"namespace of another subscription", hexSigned(PathFor(other, "sub"), good), 202},
			{"GET instead of POST", get, 405},
		}
		for _, tc := range cases {
			code, body := send(tc.req)
			Expect(code).To(Equal(tc.code), "%s: body %s", tc.name, body)
			if code == 401 {
				Expect(body).To(ContainSubstring("signature verification failed"), tc.name)
				Expect(body).NotTo(ContainSubstring(testSecret), tc.name)
			}
		}
		Expect(getFineTune(ns, "ft").ResourceVersion).To(Equal(before), "a rejected delivery wrote to the API server")
		Expect(getFineTune(ns, "ft").Status.Step).To(BeZero())
	})

	It("accepts both signature forms and the previous secret during rotation", func() {
		sub := makeSubscription(ns, "sub", nil)
		makeFineTune(ns, "ft", "ft-rot")
		path := PathFor(ns, "sub")

		code, _ := send(hexSigned(path, envelope("a", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-rot", "step": 1})))
		Expect(code).To(Equal(200))
		code, _ = send(standardSigned(path, envelope("b", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-rot", "step": 2}), time.Now()))
		Expect(code).To(Equal(200))

		By("rotating: the new secret under secret, the old one under previousSecret")
		var s corev1.Secret
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: sub.Spec.SecretRef.Name}, &s)).To(Succeed())
		s.Data = map[string][]byte{"secret": []byte("brand-new"), "previousSecret": []byte(testSecret)}
		Expect(k8s.Update(ctx, &s)).To(Succeed())
		body := envelope("c", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-rot", "step": 3})
		withNew := hexSigned(path, body)
		withNew.header.Set(push.HeaderSignature, push.Hex([]byte("brand-new"), body))
		// A failed verification refreshes the cached secret at most once a
		// second, so the new secret is accepted within about a second.
		Eventually(func() int { code, _ := send(withNew); return code }).WithTimeout(5*time.Second).Should(Equal(200), "waiting for the rotated secret to be accepted")
		code, _ = send(hexSigned(path, envelope("d", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-rot", "step": 4})))
		Expect(code).To(Equal(200), "the previous secret is still accepted")
		Expect(getFineTune(ns, "ft").Status.Step).To(Equal(int64(4)))
	})

	It("applies 1,000 shuffled, duplicated deliveries to exactly the in-order status", func() {
		makeSubscription(ns, "sub", nil)
		const jobs = 4
		var all [][]byte
		want := map[string]togetherv1.TogetherFineTuneStatus{}
		for j := range jobs {
			job := fmt.Sprintf("ft-storm-%d", j)
			makeFineTune(ns, fmt.Sprintf("ft-%d", j), job)
			st := togetherv1.TogetherFineTuneStatus{JobID: job, Phase: togetherv1.FineTunePending}
			for s := 1; s <= 150; s++ {
				ev := event.Event{ID: fmt.Sprintf("%s-%d", job, s), Type: togetherv1.EventFineTuneCheckpoint, JobID: job, Step: int64(s), Loss: ptr.To(10.0 / float64(s))}
				lattice.ApplyFineTune(&st, ev, metav1.Now())
				all = append(all, envelope(ev.ID, string(ev.Type), map[string]any{"fine_tune_id": job, "step": s, "loss": *ev.Loss}))
			}
			done := event.Event{ID: job + "-done", Type: togetherv1.EventFineTuneCompleted, JobID: job, ModelName: "me/" + job, EvalLoss: ptr.To(0.5)}
			lattice.ApplyFineTune(&st, done, metav1.Now())
			all = append(all, envelope(done.ID, string(done.Type), map[string]any{"fine_tune_id": job, "model_name": done.ModelName, "eval_loss": 0.5}))
			want[job] = st
		}
		rng := rand.New(rand.NewPCG(42, 42))
		deliveries := append([][]byte(nil), all...)
		for len(deliveries) < 1000 {
			deliveries = append(deliveries, all[rng.IntN(len(all))])
		}
		rng.Shuffle(len(deliveries), func(i, k int) { deliveries[i], deliveries[k] = deliveries[k], deliveries[i] })

		path := PathFor(ns, "sub")
		work := make(chan []byte)
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer GinkgoRecover()
				for b := range work {
					code, _ := send(hexSigned(path, b))
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}
			}()
		}
		for _, b := range deliveries {
			work <- b
		}
		close(work)
		wg.Wait()
		Expect(codes).To(Equal(map[int]int{200: len(deliveries)}))

		for j := range jobs {
			got := getFineTune(ns, fmt.Sprintf("ft-%d", j)).Status
			w := want[got.JobID]
			Expect(got.Phase).To(Equal(togetherv1.FineTuneSucceeded))
			Expect(got.Step).To(Equal(w.Step))
			Expect(*got.Loss).To(Equal(*w.Loss))
			Expect(got.OutputModel).To(Equal(w.OutputModel))
			Expect(got.Checkpoints).To(HaveLen(len(w.Checkpoints)))
			for i := range w.Checkpoints {
				Expect(got.Checkpoints[i].Step).To(Equal(w.Checkpoints[i].Step))
			}
		}
	})

	It("answers 503 while writes fail, records nothing, and lands the retried delivery once", func() {
		makeSubscription(ns, "sub", nil)
		makeFineTune(ns, "ft", "ft-outage")
		req := hexSigned(PathFor(ns, "sub"), envelope("done-1", "fine_tune.completed", map[string]any{"fine_tune_id": "ft-outage", "model_name": "me/out"}))

		failWrites.Store(true)
		code, body := send(req)
		failWrites.Store(false)
		Expect(code).To(Equal(503), body)
		Expect(getFineTune(ns, "ft").Status.Phase).To(Equal(togetherv1.FineTunePending))

		code, body = send(req)
		Expect(code).To(Equal(200), body)
		Expect(body).To(ContainSubstring("applied"))
		rv := getFineTune(ns, "ft").ResourceVersion
		code, body = send(req)
		Expect(code).To(Equal(200))
		Expect(body).To(ContainSubstring("duplicate"))
		ft := getFineTune(ns, "ft")
		Expect(ft.ResourceVersion).To(Equal(rv))
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(ft.Status.ProcessedEvents).To(Equal([]string{"done-1"}))
	})

	It("converges a push and a poll of the same transition to one effect and one Event", func() {
		makeSubscription(ns, "sub", nil)
		makeFineTune(ns, "ft", "ft-both")
		code, _ := send(hexSigned(PathFor(ns, "sub"), envelope("push-1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-both", "step": 10, "loss": 0.3})))
		Expect(code).To(Equal(200))
		ft := getFineTune(ns, "ft")
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
		rv := ft.ResourceVersion

		nn := types.NamespacedName{Namespace: ns, Name: "ft"}
		for _, ev := range []event.Event{
			{ID: "poll:ft-both:status:running", Type: event.TypeFineTuneStatus, JobID: "ft-both", RemoteStatus: "running"},
			{ID: "poll:ft-both:checkpoint:10", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-both", Step: 10, Loss: ptr.To(0.3)},
		} {
			Expect(applier.ApplyTo(ctx, intake.KindFineTune, nn, ev).Outcome).To(Equal(lattice.Stale), ev.ID)
		}
		Expect(getFineTune(ns, "ft").ResourceVersion).To(Equal(rv), "the poll of the same transition wrote again")
		Eventually(func() int { return eventsFor(ns, "ft", "JobRunning") }).Should(Equal(1), "waiting for the JobRunning Event")
		Consistently(func() int { return eventsFor(ns, "ft", "JobRunning") }, "500ms").Should(Equal(1))
	})

	It("records an event for a new attempt's job even right after a write for the previous one", func() {
		makeSubscription(ns, "sub", nil)
		makeFineTune(ns, "ft", "ft-attempt-1")
		path := PathFor(ns, "sub")
		code, _ := send(hexSigned(path, envelope("a1-c1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-attempt-1", "step": 5})))
		Expect(code).To(Equal(200))

		By("the reconciler starts attempt 2 with a new job")
		ft := getFineTune(ns, "ft")
		ft.Status = togetherv1.TogetherFineTuneStatus{JobID: "ft-attempt-2", Phase: togetherv1.FineTunePending, Attempt: 2,
			Attempts: []togetherv1.FineTuneAttempt{{Attempt: 1, JobID: "ft-attempt-1", Phase: togetherv1.FineTuneFailed}}}
		Expect(k8s.Status().Update(ctx, ft)).To(Succeed())

		By("the event for the new job arrives before the cache has seen that write")
		cacheBehind.Store(true)
		DeferCleanup(func() { cacheBehind.Store(false) })
		code, body := send(hexSigned(path, envelope("a2-c1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-attempt-2", "step": 3})))
		Expect(code).To(Equal(200), body)
		Expect(body).To(ContainSubstring("applied"))
		ft = getFineTune(ns, "ft")
		Expect(ft.Status.JobID).To(Equal("ft-attempt-2"))
		Expect(ft.Status.Step).To(Equal(int64(3)))
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneRunning))
	})

	It("does not adopt a job a resource already tracks when the cache has not seen it yet", func() {
		makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		makeFineTune(ns, "mine", "ft-tracked")
		cacheBehind.Store(true)
		DeferCleanup(func() { cacheBehind.Store(false) })

		code, body := send(hexSigned(PathFor(ns, "adopter"), envelope("t1", "fine_tune.completed", map[string]any{"fine_tune_id": "ft-tracked", "model_name": "me/tracked"})))
		Expect(code).To(Equal(200), body)
		Expect(getFineTune(ns, "mine").Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		var all togetherv1.TogetherFineTuneList
		Expect(k8s.List(ctx, &all, client.InNamespace(ns))).To(Succeed())
		Expect(all.Items).To(HaveLen(1), "an adopted duplicate was created")
	})

	It("acknowledges unmatched events with 202 and one Warning, or adopts them when asked", func() {
		makeSubscription(ns, "plain", nil)
		for i := range 3 {
			code, _ := send(hexSigned(PathFor(ns, "plain"), envelope(fmt.Sprint("u", i), "fine_tune.completed", map[string]any{"fine_tune_id": "ft-nobody", "model_name": "m"})))
			Expect(code).To(Equal(202))
		}
		Eventually(func() int { return eventsFor(ns, "plain", "UnmatchedEvent") }).Should(Equal(1), "waiting for the UnmatchedEvent Warning")
		Consistently(func() int { return eventsFor(ns, "plain", "UnmatchedEvent") }, "500ms").Should(Equal(1))
		var evs eventsv1.EventList
		Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		for _, e := range evs.Items {
			Expect(e.Note).NotTo(ContainSubstring("ft-nobody"), "an Event names a job no resource here tracks (it may be another team's)")
		}

		makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
		// A job the operator created for this namespace (its tag in the
		// output model's name), whose resource is gone.
		suiteSim.AddFineTune(togethersim.FineTune{ID: "ft-orphan", Model: "org/base", Status: "completed",
			ModelOutputName: "sim-user/base-n" + togetherv1.NamespaceTag(ns) + "-1234abcd-a1b2c3"})
		code, _ := send(hexSigned(PathFor(ns, "adopter"), envelope("a1", "fine_tune.completed", map[string]any{"fine_tune_id": "ft-orphan", "model_name": "me/orphan"})))
		Expect(code).To(Equal(200))
		ft := getFineTune(ns, event.ObjectName("ft", "ft-orphan"))
		Expect(ft.Spec.JobID).To(Equal("ft-orphan"))
		Expect(ft.Status.Phase).To(Equal(togetherv1.FineTuneSucceeded))
		Expect(ft.Status.OutputModel).To(Equal("me/orphan"))
	})

	It("creates a migration from model.deprecated, naming the replacement from the subscription when the event has none", func() {
		makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) {
			s.Spec.ModelReplacements = []togetherv1.ModelReplacement{{ModelID: "org/old", ReplacementModel: "org/new"}}
			s.Spec.Migration = &togetherv1.MigrationTemplate{Strategy: togetherv1.MigrationImmediate}
		})
		body := envelope("dep-1", "model.deprecated", map[string]any{"model_id": "org/old", "sunset_date": "2027-02-01"})
		code, _ := send(hexSigned(PathFor(ns, "sub"), body))
		Expect(code).To(Equal(200))
		var m togetherv1.TogetherModelMigration
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: deprecation.MigrationName("org/old")}, &m)).To(Succeed())
		Expect(m.Spec.ReplacementModel).To(Equal("org/new"))
		Expect(m.Spec.SunsetDate).To(Equal("2027-02-01"))
		Expect(m.Spec.Strategy).To(Equal(togetherv1.MigrationImmediate))
		code, _ = send(hexSigned(PathFor(ns, "sub"), body))
		Expect(code).To(Equal(200))

		code, _ = send(hexSigned(PathFor(ns, "sub"), envelope("dep-2", "model.deprecated", map[string]any{"model_id": "org/unknown", "sunset_date": "2027-02-01"})))
		Expect(code).To(Equal(202))
		Expect(strings.Contains(deprecation.MigrationName("org/unknown"), "deprecated-")).To(BeTrue())
	})
})
