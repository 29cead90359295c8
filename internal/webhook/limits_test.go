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
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// These specs check the endpoint's limits where a sender meets them: the
// answer to a real HTTP request, and what the API server holds afterwards.

// deliverTo is send against another endpoint. With stream set the body is
// sent chunked, with no Content-Length, as a streaming sender does.
func deliverTo(base string, r request, stream bool) (int, string) {
	GinkgoHelper()
	var body io.Reader = bytes.NewReader(r.body)
	if stream {
		body = io.MultiReader(bytes.NewReader(r.body)) // hides the length from net/http
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	Expect(err).NotTo(HaveOccurred())
	for k, v := range r.header {
		req.Header[k] = v
	}
	if stream {
		// Unknown length: net/http sends the body chunked, with no
		// Content-Length header for the server to refuse up front.
		req.ContentLength = -1
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// standardAt is standardSigned with a webhook-id of its own, so that
// deliveries of one spec are distinct events.
func standardAt(path, id string, body []byte, at time.Time, secret string) request {
	return request{method: http.MethodPost, path: path, body: body, header: http.Header{
		"Content-Type":              {"application/json"},
		push.HeaderWebhookID:        {id},
		push.HeaderWebhookTimestamp: {strconv.FormatInt(at.Unix(), 10)},
		push.HeaderWebhookSignature: {push.Standard([]byte(secret), id, at, body)},
	}}
}

// bothSchemes accepts both signature forms, since these specs send both.
func bothSchemes(s *togetherv1.TogetherWebhookSubscription) {
	s.Spec.AcceptedSignatures = []togetherv1.SignatureScheme{togetherv1.SignatureStandardWebhooks, togetherv1.SignatureHexHMAC}
}

// clock is a settable clock for a Server of a spec's own.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ownEndpoint serves a Server configured by the spec, in front of the
// suite's API server and applier.
func ownEndpoint(mut func(*Server)) string {
	GinkgoHelper()
	s := &Server{Client: srv.Client, SecretCache: srv.SecretCache, SecretReader: srv.SecretReader, Applier: applier, Recorder: srv.Recorder}
	if mut != nil {
		mut(s)
	}
	ts := httptest.NewServer(s.Handler())
	DeferCleanup(ts.Close)
	return ts.URL
}

var _ = Describe("Events endpoint limits", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("refuses a streamed body over the limit with 413, though it announced no length, and writes nothing", func() {
		makeSubscription(ns, "sub", bothSchemes)
		makeFineTune(ns, "ft", "ft-stream")
		before := getFineTune(ns, "ft").ResourceVersion
		path := PathFor(ns, "sub")
		pad := bytes.Repeat([]byte("x"), 1<<20)
		big := append(append([]byte(`{"id":"big","type":"fine_tune.checkpoint","data":{"fine_tune_id":"ft-stream","step":9,"pad":"`), pad...), []byte(`"}}`)...)
		code, body := deliverTo(endpoint.URL, hexSigned(path, big), true)
		Expect(code).To(Equal(http.StatusRequestEntityTooLarge), body)

		By("a streamed body within the limit is read whole and applied")
		small := envelope("small", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-stream", "step": 1})
		code, body = deliverTo(endpoint.URL, hexSigned(path, small), true)
		Expect(code).To(Equal(http.StatusOK), body)
		ft := getFineTune(ns, "ft")
		Expect(ft.Status.ProcessedEvents).To(Equal([]string{"small"}), "only the small delivery was written")
		Expect(ft.ResourceVersion).NotTo(Equal(before))
	})

	It("accepts a Standard Webhooks timestamp just inside 5 minutes either way and refuses one just outside", func() {
		makeSubscription(ns, "sub", bothSchemes)
		makeFineTune(ns, "ft", "ft-window")
		path := PathFor(ns, "sub")
		step := 0
		deliver := func(id string, offset time.Duration) int {
			step++
			body := envelope(id, "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-window", "step": step})
			code, _ := deliverTo(endpoint.URL, standardAt(path, id, body, time.Now().Add(offset), testSecret), false)
			return code
		}
		Expect(deliver("past-inside", -5*time.Minute+15*time.Second)).To(Equal(http.StatusOK))
		Expect(deliver("future-inside", 5*time.Minute-15*time.Second)).To(Equal(http.StatusOK))
		Expect(deliver("past-outside", -5*time.Minute-15*time.Second)).To(Equal(http.StatusUnauthorized))
		Expect(deliver("future-outside", 5*time.Minute+15*time.Second)).To(Equal(http.StatusUnauthorized))
		Expect(getFineTune(ns, "ft").Status.ProcessedEvents).To(ConsistOf("past-inside", "future-inside"))
	})

	It("uses the configured timestamp tolerance and body limit instead of the defaults", func() {
		makeSubscription(ns, "sub", bothSchemes)
		makeFineTune(ns, "ft", "ft-config")
		path := PathFor(ns, "sub")
		strict := ownEndpoint(func(s *Server) { s.Tolerance = 30 * time.Second; s.MaxBodyBytes = 2048 })

		minuteOld := envelope("minute-old", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-config", "step": 1})
		req := standardAt(path, "minute-old", minuteOld, time.Now().Add(-time.Minute), testSecret)
		code, _ := deliverTo(strict, req, false)
		Expect(code).To(Equal(http.StatusUnauthorized), "a minute is outside a 30 s tolerance")
		code, _ = deliverTo(endpoint.URL, req, false)
		Expect(code).To(Equal(http.StatusOK), "and inside the default 5 minutes")

		padded := envelope("padded", "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-config", "step": 2, "pad": string(bytes.Repeat([]byte("p"), 3000))})
		code, _ = deliverTo(strict, hexSigned(path, padded), false)
		Expect(code).To(Equal(http.StatusRequestEntityTooLarge), "3 KB is over a 2 KiB limit")
		code, _ = deliverTo(strict, hexSigned(path, padded), true)
		Expect(code).To(Equal(http.StatusRequestEntityTooLarge), "also when streamed")
		code, _ = deliverTo(endpoint.URL, hexSigned(path, padded), false)
		Expect(code).To(Equal(http.StatusOK), "and under the default 1 MiB")
		Expect(getFineTune(ns, "ft").Status.ProcessedEvents).To(Equal([]string{"minute-old", "padded"}))
	})

	It("stops accepting the previous secret once it is removed from the Secret", func() {
		sub := makeSubscription(ns, "sub", bothSchemes)
		makeFineTune(ns, "ft", "ft-removed")
		path := PathFor(ns, "sub")
		url := ownEndpoint(nil)
		signedWith := func(id, secret string, step int) request {
			body := envelope(id, "fine_tune.checkpoint", map[string]any{"fine_tune_id": "ft-removed", "step": step})
			r := hexSigned(path, body)
			r.header.Set(push.HeaderSignature, push.Hex([]byte(secret), body))
			return r
		}
		key := types.NamespacedName{Namespace: ns, Name: sub.Spec.SecretRef.Name}
		setSecret := func(data map[string][]byte) {
			var s corev1.Secret
			Expect(k8s.Get(ctx, key, &s)).To(Succeed())
			s.Data = data
			Expect(k8s.Update(ctx, &s)).To(Succeed())
			awaitCachedSecret(key, s.ResourceVersion)
		}

		By("during the rotation both secrets are accepted")
		setSecret(map[string][]byte{"secret": []byte("rotated-in"), "previousSecret": []byte(testSecret)})
		code, _ := deliverTo(url, signedWith("new-1", "rotated-in", 1), false)
		Expect(code).To(Equal(http.StatusOK))
		code, _ = deliverTo(url, signedWith("old-1", testSecret, 2), false)
		Expect(code).To(Equal(http.StatusOK))

		By("once the cache sees previousSecret removed, the old secret is refused")
		setSecret(map[string][]byte{"secret": []byte("rotated-in")})
		code, _ = deliverTo(url, signedWith("old-2", testSecret, 3), false)
		Expect(code).To(Equal(http.StatusUnauthorized), "the removed previous secret still verifies")
		code, _ = deliverTo(url, signedWith("new-2", "rotated-in", 4), false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(getFineTune(ns, "ft").Status.ProcessedEvents).To(Equal([]string{"new-1", "old-1", "new-2"}))
	})

	It("creates no migration for a deprecated model that has no replacement anywhere", func() {
		makeSubscription(ns, "sub", func(s *togetherv1.TogetherWebhookSubscription) {
			bothSchemes(s)
			s.Spec.ModelReplacements = []togetherv1.ModelReplacement{{ModelID: "org/old", ReplacementModel: "org/new"}}
			s.Spec.Migration = &togetherv1.MigrationTemplate{Strategy: togetherv1.MigrationImmediate}
		})
		code, body := send(hexSigned(PathFor(ns, "sub"), envelope("dep-unknown", "model.deprecated", map[string]any{"model_id": "org/unknown", "sunset_date": "2027-02-01"})))
		Expect(code).To(Equal(http.StatusAccepted), body)
		var l togetherv1.TogetherModelMigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		Expect(l.Items).To(BeEmpty(), "a migration was created for a model with no known replacement")

		By("the same delivery for a model with a replacement does create one, so the list above could see it")
		code, body = send(hexSigned(PathFor(ns, "sub"), envelope("dep-known", "model.deprecated", map[string]any{"model_id": "org/old", "sunset_date": "2027-02-01"})))
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		Expect(l.Items).To(HaveLen(1))
	})
})
