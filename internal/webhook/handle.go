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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/apicount"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/pkg/push"
)

// answer is what the endpoint replies to one request.
type answer struct {
	code int
	msg  string
	// retryAfter, when set, becomes the Retry-After header.
	retryAfter time.Duration
	// replay marks a delivery answered from the replay cache.
	replay bool
}

// msgUnauthorized is the one answer to every request the endpoint does not
// authenticate: no subscription at the path, a required signature header
// missing, a stale timestamp, a missing Secret or a bad signature all look
// the same to a sender, so the answers do not tell which subscriptions exist.
const msgUnauthorized = "signature verification failed"

func unauthorized() answer { return answer{code: http.StatusUnauthorized, msg: msgUnauthorized} }

func busy(msg string) answer {
	return answer{code: http.StatusServiceUnavailable, msg: msg, retryAfter: time.Second}
}

type response struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) reply(w http.ResponseWriter, code int, msg string) {
	s.replyAnswer(w, answer{code: code, msg: msg})
}

func (s *Server) replyAnswer(w http.ResponseWriter, a answer) {
	requestsTotal.WithLabelValues(strconv.Itoa(a.code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	if a.code == http.StatusServiceUnavailable && a.retryAfter == 0 {
		a.retryAfter = time.Second
	}
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(a.retryAfter)))
	}
	w.WriteHeader(a.code)
	r := response{Status: http.StatusText(a.code)}
	if a.code >= 400 {
		r.Error = a.msg
	} else {
		r.Status = a.msg
	}
	_ = json.NewEncoder(w).Encode(r)
}

func (s *Server) serveEvent(w http.ResponseWriter, r *http.Request) {
	start := s.Now()
	logger := requestLog{r: r}
	body := &trackedBody{ReadCloser: r.Body}
	r.Body = body
	var calls atomic.Int64
	r = r.WithContext(apicount.With(r.Context(), &calls))
	a := s.handle(r, logger)
	if a.code >= 400 || a.replay {
		rejectedAPIRequests.Add(float64(calls.Load()))
	}
	unread := !body.eof && (r.ContentLength < 0 || body.n < r.ContentLength)
	rc := http.NewResponseController(w)
	if unread {
		// Answered without reading the body. Answer first (net/http would
		// otherwise read up to 256 KiB of it before sending the answer),
		// then drop what the sender still sends, through a small buffer
		// and within the server's read timeout, so that a sender still
		// writing gets the answer rather than a reset connection.
		_ = rc.EnableFullDuplex()
		if r.ContentLength > maxDrainBytes {
			w.Header().Set("Connection", "close")
		}
	}
	s.replyAnswer(w, a)
	if unread && r.ContentLength <= maxDrainBytes {
		_ = rc.Flush()
		_, _ = io.CopyN(io.Discard, r.Body, maxDrainBytes)
	}
	if a.code < 300 {
		ackLatency.Observe(s.Now().Sub(start).Seconds())
	}
}

// requestLog is the logger of one request, with its path, made only when
// something is logged: building it costs a copy of the logger's encoder,
// and a delivery that goes well logs nothing.
type requestLog struct{ r *http.Request }

func (l requestLog) get() logr.Logger {
	return log.FromContext(l.r.Context()).WithValues("path", l.r.URL.Path)
}

// signed is what a request's headers say about its signature, read before
// its body.
type signed struct {
	scheme togetherv1.SignatureScheme
	// For StandardWebhooks: the id, the timestamp as sent and as a time.
	id, ts string
	at     time.Time
	sig    string
}

// maxWebhookIDLength bounds a webhook-id, which the replay cache keeps.
const maxWebhookIDLength = 256

// handle returns the answer for one delivery. Its order of work is what
// bounds the cost of a request that is not authentic: headers alone decide
// 415, 413 (a declared length over the cap) and 429 (the source's bucket);
// then the subscription comes from the cache (no API call), and the
// signature headers its policy requires must be present, with a timestamp
// in tolerance, before a byte of the body is read. The body is then read
// under the per-request cap and the process-wide budget, verified, checked
// against the replay cache and the subscription's bucket, and only then
// decoded and applied.
func (s *Server) handle(r *http.Request, logger requestLog) answer {
	now := s.Now()
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return answer{code: http.StatusUnsupportedMediaType, msg: "content type must be application/json"}
	}
	if r.ContentLength > s.MaxBodyBytes {
		return answer{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than %d bytes", s.MaxBodyBytes)}
	}
	if ok, wait := s.sources.allow(sourceOf(r), now); !ok {
		return answer{code: http.StatusTooManyRequests, msg: "too many requests from this address, retry later", retryAfter: wait}
	}

	sub, err := s.subscription(r)
	if err != nil {
		logger.get().Error(err, "reading subscription")
		return busy("subscription unavailable, retry later")
	}
	var policy *togetherv1.TogetherWebhookSubscriptionSpec
	if sub != nil {
		policy = &sub.Spec
	}
	sg, ok := s.signatureHeaders(r, policy, now)
	if !ok {
		return unauthorized()
	}
	if sub == nil {
		// Read (and drop) the body as a known subscription's bad signature
		// would have it read, so that neither the answer nor its timing says
		// whether the subscription exists. Nothing is kept in memory.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, s.MaxBodyBytes+1))
		return unauthorized()
	}

	reserve := s.MaxBodyBytes + 1
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	if !s.budget.tryAcquire(reserve) {
		budgetSpent.Inc()
		return busy("too many deliveries in flight, retry later")
	}
	released := false
	release := func() {
		if !released {
			released = true
			s.budget.release(reserve)
		}
	}
	defer release()
	body, err := readBody(r.Body, reserve, s.MaxBodyBytes)
	if errors.Is(err, errTooLarge) {
		return answer{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body larger than %d bytes", s.MaxBodyBytes)}
	}
	if err != nil {
		return answer{code: http.StatusBadRequest, msg: "could not read body"}
	}

	ok, err = s.verify(r.Context(), sub, sg, body)
	switch {
	case errors.Is(err, ErrSecretMissing):
		logger.get().V(1).Info("subscription's signing secret is missing; rejecting delivery", "subscription", sub.Namespace+"/"+sub.Name)
		return unauthorized()
	case errors.Is(err, ErrBusy):
		// Reads of new Secret versions are rate-limited across the
		// process; the sender retries, and an error per delivery would
		// flood the log.
		logger.get().V(1).Info("signing secret reads are rate-limited; answering 503", "subscription", sub.Namespace+"/"+sub.Name)
		return busy("could not verify now, retry later")
	case err != nil:
		logger.get().Error(err, "reading signing secret")
		return busy("could not verify now, retry later")
	case !ok:
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Rejected)).Inc()
		return unauthorized()
	}

	var rk replayKey
	if sg.scheme == togetherv1.SignatureStandardWebhooks {
		rk = replayKey{sub: sub.UID, id: sg.id}
		if _, seen := s.replays.Get(rk, now); seen {
			replaysTotal.Inc()
			return answer{code: http.StatusOK, msg: "duplicate: this webhook-id was already acknowledged", replay: true}
		}
	}
	if ok, wait := s.subs.allow(string(sub.UID), now); !ok {
		return answer{code: http.StatusTooManyRequests, msg: "too many deliveries for this subscription, retry later", retryAfter: wait}
	}

	ev, err := event.Decode(body)
	release()
	a := s.deliver(r.Context(), sub, ev, err, logger)
	if sg.scheme == togetherv1.SignatureStandardWebhooks && a.code < 500 && a.code != http.StatusTooManyRequests {
		// The delivery is settled; the same id signed within the tolerance
		// is a replay (or a retry of a delivery whose answer was lost) and
		// gets the same 200 without being applied again.
		s.replays.Set(rk, struct{}{}, now, sg.at.Add(s.Tolerance))
	}
	return a
}

// deliver turns a decoded payload into its effect and answer.
func (s *Server) deliver(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, ev event.Event, decodeErr error, logger requestLog) answer {
	if errors.Is(decodeErr, event.ErrUnknownType) {
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Ignored)).Inc()
		return answer{code: http.StatusAccepted, msg: "ignored: unknown event type"}
	}
	if decodeErr != nil {
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Rejected)).Inc()
		return answer{code: http.StatusBadRequest, msg: decodeErr.Error()}
	}
	if !wants(sub, ev.Type) {
		intake.EventsTotal.WithLabelValues(string(ev.Type), "push", string(lattice.Ignored)).Inc()
		return answer{code: http.StatusAccepted, msg: "ignored: the subscription does not ask for " + string(ev.Type)}
	}
	ctx, cancel := context.WithTimeout(ctx, s.AckTimeout)
	defer cancel()
	res := s.Applier.Apply(ctx, sub.Namespace, ev, intake.Options{Subscription: sub})
	intake.EventsTotal.WithLabelValues(string(ev.Type), "push", string(res.Outcome)).Inc()
	code, msg := s.respond(ctx, sub, ev, res, logger)
	return answer{code: code, msg: msg}
}

// subscription reads the subscription at the request's path from the
// manager's cache; nil when there is none (or it is being deleted).
func (s *Server) subscription(r *http.Request) (*togetherv1.TogetherWebhookSubscription, error) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	var sub togetherv1.TogetherWebhookSubscription
	if err := s.Client.Get(r.Context(), key, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if !sub.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return &sub, nil
}

// signatureHeaders reads which signature the request carries and checks,
// before any body is read, that the subscription's policy accepts it. A
// request with any Standard Webhooks header is a Standard Webhooks delivery
// and is never verified another way: stripping those headers to fall back
// to the body-only form is how a captured delivery would be replayed. A nil
// policy (no subscription at the path) is the default one.
func (s *Server) signatureHeaders(r *http.Request, policy *togetherv1.TogetherWebhookSubscriptionSpec, now time.Time) (signed, bool) {
	accepts := func(scheme togetherv1.SignatureScheme) bool {
		if policy == nil {
			return scheme == togetherv1.SignatureStandardWebhooks
		}
		return policy.Accepts(scheme)
	}
	id, ts, sig := r.Header.Get(push.HeaderWebhookID), r.Header.Get(push.HeaderWebhookTimestamp), r.Header.Get(push.HeaderWebhookSignature)
	if id != "" || ts != "" || sig != "" {
		if !accepts(togetherv1.SignatureStandardWebhooks) || id == "" || ts == "" || sig == "" || len(id) > maxWebhookIDLength {
			return signed{}, false
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return signed{}, false
		}
		at := time.Unix(sec, 0)
		if d := now.Sub(at); d > s.Tolerance || d < -s.Tolerance {
			return signed{}, false
		}
		return signed{scheme: togetherv1.SignatureStandardWebhooks, id: id, ts: ts, at: at, sig: sig}, true
	}
	if sig := r.Header.Get(push.HeaderSignature); sig != "" && accepts(togetherv1.SignatureHexHMAC) {
		return signed{scheme: togetherv1.SignatureHexHMAC, sig: sig}, true
	}
	return signed{}, false
}

var errTooLarge = errors.New("body too large")

// readBody reads a body of at most max bytes into a buffer of the size
// reserved for it (the declared length, or max+1 when none was declared).
func readBody(body io.Reader, reserved, max int64) ([]byte, error) {
	buf := make([]byte, reserved)
	n, err := io.ReadFull(body, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		// A body shorter than reserved: complete for an unknown length;
		// for a declared one, net/http has already failed the read.
		err = nil
	case err != nil:
		return nil, err
	}
	if int64(n) > max {
		return nil, errTooLarge
	}
	return buf[:n], err
}

// verify checks the signature the headers announced against the current and
// previous secret of the Secret's version the cache holds. A mismatch reads
// nothing again: a rotated Secret is a new version, which get reads once.
func (s *Server) verify(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, sg signed, body []byte) (bool, error) {
	secrets, err := s.secrets.get(ctx, sub)
	if err != nil {
		return false, err
	}
	if sg.scheme == togetherv1.SignatureStandardWebhooks {
		return push.VerifyStandard(sg.id, sg.ts, sg.sig, body, s.Now(), s.Tolerance, secrets...), nil
	}
	return push.VerifyHex(sg.sig, body, secrets...), nil
}

// sourceOf is the bucket key of a request: the connection's remote address
// (a forwarded-for header is not trusted, since anyone can send one).
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func wants(sub *togetherv1.TogetherWebhookSubscription, t togetherv1.EventType) bool {
	if len(sub.Spec.Events) == 0 {
		return true
	}
	for _, e := range sub.Spec.Events {
		if e == t {
			return true
		}
	}
	return false
}

// warnUnmatched emits one Warning Event per subscription and reason an hour
// (per process), not one per delivery: a misrouted sender would otherwise
// flood the namespace.
func (s *Server) warnUnmatched(sub *togetherv1.TogetherWebhookSubscription, ev event.Event, why error) {
	if s.Recorder == nil {
		return
	}
	reason := togetherv1.ReasonUnmatchedEvent
	switch {
	case errors.Is(why, deprecation.ErrNoReplacement):
		reason = togetherv1.ReasonNoReplacementKnown
	case errors.Is(why, intake.ErrOtherAccount):
		reason = togetherv1.ReasonEventForOtherAccount
	}
	if _, loaded := s.warned.GetOrSet(warnKey{sub: sub.UID, reason: reason}, s.Now(), warnEvery, func() struct{} { return struct{}{} }); loaded {
		return
	}
	if reason == togetherv1.ReasonNoReplacementKnown {
		s.Recorder.Eventf(sub, nil, togetherv1.EventTypeWarning, reason, "Receive",
			"Model %s is deprecated but no replacement is known: add it to spec.modelReplacements", ev.JobID)
		return
	}
	if reason == togetherv1.ReasonEventForOtherAccount {
		s.Recorder.Eventf(sub, nil, togetherv1.EventTypeWarning, reason, "Receive",
			"A %s event is about a job that a resource in %s follows with another Together key than this subscription's (spec.apiKeySecretRef), so it was not applied; send that account's events through a subscription naming the same key Secret (further such events are counted in together_events_total, not reported here)",
			ev.Type, sub.Namespace)
		return
	}
	// The job ID is not named: it is a remote ID this namespace has no
	// resource for, possibly another team's, and Events are readable by
	// everyone who may read the namespace.
	if sub.Spec.AdoptUnmatched {
		s.Recorder.Eventf(sub, nil, togetherv1.EventTypeWarning, reason, "Receive",
			"A %s event is about a job that no resource in %s tracks and that was not adopted: the subscription's Together account does not show it as created for this namespace (another namespace's, made outside the operator, or unknown to the account). Create a resource with spec.jobID or spec.batchID to follow it on purpose (further unmatched events are counted in together_events_total, not reported here)",
			ev.Type, sub.Namespace)
		return
	}
	s.Recorder.Eventf(sub, nil, togetherv1.EventTypeWarning, reason, "Receive",
		"A %s event is about a job that no resource in %s tracks; set spec.adoptUnmatched to create one (further unmatched events are counted in together_events_total, not reported here)",
		ev.Type, sub.Namespace)
}

// touch notes the time of an accepted delivery for status.lastEventTime, at
// most once a minute per subscription so that a busy subscription does not
// cost a second write per event; lastEventWriter writes it.
func (s *Server) touch(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) {
	now := s.Now()
	if _, loaded := s.lastSeen.GetOrSet(sub.UID, now, time.Minute, func() struct{} { return struct{}{} }); loaded {
		return
	}
	s.lastEvents.note(sub, now, log.FromContext(ctx))
}

func (s *Server) respond(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, ev event.Event, res intake.Result, logger requestLog) (int, string) {
	switch res.Outcome {
	case lattice.Applied, lattice.Duplicate, lattice.Stale:
		s.touch(ctx, sub)
		return http.StatusOK, string(res.Outcome)
	case lattice.Unmatched:
		s.warnUnmatched(sub, ev, res.Err)
		if errors.Is(res.Err, intake.ErrOtherAccount) {
			return http.StatusAccepted, "unmatched: the resource that follows " + ev.JobID + " acts on another Together account than this subscription"
		}
		return http.StatusAccepted, "unmatched: no resource tracks " + ev.JobID
	case lattice.Ignored:
		return http.StatusAccepted, "ignored"
	case lattice.Failed:
		if errors.Is(res.Err, intake.ErrSubmitting) {
			return http.StatusServiceUnavailable, "a resource in this namespace is submitting a job that may be this one; retry shortly"
		}
		if errors.Is(res.Err, intake.ErrAdoptCheck) {
			// The error names the call and its status, never the job.
			logger.get().Error(res.Err, "checking an unmatched job for adoption failed; the sender will retry", "event", ev.ID, "type", ev.Type)
			return http.StatusServiceUnavailable, "could not check with Together whether this namespace created the job; nothing was written, retry later"
		}
		logger.get().Error(res.Err, "recording event failed; the sender will retry", "event", ev.ID, "type", ev.Type)
		return http.StatusServiceUnavailable, "could not record the event, retry later"
	default:
		logger.get().Error(res.Err, "recording event failed; the sender will retry", "event", ev.ID, "type", ev.Type)
		return http.StatusServiceUnavailable, "could not record the event, retry later"
	}
}

// maxDrainBytes bounds what the endpoint drops of a body it answered
// without reading; a larger one closes the connection instead.
const maxDrainBytes = 2 << 20

// trackedBody notes whether a request body was read to its end.
type trackedBody struct {
	io.ReadCloser
	n   int64
	eof bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}
