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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/pkg/push"
)

// rawRequest writes a request's head (and no body) on a connection of its
// own and returns the connection and a reader of the answer; the body, if
// the spec sends one, is written by the spec.
func rawRequest(base, path string, contentLength int, header http.Header) (net.Conn, *bufio.Reader) {
	u, err := url.Parse(base)
	Expect(err).NotTo(HaveOccurred())
	conn, err := net.Dial("tcp", u.Host)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", path, u.Host, contentLength)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_, err = conn.Write([]byte(b.String()))
	Expect(err).NotTo(HaveOccurred())
	return conn, bufio.NewReader(conn)
}

// answerOf reads the response to a raw request, failing the spec if none
// comes within d (the endpoint is waiting for a body it should not need).
func answerOf(conn net.Conn, r *bufio.Reader, d time.Duration) *http.Response {
	Expect(conn.SetReadDeadline(time.Now().Add(d))).To(Succeed())
	resp, err := http.ReadResponse(r, nil)
	Expect(err).NotTo(HaveOccurred(), "no answer within %s: the endpoint waited for the body", d)
	return resp
}

func deprecationBody(id, model, replacement, sunset string, at time.Time) []byte {
	b, err := json.Marshal(map[string]any{"id": id, "type": "model.deprecated", "created_at": at.UTC().Format(time.RFC3339),
		"data": map[string]any{"model_id": model, "replacement_model": replacement, "sunset_date": sunset}})
	Expect(err).NotTo(HaveOccurred())
	return b
}

var _ = Describe("Events endpoint under attack", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	Context("order of work", func() {
		It("answers a request without the signature headers its subscription requires before reading its body", func() {
			makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AcceptedSignatures = nil })
			// 60 KiB announced, none sent: an endpoint that reads the body
			// first waits for it.
			conn, r := rawRequest(endpoint.URL, PathFor(ns, "sub"), 60<<10, http.Header{"Content-Type": {"application/json"}})
			resp := answerOf(conn, r, 3*time.Second)
			Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))

			By("a hex signature alone, to a subscription that does not accept it")
			conn, r = rawRequest(endpoint.URL, PathFor(ns, "sub"), 60<<10, http.Header{"Content-Type": {"application/json"}, push.HeaderSignature: {strings.Repeat("a", 64)}})
			Expect(answerOf(conn, r, 3*time.Second).StatusCode).To(Equal(http.StatusUnauthorized))

			By("a Standard Webhooks timestamp outside the tolerance")
			old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
			conn, r = rawRequest(endpoint.URL, PathFor(ns, "sub"), 60<<10, http.Header{"Content-Type": {"application/json"},
				push.HeaderWebhookID: {"msg"}, push.HeaderWebhookTimestamp: {old}, push.HeaderWebhookSignature: {"v1,AAAA"}})
			Expect(answerOf(conn, r, 3*time.Second).StatusCode).To(Equal(http.StatusUnauthorized))
		})

		It("answers an unknown subscription exactly as a bad signature", func() {
			makeSubscription(ns, "sub", nil)
			body := envelope("e1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-x", "step": 1})
			bad := standardSigned(PathFor(ns, "sub"), body, time.Now())
			bad.header.Set(push.HeaderWebhookSignature, push.Standard([]byte("guess"), bad.header.Get(push.HeaderWebhookID), time.Now(), body))
			unknown := bad
			unknown.path = PathFor(ns, "nope")
			codeBad, bodyBad := send(bad)
			codeUnknown, bodyUnknown := send(unknown)
			Expect(codeBad).To(Equal(http.StatusUnauthorized))
			Expect(codeUnknown).To(Equal(codeBad))
			Expect(bodyUnknown).To(Equal(bodyBad))

			By("a good delivery keeps its connection (only unread bodies close theirs)")
			makeFineTune(ns, "ft", "ft-x")
			resp := doRequest(endpoint.URL, standardSigned(PathFor(ns, "sub"), body, time.Now()))
			Expect(resp.StatusCode).To(Equal(http.StatusOK))
			Expect(resp.Close).To(BeFalse())
		})

		It("holds at most its in-flight budget of bodies, answering 503 with Retry-After beyond it", func() {
			makeSubscription(ns, "sub", nil)
			const capBytes = 4 << 10
			hs, _ := countedEndpoint(func(s *Server) { s.MaxBodyBytes, s.MaxInFlightBytes = capBytes, 2*capBytes })
			slow := func() (net.Conn, *bufio.Reader) {
				h := standardSigned(PathFor(ns, "sub"), []byte("{}"), time.Now()).header
				return rawRequest(hs.URL, PathFor(ns, "sub"), capBytes, h)
			}
			// Two slow senders of forged-but-well-formed deliveries hold the
			// whole budget while they trickle their bodies.
			c1, _ := slow()
			c2, _ := slow()
			_, _ = c1.Write([]byte("{"))
			_, _ = c2.Write([]byte("{"))
			Eventually(func(g Gomega) {
				conn, r := slow()
				g.Expect(conn.SetReadDeadline(time.Now().Add(2 * time.Second))).To(Succeed())
				resp, err := http.ReadResponse(r, nil)
				g.Expect(err).NotTo(HaveOccurred(), "no answer: the endpoint is waiting to read a third body beyond its budget")
				g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
				g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
			}).Should(Succeed())
		})
	})

	Context("signature policy", func() {
		It("requires Standard Webhooks of a new subscription and never falls back to the hex form", func() {
			sub := makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AcceptedSignatures = nil })
			var stored togetherv1.TogetherWebhookSubscription
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sub), &stored)).To(Succeed())
			Expect(stored.Spec.AcceptedSignatures).To(Equal([]togetherv1.SignatureScheme{togetherv1.SignatureStandardWebhooks}))
			makeFineTune(ns, "ft", "ft-pol")
			path := PathFor(ns, "sub")

			body := envelope("c1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-pol", "step": 1})
			code, _ := send(hexSigned(path, body))
			Expect(code).To(Equal(http.StatusUnauthorized), "the hex form is refused unless the subscription allows it")

			By("a delivery signed both ways, its Standard headers stripped (a downgrade)")
			both := standardSigned(path, body, time.Now())
			both.header.Set(push.HeaderSignature, push.Hex([]byte(testSecret), body))
			stripped := hexSigned(path, body)
			code, _ = send(stripped)
			Expect(code).To(Equal(http.StatusUnauthorized))
			code, _ = send(both)
			Expect(code).To(Equal(http.StatusOK))

			By("a subscription that allows both: bad Standard headers with a good hex signature")
			makeSubscription(ns, "both", nil)
			mixed := standardSigned(PathFor(ns, "both"), body, time.Now())
			mixed.header.Set(push.HeaderWebhookSignature, "v1,"+strings.Repeat("A", 44))
			mixed.header.Set(push.HeaderSignature, push.Hex([]byte(testSecret), body))
			code, _ = send(mixed)
			Expect(code).To(Equal(http.StatusUnauthorized), "Standard headers present: verified that way only")
		})

		It("answers a replayed delivery 200 without applying it again: a deleted migration stays deleted", func() {
			makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AcceptedSignatures = nil })
			path := PathFor(ns, "sub")
			captured := standardSigned(path, deprecationBody("dep-r", "org/old-r", "org/new-r", "2027-03-01", time.Now()), time.Now())
			code, _ := send(captured)
			Expect(code).To(Equal(http.StatusOK))
			nn := types.NamespacedName{Namespace: ns, Name: deprecation.MigrationName("org/old-r")}
			var m togetherv1.TogetherModelMigration
			Expect(k8s.Get(ctx, nn, &m)).To(Succeed())

			By("a person deletes the migration to roll back; the captured delivery is replayed")
			Expect(k8s.Delete(ctx, &m)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, nn, &togetherv1.TogetherModelMigration{})) }).Should(BeTrue())
			for range 3 {
				code, body := send(captured)
				Expect(code).To(Equal(http.StatusOK), body)
				Expect(body).To(ContainSubstring("already acknowledged"))
			}
			Consistently(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, nn, &togetherv1.TogetherModelMigration{})) }, "500ms").Should(BeTrue(),
				"a replay re-created the deleted migration")
		})
	})

	Context("no amplification", func() {
		It("costs no Secret read for 100 deliveries to a subscription whose Secret is missing", func() {
			sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nosecret"},
				Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "missing"}}}
			Expect(k8s.Create(ctx, sub)).To(Succeed())
			Eventually(func() error {
				return mgrClient.Get(ctx, client.ObjectKeyFromObject(sub), &togetherv1.TogetherWebhookSubscription{})
			}).Should(Succeed())
			hs, api := countedEndpoint(nil)
			for i := range 100 {
				r := standardSigned(PathFor(ns, "nosecret"), envelope(fmt.Sprint("m", i), "fine_tune.checkpoint", map[string]any{"fine_tune_id": "x", "step": 1}), time.Now())
				code, _ := sendTo(hs.URL, r)
				Expect(code).To(Equal(http.StatusUnauthorized))
			}
			Expect(api.total()).To(BeZero(), "API-server requests for 100 deliveries: the cache says the Secret does not exist")
		})

		It("serves a subscription as soon as the cache sees its Secret, after refusing deliveries while it was missing", func() {
			sub := &togetherv1.TogetherWebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"},
				Spec: togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: "late-secret"}}}
			Expect(k8s.Create(ctx, sub)).To(Succeed())
			Eventually(func() error {
				return mgrClient.Get(ctx, client.ObjectKeyFromObject(sub), &togetherv1.TogetherWebhookSubscription{})
			}).Should(Succeed())
			makeFineTune(ns, "ft", "ft-late")
			hs, api := countedEndpoint(nil)
			deliver := func(id string, step int) int {
				code, _ := sendTo(hs.URL, standardSigned(PathFor(ns, "late"), envelope(id, "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-late", "step": step}), time.Now()))
				return code
			}
			Expect(deliver("early", 1)).To(Equal(http.StatusUnauthorized), "no Secret yet")

			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late-secret"}, StringData: map[string]string{"secret": testSecret}}
			Expect(k8s.Create(ctx, secret)).To(Succeed())
			awaitCachedSecret(client.ObjectKeyFromObject(secret), secret.ResourceVersion)
			Expect(deliver("on-time", 2)).To(Equal(http.StatusOK), "the Secret exists and the cache knows it: no window in which a missing Secret is remembered")
			Expect(api.reads.Load()).To(BeNumerically("==", 1), "one read of the Secret's first version")
		})

		It("costs at most one Secret read for 50 concurrent bad signatures", func() {
			makeSubscription(ns, "sub", nil)
			hs, api := countedEndpoint(nil)
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer GinkgoRecover()
					body := envelope(fmt.Sprint("b", i), "fine_tune.checkpoint", map[string]any{"fine_tune_id": "x", "step": 1})
					r := standardSigned(PathFor(ns, "sub"), body, time.Now())
					r.header.Set(push.HeaderWebhookSignature, push.Standard([]byte("guess"), r.header.Get(push.HeaderWebhookID), time.Now(), body))
					code, _ := sendTo(hs.URL, r)
					Expect(code).To(Equal(http.StatusUnauthorized))
				}()
			}
			wg.Wait()
			Expect(api.total()).To(BeNumerically("<=", 1), "API-server requests for 50 bad signatures (one read of the Secret's version, no refresh)")
		})

		It("confirms an unmatched job ID with the API server once, not once per delivery", func() {
			makeSubscription(ns, "sub", nil)
			hs, api := countedEndpoint(nil)
			for i := range 100 {
				r := standardSigned(PathFor(ns, "sub"), envelope(fmt.Sprint("u", i), "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-nobody", "step": i + 1}), time.Now())
				code, _ := sendTo(hs.URL, r)
				Expect(code).To(Equal(http.StatusAccepted))
			}
			// One Secret read, one live list for the job ID.
			Expect(api.total()).To(BeNumerically("<=", 2), "API-server requests for 100 unmatched deliveries")
		})

		It("answers 429 with Retry-After past a source's or a subscription's bucket", func() {
			makeSubscription(ns, "sub", nil)
			makeFineTune(ns, "ft", "ft-bucket")
			perSource, _ := countedEndpoint(func(s *Server) { s.SourceRate, s.SourceBurst = 1, 3 })
			perSub, _ := countedEndpoint(func(s *Server) { s.SubscriptionRate, s.SubscriptionBurst = 1, 3 })
			for _, tc := range []struct {
				name string
				url  string
				req  func(i int) request
			}{
				{"source", perSource.URL, func(int) request {
					return request{method: http.MethodPost, path: PathFor(ns, "nope"), header: http.Header{}}
				}},
				{"subscription", perSub.URL, func(i int) request {
					return standardSigned(PathFor(ns, "sub"), envelope(fmt.Sprint("k", i), "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-bucket", "step": i + 1}), time.Now())
				}},
			} {
				codes := map[int]int{}
				var retryAfter string
				for i := range 10 {
					resp := doRequest(tc.url, tc.req(i))
					codes[resp.StatusCode]++
					if resp.StatusCode == http.StatusTooManyRequests {
						retryAfter = resp.Header.Get("Retry-After")
					}
				}
				Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 6), "%s bucket: %v", tc.name, codes)
				Expect(retryAfter).NotTo(BeEmpty(), tc.name)
			}
		})
	})

	Context("deprecations", func() {
		It("keeps the newest deprecation by event time, whatever the arrival order", func() {
			makeSubscription(ns, "sub", nil)
			t1, t2 := time.Now().Add(-2*time.Minute), time.Now().Add(-time.Minute)
			older := func(model string) []byte { return deprecationBody("old-"+model, model, "org/a", "2027-01-01", t1) }
			newer := func(model string) []byte { return deprecationBody("new-"+model, model, "org/b", "2027-06-01", t2) }
			for _, order := range []string{"newer first", "older first"} {
				model := "org/m-" + strings.ReplaceAll(order, " ", "-")
				bodies := [][]byte{newer(model), older(model)}
				if order == "older first" {
					bodies = [][]byte{older(model), newer(model)}
				}
				for _, b := range append(bodies, bodies[0]) { // and a retry of the first
					code, body := send(hexSigned(PathFor(ns, "sub"), b))
					Expect(code).To(Equal(http.StatusOK), body)
				}
				var m togetherv1.TogetherModelMigration
				Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: deprecation.MigrationName(model)}, &m)).To(Succeed())
				Expect(m.Spec.ReplacementModel).To(Equal("org/b"), order)
				Expect(m.Spec.SunsetDate).To(Equal("2027-06-01"), order)
			}
		})

		It("merges into a migration another replica created a moment ago instead of acknowledging unread", func() {
			t1 := time.Now().Add(-time.Minute)
			model := "org/raced"
			nn := types.NamespacedName{Namespace: ns, Name: deprecation.MigrationName(model)}
			first := &deprecation.Writer{Client: k8s, Reader: apiReader}
			ev := func(id, replacement, sunset string, at time.Time) event.Event {
				return event.Event{ID: id, Type: togetherv1.EventModelDeprecated, JobID: model, Time: at,
					Deprecation: &push.ModelDeprecated{ModelID: model, ReplacementModel: replacement, SunsetDate: sunset}}
			}
			Expect(first.Apply(ctx, ns, ev("r1", "org/a", "2027-01-01", t1), nil).Outcome).To(Equal(lattice.Applied))
			// The second replica read before the first one created it.
			second := &deprecation.Writer{Client: k8s, Reader: &notFoundOnce{Reader: apiReader}}
			r := second.Apply(ctx, ns, ev("r2", "org/b", "2027-06-01", t1.Add(time.Second)), nil)
			Expect(r.Outcome).To(Equal(lattice.Applied))
			var m togetherv1.TogetherModelMigration
			Expect(k8s.Get(ctx, nn, &m)).To(Succeed())
			Expect(m.Spec.ReplacementModel).To(Equal("org/b"))
			Expect(m.Spec.SunsetDate).To(Equal("2027-06-01"))
		})
	})

	Context("the submission window", func() {
		It("answers 503 for a job a resource may be submitting, never adopts it, and applies it once recorded", func() {
			makeSubscription(ns, "adopter", func(s *togetherv1.TogetherWebhookSubscription) { s.Spec.AdoptUnmatched = true })
			ft := &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "submitting"},
				Spec: togetherv1.TogetherFineTuneSpec{Training: &togetherv1.TrainingSpec{Model: "base", TrainingFile: "file-1"}}}
			Expect(k8s.Create(ctx, ft)).To(Succeed())
			ft.Status = togetherv1.TogetherFineTuneStatus{Phase: togetherv1.FineTunePending, Attempt: 1,
				Submission: &togetherv1.SubmissionMarker{Attempt: 1, Tag: "abcd1234", StartedAt: metav1.Now()}}
			Expect(k8s.Status().Update(ctx, ft)).To(Succeed())

			req := standardSigned(PathFor(ns, "adopter"), envelope("w1", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-new-job", "step": 5}), time.Now())
			for _, behind := range []bool{false, true} { // with and without the cache having seen the marker
				cacheBehind.Store(behind)
				resp := doRequest(endpoint.URL, req)
				cacheBehind.Store(false)
				Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable), "cache behind: %v", behind)
				Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
			}
			var all togetherv1.TogetherFineTuneList
			Expect(k8s.List(ctx, &all, client.InNamespace(ns))).To(Succeed())
			Expect(all.Items).To(HaveLen(1), "the job was adopted into a second resource")

			By("the reconciler records the job and clears the marker; the sender's retry lands")
			ft = getFineTune(ns, "submitting")
			ft.Status.JobID, ft.Status.Submission = "ft-new-job", nil
			Expect(k8s.Status().Update(ctx, ft)).To(Succeed())
			Eventually(func() int { code, _ := send(req); return code }).Should(Equal(http.StatusOK))
			Expect(getFineTune(ns, "submitting").Status.Step).To(Equal(int64(5)))
			Expect(k8s.List(ctx, &all, client.InNamespace(ns))).To(Succeed())
			Expect(all.Items).To(HaveLen(1))
		})
	})

	Context("terminal means terminal", func() {
		It("ignores a checkpoint pushed after the job ended at its final step", func() {
			makeSubscription(ns, "sub", nil)
			makeFineTune(ns, "ft", "ft-done")
			path := PathFor(ns, "sub")
			for _, b := range [][]byte{
				envelope("c100", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-done", "step": 100, "loss": 0.1}),
				envelope("done", "fine_tune.completed", map[string]any{"fine_tune_id": "ft-done", "model_name": "me/done", "step": 100}),
			} {
				code, body := send(hexSigned(path, b))
				Expect(code).To(Equal(http.StatusOK), body)
			}
			before := getFineTune(ns, "ft")
			code, body := send(hexSigned(path, envelope("late", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-done", "step": 110, "loss": 0.5})))
			Expect(code).To(Equal(http.StatusOK))
			Expect(body).To(ContainSubstring("stale"))
			after := getFineTune(ns, "ft")
			Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
			Expect(after.Status.Step).To(Equal(int64(100)))
			Expect(*after.Status.Loss).To(Equal(0.1))
		})
	})
})

// notFoundOnce answers its first Get with NotFound, as a reader does that
// looked a moment before another replica created the object.
type notFoundOnce struct {
	client.Reader
	done bool
}

func (r *notFoundOnce) Get(ctx2 context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if !r.done {
		r.done = true
		return apierrors.NewNotFound(togetherv1.GroupVersion.WithResource("togethermodelmigrations").GroupResource(), key.Name)
	}
	return r.Reader.Get(ctx2, key, obj, opts...)
}

func sendTo(base string, r request) (int, string) {
	resp := doRequest(base, r)
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func doRequest(base string, r request) *http.Response {
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(string(r.body)))
	Expect(err).NotTo(HaveOccurred())
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(resp.Body.Close)
	return resp
}
