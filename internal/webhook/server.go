// Package webhook serves the events endpoint: it receives signed pushes,
// verifies and decodes them, and hands them to the one apply step. The push
// contract (X-Together-Signature, Standard Webhooks headers, the five event
// types) is this project's own: Together's public API pushes nothing today,
// and the poller covers the real API.
package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/pkg/push"
)

// PathPrefix is where subscriptions are served: PathPrefix + "{namespace}/{name}".
const PathPrefix = "/webhooks/together/"

// PathFor returns the path that serves a subscription.
func PathFor(namespace, name string) string { return PathPrefix + namespace + "/" + name }

// Server is the events endpoint. It runs on every replica (it is not
// leader-gated), because a push must be accepted wherever it lands.
type Server struct {
	// Addr is the listen address, e.g. ":8090".
	Addr string
	// Client reads subscriptions from the manager's cache.
	Client client.Client
	// SecretReader reads Secrets straight from the API server.
	SecretReader client.Reader
	Applier      *intake.Applier
	Recorder     events.EventRecorder
	// Tolerance is how far a Standard Webhooks timestamp may be from now.
	Tolerance time.Duration
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes int64
	// AckTimeout bounds how long a delivery waits for its write.
	AckTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// headers, so that a slow client cannot hold a connection open; the
	// default is 5s. Tests shorten it to see a slow client cut off.
	ReadHeaderTimeout time.Duration
	Now               func() time.Time
	// TLS, when its files are set, serves HTTPS instead of plain HTTP.
	TLS TLSFiles

	initOnce sync.Once
	secrets  *secretCache
	warned   sync.Map // subscription UID → struct{}: one unmatched warning each
	lastSeen sync.Map // subscription key → time of last lastEventTime write
	addr     chan net.Addr
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Tolerance == 0 {
			s.Tolerance = 5 * time.Minute
		}
		if s.MaxBodyBytes == 0 {
			s.MaxBodyBytes = 1 << 20
		}
		if s.AckTimeout == 0 {
			s.AckTimeout = 15 * time.Second
		}
		if s.ReadHeaderTimeout == 0 {
			s.ReadHeaderTimeout = 5 * time.Second
		}
		s.secrets = &secretCache{reader: s.SecretReader, ttl: 30 * time.Second, minRefresh: time.Second, now: s.Now}
		s.addr = make(chan net.Addr, 1)
	})
}

// NeedLeaderElection is false: every replica serves the endpoint.
func (s *Server) NeedLeaderElection() bool { return false }

// Handler returns the HTTP handler, for tests and for embedding.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathPrefix+"{namespace}/{name}", s.serveEvent)
	mux.HandleFunc(PathPrefix+"{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		s.reply(w, http.StatusMethodNotAllowed, "method not allowed: POST events to this path")
	})
	return mux
}

// Start serves until ctx ends, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	s.init()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      s.AckTimeout + 5*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 2)
	var tlsConfig *tls.Config
	if s.TLS.enabled() {
		watcher, err := s.TLS.watcher()
		if err != nil {
			return err
		}
		go func() {
			if err := watcher.Start(ctx); err != nil {
				errc <- fmt.Errorf("watching the events endpoint's certificate: %w", err)
			}
		}()
		tlsConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: watcher.GetCertificate,
			// HTTP/2 is off, as on the metrics endpoint, against the Rapid
			// Reset and Stream Cancellation CVEs.
			NextProtos: []string{"http/1.1"},
		}
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listening for events on %s: %w", s.Addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	s.addr <- ln.Addr()
	log.FromContext(ctx).Info("serving events", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "path", PathPrefix+"{namespace}/{subscription}")
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	case err := <-errc:
		return err
	}
}

// ListenAddr waits for Start to listen and returns the bound address (useful
// with ":0").
func (s *Server) ListenAddr(ctx context.Context) (net.Addr, error) {
	s.init()
	select {
	case a := <-s.addr:
		s.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type response struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) reply(w http.ResponseWriter, code int, msg string) {
	requestsTotal.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	r := response{Status: http.StatusText(code)}
	if code >= 400 {
		r.Error = msg
	} else {
		r.Status = msg
	}
	_ = json.NewEncoder(w).Encode(r)
}

func (s *Server) serveEvent(w http.ResponseWriter, r *http.Request) {
	start := s.Now()
	logger := log.FromContext(r.Context()).WithValues("path", r.URL.Path)
	code, msg := s.handle(r, logger)
	s.reply(w, code, msg)
	if code < 300 {
		ackLatency.Observe(s.Now().Sub(start).Seconds())
	}
}

// handle returns the status code and message for one delivery. Its order of
// checks is deliberate: size and content type first (cheap, no secrets), then
// the subscription, then the signature, and only then the payload, so that an
// unsigned request learns nothing about payload validation.
func (s *Server) handle(r *http.Request, logger logr.Logger) (int, string) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return http.StatusUnsupportedMediaType, "content type must be application/json"
	}
	if r.ContentLength > s.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.MaxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.MaxBodyBytes+1))
	if err != nil {
		return http.StatusBadRequest, "could not read body"
	}
	if int64(len(body)) > s.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.MaxBodyBytes)
	}

	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	var sub togetherv1.TogetherWebhookSubscription
	if err := s.Client.Get(r.Context(), key, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			return http.StatusNotFound, "no subscription at this path"
		}
		logger.Error(err, "reading subscription")
		return http.StatusServiceUnavailable, "subscription unavailable, retry later"
	}
	if !sub.DeletionTimestamp.IsZero() {
		return http.StatusNotFound, "no subscription at this path"
	}

	ok, err := s.verify(r, &sub, body)
	if err != nil {
		if errors.Is(err, ErrSecretMissing) {
			logger.Info("subscription's signing secret is missing; rejecting delivery", "subscription", key.String())
			return http.StatusUnauthorized, "signature verification failed"
		}
		logger.Error(err, "reading signing secret")
		return http.StatusServiceUnavailable, "could not verify now, retry later"
	}
	if !ok {
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Rejected)).Inc()
		return http.StatusUnauthorized, "signature verification failed"
	}

	ev, err := event.Decode(body)
	if errors.Is(err, event.ErrUnknownType) {
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Ignored)).Inc()
		return http.StatusAccepted, "ignored: unknown event type"
	}
	if err != nil {
		intake.EventsTotal.WithLabelValues("unknown", "push", string(lattice.Rejected)).Inc()
		return http.StatusBadRequest, err.Error()
	}
	if !wants(&sub, ev.Type) {
		intake.EventsTotal.WithLabelValues(string(ev.Type), "push", string(lattice.Ignored)).Inc()
		return http.StatusAccepted, "ignored: the subscription does not ask for " + string(ev.Type)
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.AckTimeout)
	defer cancel()
	res := s.Applier.Apply(ctx, sub.Namespace, ev, intake.Options{Subscription: &sub})
	intake.EventsTotal.WithLabelValues(string(ev.Type), "push", string(res.Outcome)).Inc()
	return s.respond(ctx, &sub, ev, res, logger)
}

func (s *Server) respond(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription, ev event.Event, res intake.Result, logger logr.Logger) (int, string) {
	switch res.Outcome {
	case lattice.Applied, lattice.Duplicate, lattice.Stale:
		s.touch(ctx, sub)
		return http.StatusOK, string(res.Outcome)
	case lattice.Unmatched:
		s.warnUnmatched(sub, ev, res.Err)
		return http.StatusAccepted, "unmatched: no resource tracks " + ev.JobID
	case lattice.Ignored:
		return http.StatusAccepted, "ignored"
	default:
		logger.Error(res.Err, "recording event failed; the sender will retry", "event", ev.ID, "type", ev.Type)
		return http.StatusServiceUnavailable, "could not record the event, retry later"
	}
}

// verify checks the Standard Webhooks signature when its headers are present,
// otherwise X-Together-Signature, against the current and previous secret.
func (s *Server) verify(r *http.Request, sub *togetherv1.TogetherWebhookSubscription, body []byte) (bool, error) {
	check := func(secrets [][]byte) bool {
		if sig := r.Header.Get(push.HeaderWebhookSignature); sig != "" {
			return push.VerifyStandard(r.Header.Get(push.HeaderWebhookID), r.Header.Get(push.HeaderWebhookTimestamp),
				sig, body, s.Now(), s.Tolerance, secrets...)
		}
		sig := r.Header.Get(push.HeaderSignature)
		return sig != "" && push.VerifyHex(sig, body, secrets...)
	}
	secrets, refreshed, err := s.secrets.get(r.Context(), sub, false)
	if err != nil {
		return false, err
	}
	if check(secrets) {
		return true, nil
	}
	if refreshed {
		return false, nil
	}
	// The secret may have been rotated since it was cached.
	if secrets, refreshed, err = s.secrets.get(r.Context(), sub, true); err != nil || !refreshed {
		return false, err
	}
	return check(secrets), nil
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

// warnUnmatched emits one Warning Event per subscription (per process), not
// one per delivery: a misrouted sender would otherwise flood the namespace.
func (s *Server) warnUnmatched(sub *togetherv1.TogetherWebhookSubscription, ev event.Event, why error) {
	if s.Recorder == nil {
		return
	}
	if _, loaded := s.warned.LoadOrStore(sub.UID, struct{}{}); loaded {
		return
	}
	if errors.Is(why, deprecation.ErrNoReplacement) {
		s.Recorder.Eventf(sub, nil, "Warning", "NoReplacementKnown", "Receive",
			"Model %s is deprecated but no replacement is known: add it to spec.modelReplacements", ev.JobID)
		return
	}
	s.Recorder.Eventf(sub, nil, "Warning", "UnmatchedEvent", "Receive",
		"Event %s (%s) is about %s, which no resource in %s tracks; set spec.adoptUnmatched to create one (further unmatched events are counted in together_events_total, not reported here)",
		ev.ID, ev.Type, ev.JobID, sub.Namespace)
}

// touch records status.lastEventTime at most once a minute per subscription,
// so that a busy subscription does not cost a second write per event.
func (s *Server) touch(ctx context.Context, sub *togetherv1.TogetherWebhookSubscription) {
	key := sub.Namespace + "/" + sub.Name
	now := s.Now()
	if v, ok := s.lastSeen.Load(key); ok && now.Sub(v.(time.Time)) < time.Minute {
		return
	}
	s.lastSeen.Store(key, now)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		patch := client.MergeFrom(sub.DeepCopy())
		cp := sub.DeepCopy()
		t := metav1.NewTime(now)
		cp.Status.LastEventTime = &t
		_ = s.Client.Status().Patch(ctx, cp, patch)
	}()
}
