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

package togethersim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// Webhook is a subscription of the project's own push contract (not
// Together's API, which has no webhooks): the shape the operator's client
// registers and reads.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
}

// webhookRequest is the body of POST/PATCH /v1/webhooks in the project's
// own contract; secret signs deliveries and is never echoed.
type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	Secret string   `json:"secret"`
}

// hook is a subscription of the project's push contract (not Together's).
type hook struct {
	Webhook
	secret string
}

// codeWebhookNotFound tells a client that the route exists but the id does
// not, so it is not mistaken for "webhooks not supported".
const codeWebhookNotFound = "webhook_not_found"

// RegisterWebhook subscribes url to events (all when empty), as
// POST /v1/webhooks does, and returns the subscription.
func (s *Server) RegisterWebhook(u string, evts []string, secret string) Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &hook{Webhook: Webhook{ID: newID("wh-"), URL: u, Events: evts, CreatedAt: s.now()}, secret: secret}
	if h.Events == nil {
		h.Events = []string{}
	}
	s.hooks[h.ID] = h
	return h.Webhook
}

func validWebhook(req webhookRequest, create bool) string {
	if create && (req.URL == "" || req.Secret == "") {
		return "url and secret are required"
	}
	if req.URL != "" {
		if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "url must be an absolute http(s) URL"
		}
	}
	return ""
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) {
	var req webhookRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := validWebhook(req, true); msg != "" {
		writeError(w, r, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	writeJSON(w, http.StatusOK, s.RegisterWebhook(req.URL, req.Events, req.Secret))
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Webhook, 0, len(s.hooks))
	for _, id := range sortedKeys(s.hooks) {
		out = append(out, s.hooks[id].Webhook)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request) {
	var req webhookRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := validWebhook(req, false); msg != "" {
		writeError(w, r, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hooks[r.PathValue("id")]
	if !ok {
		writeError(w, r, http.StatusNotFound, codeWebhookNotFound, "webhook not found")
		return
	}
	if req.URL != "" {
		h.URL = req.URL
	}
	if req.Events != nil {
		h.Events = req.Events
	}
	if req.Secret != "" {
		h.secret = req.Secret
	}
	writeJSON(w, http.StatusOK, h.Webhook)
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.hooks[r.PathValue("id")]; !ok {
		writeError(w, r, http.StatusNotFound, codeWebhookNotFound, "webhook not found")
		return
	}
	delete(s.hooks, r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// delivery is one signed POST to one subscriber.
type delivery struct {
	url, secret, id string
	body            []byte
	// copies (0 when dropped) and delay are decided when the event
	// happens, so a test's fault settings apply to the events it causes.
	copies int
	delay  time.Duration
}

// emit queues the event for every subscriber of typ; callers hold s.mu.
func (s *Server) emit(typ togetherv1.EventType, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		s.opts.Logger.Error(err, "encoding event data", "type", typ)
		return
	}
	env := push.Envelope{ID: newID("evt-"), Type: string(typ), CreatedAt: s.now(), Data: raw}
	body, err := json.Marshal(env)
	if err != nil {
		s.opts.Logger.Error(err, "encoding event envelope", "type", typ)
		return
	}
	for _, id := range sortedKeys(s.hooks) {
		h := s.hooks[id]
		if len(h.Events) == 0 || slices.Contains(h.Events, string(typ)) {
			copies, delay := s.faults.deliveryPlan()
			s.deliver.enqueue(delivery{url: h.URL, secret: h.secret, id: env.ID, body: body, copies: copies, delay: delay})
		}
	}
}

// deliverer sends queued deliveries in order, one at a time, applying the
// delivery faults; a real sender's retries come from go-retryablehttp.
type deliverer struct {
	s      *Server
	client *retryablehttp.Client
	mu     sync.Mutex
	queue  []delivery
	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newDeliverer(s *Server) *deliverer {
	c := retryablehttp.NewClient()
	c.RetryWaitMin = orDuration(s.opts.DeliveryRetryMin, 50*time.Millisecond)
	c.RetryWaitMax = orDuration(s.opts.DeliveryRetryMax, 2*time.Second)
	c.RetryMax = orDefault(s.opts.DeliveryAttempts, 6) - 1
	c.Logger = nil
	c.HTTPClient.Timeout = 10 * time.Second
	// A webhook sender retries any non-2xx, not only 5xx: the receiver
	// dedupes by event id, so a repeat is harmless.
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return err != nil || resp.StatusCode < 200 || resp.StatusCode > 299, nil
	}
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	ctx, cancel := context.WithCancel(context.Background())
	return &deliverer{s: s, client: c, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func orDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func (d *deliverer) enqueue(x delivery) {
	d.mu.Lock()
	d.queue = append(d.queue, x)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *deliverer) start() { go d.run() }

func (d *deliverer) close() {
	d.cancel()
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
	}
}

// reorderWait is how long a partly filled reorder window waits for more.
const reorderWait = 100 * time.Millisecond

func (d *deliverer) run() {
	defer close(d.done)
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.wake:
		}
		held := d.take()
		if window := d.s.faults.reorderWindow(); window > 1 {
			var ok bool
			if held, ok = d.fill(held, window); !ok {
				return
			}
			d.s.faults.shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
		}
		for _, x := range held {
			d.send(x)
		}
	}
}

// fill holds deliveries until the reorder window is full or reorderWait
// passes, so that they can be sent out of order; false means closed.
func (d *deliverer) fill(held []delivery, window int) ([]delivery, bool) {
	t := time.NewTimer(reorderWait)
	defer t.Stop()
	for len(held) < window {
		select {
		case <-d.ctx.Done():
			return nil, false
		case <-d.wake:
			held = append(held, d.take()...)
		case <-t.C:
			return held, true
		}
	}
	return held, true
}

func (d *deliverer) take() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queue
	d.queue = nil
	return q
}

// send posts x the planned number of times (0 when dropped), each signed
// both ways, after the configured delay.
func (d *deliverer) send(x delivery) {
	for range x.copies {
		if x.delay > 0 {
			select {
			case <-time.After(x.delay):
			case <-d.ctx.Done():
				return
			}
		}
		if err := d.post(x); err != nil {
			d.s.opts.Logger.Info("webhook delivery failed", "event", x.id, "error", err.Error())
		}
	}
}

func (d *deliverer) post(x delivery) error {
	req, err := retryablehttp.NewRequestWithContext(d.ctx, http.MethodPost, x.url, bytes.NewReader(x.body))
	if err != nil {
		return fmt.Errorf("building delivery request: %w", err)
	}
	SignRequest(req.Request, []byte(x.secret), x.id, time.Now(), x.body)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting event %s: %w", x.id, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting event %s: receiver answered %d after retries", x.id, resp.StatusCode)
	}
	return nil
}

// SignRequest sets the content type and both signature forms on r, as
// every sender of the push contract must (the CLI uses it too).
func SignRequest(r *http.Request, secret []byte, id string, ts time.Time, body []byte) {
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(push.HeaderSignature, push.Hex(secret, body))
	r.Header.Set(push.HeaderWebhookID, id)
	r.Header.Set(push.HeaderWebhookTimestamp, fmt.Sprint(ts.Unix()))
	r.Header.Set(push.HeaderWebhookSignature, push.Standard(secret, id, ts, body))
}
