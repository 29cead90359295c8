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
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/together-operator/together-operator/internal/webhook"

	"github.com/together-operator/together-operator/pkg/push"
)

// badRequest is one kind of bad delivery and the answer it must get.
type badRequest struct {
	name   string
	method string
	path   string
	body   []byte
	header http.Header
	want   int
}

func hexHeader(secret string, body []byte) http.Header {
	return http.Header{"Content-Type": {"application/json"}, push.HeaderSignature: {push.Hex([]byte(secret), body)}}
}

func standardHeader(secret, id string, at time.Time, body []byte) http.Header {
	// Set canonicalizes the names, so that Del and Set on a copy act on them.
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(push.HeaderWebhookID, id)
	h.Set(push.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(push.HeaderWebhookSignature, push.Standard([]byte(secret), id, at, body))
	return h
}

// badCorpus builds the kinds of bad delivery, every one aimed at victim (a
// job whose fine-tune only bad traffic names). other is a second
// subscription's path whose secret differs.
func badCorpus(f fixture, victim, otherPath string) []badRequest {
	good := checkpointBody("bad-target", victim, 7)
	signed := func(name string, body []byte, want int) badRequest {
		return badRequest{name: name, method: http.MethodPost, path: f.path, body: body, header: hexHeader(testSecret, body), want: want}
	}
	withHeader := func(name string, h http.Header, want int) badRequest {
		return badRequest{name: name, method: http.MethodPost, path: f.path, body: good, header: h, want: want}
	}
	past, future := time.Now().Add(-10*time.Minute), time.Now().Add(10*time.Minute)
	std := standardHeader(testSecret, "msg-1", time.Now(), good)
	noID := std.Clone()
	noID.Del(push.HeaderWebhookID)
	v2 := std.Clone()
	v2.Set(push.HeaderWebhookSignature, strings.Replace(std.Get(push.HeaderWebhookSignature), "v1,", "v2,", 1))
	badTS := std.Clone()
	badTS.Set(push.HeaderWebhookTimestamp, "yesterday")
	otherID := std.Clone()
	otherID.Set(push.HeaderWebhookID, "msg-2")
	prefixed := hexHeader("wrong", good)
	prefixed.Set(push.HeaderSignature, "sha256="+prefixed.Get(push.HeaderSignature))
	textPlain := hexHeader(testSecret, good)
	textPlain.Set("Content-Type", "text/plain")
	huge := append(append([]byte(`{"id":"big","type":"fine_tune.checkpoint","data":{"fine_tune_id":"`+victim+`","step":1,"pad":"`), bytes.Repeat([]byte("x"), 1<<20)...), []byte(`"}}`)...)
	env := func(data string) []byte {
		return []byte(`{"id":"e1","type":"fine_tune.checkpoint","created_at":"2030-01-01T00:00:00Z","data":` + data + `}`)
	}
	return []badRequest{
		withHeader("no signature", http.Header{"Content-Type": {"application/json"}}, 401),
		withHeader("garbled hex signature", http.Header{"Content-Type": {"application/json"}, push.HeaderSignature: {"zz-not-hex"}}, 401),
		withHeader("empty signature", http.Header{"Content-Type": {"application/json"}, push.HeaderSignature: {""}}, 401),
		withHeader("wrong secret", hexHeader("wrong", good), 401),
		withHeader("signature over another body", hexHeader(testSecret, checkpointBody("x", victim, 8)), 401),
		withHeader("sha256= prefix, wrong secret", prefixed, 401),
		withHeader("truncated signature", http.Header{"Content-Type": {"application/json"}, push.HeaderSignature: {push.Hex([]byte(testSecret), good)[:32]}}, 401),
		withHeader("standard: stale timestamp (replay)", standardHeader(testSecret, "msg-1", past, good), 401),
		withHeader("standard: future timestamp", standardHeader(testSecret, "msg-1", future, good), 401),
		withHeader("standard: wrong secret", standardHeader("wrong", "msg-1", time.Now(), good), 401),
		withHeader("standard: missing id", noID, 401),
		withHeader("standard: v2 scheme", v2, 401),
		withHeader("standard: timestamp not a number", badTS, 401),
		withHeader("standard: id changed after signing", otherID, 401),
		{name: "another subscription's path", method: http.MethodPost, path: otherPath, body: good, header: hexHeader(testSecret, good), want: 401},
		{name: "unknown subscription", method: http.MethodPost, path: webhook.PathFor(f.ns, "nope"), body: good, header: hexHeader(testSecret, good), want: 401},
		{name: "GET", method: http.MethodGet, path: f.path, header: http.Header{}, want: 405},
		{name: "PUT", method: http.MethodPut, path: f.path, body: good, header: hexHeader(testSecret, good), want: 405},
		{name: "DELETE", method: http.MethodDelete, path: f.path, header: http.Header{}, want: 405},
		withHeader("text/plain content type", textPlain, 415),
		{name: "oversize body, signed", method: http.MethodPost, path: f.path, body: huge, header: hexHeader(testSecret, huge), want: 413},
		{name: "oversize body, unsigned", method: http.MethodPost, path: f.path, body: huge, header: http.Header{"Content-Type": {"application/json"}}, want: 413},
		signed("empty body", []byte{}, 400),
		signed("truncated JSON", good[:len(good)/2], 400),
		signed("JSON array", []byte(`[1,2,3]`), 400),
		signed("JSON null", []byte(`null`), 400),
		signed("binary garbage", []byte{0xff, 0x00, 0xfe, 0x01}, 400),
		signed("trailing data", append(append([]byte{}, good...), []byte(`{"x":1}`)...), 400),
		signed("missing id", []byte(`{"type":"fine_tune.checkpoint","data":{"fine_tune_id":"`+victim+`","step":1}}`), 400),
		signed("missing type", []byte(`{"id":"e1","data":{"fine_tune_id":"`+victim+`","step":1}}`), 400),
		signed("id too long", envelope(strings.Repeat("i", 300), "fine_tune.checkpoint", map[string]any{"fine_tune_id": victim, "step": 1}), 400),
		signed("id of wrong type", []byte(`{"id":5,"type":"fine_tune.checkpoint","data":{"fine_tune_id":"`+victim+`","step":1}}`), 400),
		signed("data not an object", env(`"step 1"`), 400),
		signed("data null", env(`null`), 400),
		signed("checkpoint without job", env(`{"step":1}`), 400),
		signed("checkpoint without step", env(`{"fine_tune_id":"`+victim+`"}`), 400),
		signed("negative step", env(`{"fine_tune_id":"`+victim+`","step":-1}`), 400),
		signed("step of wrong type", env(`{"fine_tune_id":"`+victim+`","step":"7"}`), 400),
		signed("loss of wrong type", env(`{"fine_tune_id":"`+victim+`","step":7,"loss":"low"}`), 400),
		signed("completed without model", envelope("e2", "fine_tune.completed", map[string]any{"fine_tune_id": victim}), 400),
		signed("failed without message", envelope("e3", "fine_tune.failed", map[string]any{"fine_tune_id": victim}), 400),
		signed("batch.done with unknown status", envelope("e4", "batch.done", map[string]any{"batch_id": "b", "status": "MAYBE"}), 400),
		signed("model.deprecated with bad date", envelope("e5", "model.deprecated", map[string]any{"model_id": "m", "sunset_date": "soon"}), 400),
	}
}

func (r badRequest) send(base string, hc *http.Client) int {
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, bytes.NewReader(r.body))
	Expect(err).NotTo(HaveOccurred())
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	Expect(err).NotTo(HaveOccurred(), r.name)
	defer resp.Body.Close()
	return resp.StatusCode
}

var _ = Describe("Bad input at volume", func() {
	It("answers every bad delivery with its 4xx, writes nothing for any, and leaves good traffic alone", func() {
		rounds := 10
		if soak {
			rounds = 50
		}
		f := newFixture("bad")
		other := newFixtureWithSecret("bad-other", "another-secret")
		jobs := f.runningFineTunes("job", 4)
		victims := f.runningFineTunes("victim", 1)
		in := startIntake(nil)
		defer in.stop()
		waitCached(in, f, jobs)
		waitCached(in, f, victims)
		victim := getFineTune(f, "victim-0")

		corpus := badCorpus(f, "victim-0", other.path)
		Expect(len(corpus)).To(BeNumerically(">=", 30))

		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 20 * time.Second}
		sent := workload(jobs, 60)
		log := newLedger()
		s := newSender(func(int) string { return in.url }, log)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			send(s, f.path, interleave(sent), nil, 8, 0)
		}()
		type answer struct {
			name      string
			got, want int
		}
		answers := make(chan answer, rounds*len(corpus))
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for r := w; r < rounds*len(corpus); r += 8 {
					b := corpus[r%len(corpus)]
					answers <- answer{b.name, b.send(in.url, hc), b.want}
				}
			}()
		}
		wg.Wait()
		close(answers)
		n := 0
		for a := range answers {
			Expect(a.got).To(Equal(a.want), "bad delivery %q", a.name)
			n++
		}
		Expect(n).To(Equal(rounds * len(corpus)))

		after := getFineTune(f, "victim-0")
		Expect(after.ResourceVersion).To(Equal(victim.ResourceVersion), "bad traffic wrote the fine-tune it named")
		Expect(after.Status.ProcessedEvents).To(BeEmpty())
		expectConverged(f, jobs, sent, log, true)
	})
})

var _ = Describe("Slow and oversized clients", func() {
	It("closes a connection that dribbles its headers, answers 431 to huge headers, and keeps its heap bounded", func() {
		f := newFixture("slow")
		in := startIntake(func(s *webhook.Server) { s.ReadHeaderTimeout = 500 * time.Millisecond })
		defer in.stop()
		addr := strings.TrimPrefix(in.url, "http://")

		By("a request with more than 16 KiB of headers gets 431")
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url+f.path, strings.NewReader("{}"))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Padding", strings.Repeat("p", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusRequestHeaderFieldsTooLarge))

		By("connections that send their headers a byte at a time are closed")
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		const conns = 100
		closed := make(chan time.Duration, conns)
		stop := make(chan struct{})
		defer close(stop)
		for i := 0; i < conns; i++ {
			go func() {
				defer GinkgoRecover()
				closed <- slowLoris(addr, f.path, stop)
			}()
		}
		for i := 0; i < conns; i++ {
			var lived time.Duration
			Eventually(closed, 10*time.Second).Should(Receive(&lived), "waiting for the server to close slow connection %d", i)
			// The server, not the client, ended it: it lived at least
			// about the header timeout, and not much longer.
			Expect(lived).To(BeNumerically(">=", 400*time.Millisecond))
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		Expect(int64(after.HeapAlloc)-int64(before.HeapAlloc)).To(BeNumerically("<", 32<<20), "heap grew by more than 32 MiB")

		By("the endpoint still serves a well-behaved sender")
		jobs := f.runningFineTunes("job", 1)
		waitCached(in, f, jobs)
		log := newLedger()
		code := newSender(func(int) string { return in.url }, log).deliver(0, f.path, "ok-1", checkpointBody("ok-1", "job-0", 1), 10*time.Second)
		Expect(code).To(Equal(http.StatusOK))
		expectLedger(f.history, log)
	})
})

// slowLoris opens a connection and sends a request's headers one byte every
// 50 ms, endlessly, until the server closes the connection; it returns how
// long the connection lived.
func slowLoris(addr, path string, stop <-chan struct{}) time.Duration {
	conn, err := net.Dial("tcp", addr)
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	start := time.Now()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = bufio.NewReader(conn).ReadString(0) // returns when the server closes
	}()
	header := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: %s", path, strings.Repeat("s", 10000)))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(header) {
		select {
		case <-readDone:
			return time.Since(start)
		case <-stop:
			return time.Since(start)
		case <-tick.C:
			if _, err := conn.Write(header[i : i+1]); err != nil {
				<-readDone
				return time.Since(start)
			}
		}
	}
}
