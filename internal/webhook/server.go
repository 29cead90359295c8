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

// Package webhook serves the events endpoint: it receives signed pushes,
// verifies and decodes them, and hands them to the one apply step. The push
// contract (X-Together-Signature, Standard Webhooks headers, the five event
// types) is this project's own: Together's public API pushes nothing today,
// and the poller covers the real API.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/ttl"
)

// PathPrefix is where subscriptions are served: PathPrefix + "{namespace}/{name}".
const PathPrefix = "/webhooks/together/"

// PathFor returns the path that serves a subscription.
func PathFor(namespace, name string) string { return PathPrefix + namespace + "/" + name }

// Defaults of the endpoint's limits.
const (
	// DefaultMaxBodyBytes is the largest body read. The largest event of the
	// contract (a fine_tune.failed with a long error message, a batch.done
	// with URLs) is a few KiB; 64 KiB leaves room for that and for fields a
	// sender adds, while 256 bodies in flight fit the default budget.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultMaxInFlightBytes bounds the body bytes all requests of the
	// process hold at once (16 MiB: 256 bodies of the maximum size), well
	// inside a replica's 256 Mi limit.
	DefaultMaxInFlightBytes = 16 << 20
	// DefaultSourceRate and DefaultSourceBurst are the token bucket of one
	// source address (every request counts, before anything else is done).
	DefaultSourceRate  = 1000
	DefaultSourceBurst = 2000
	// DefaultSubscriptionRate and DefaultSubscriptionBurst are the token
	// bucket of one subscription (verified deliveries count: those are the
	// ones that cost API-server writes).
	DefaultSubscriptionRate  = 2000
	DefaultSubscriptionBurst = 4000
	// DefaultMaxConnections and DefaultMaxConnectionsPerSource bound the
	// connections held at once (a connection costs tens of KiB of goroutine
	// and buffers however little it sends): 1024 is far above what senders
	// need with keep-alive, and one address may hold a quarter of it.
	DefaultMaxConnections          = 1024
	DefaultMaxConnectionsPerSource = 256
)

// Server is the events endpoint. It runs on every replica (it is not
// leader-gated), because a push must be accepted wherever it lands.
type Server struct {
	// Addr is the listen address, e.g. ":8090".
	Addr string
	// Client reads subscriptions from the manager's cache.
	Client client.Client
	// SecretCache serves the metadata (existence, version) of signing
	// Secrets: the manager's cache itself (mgr.GetCache()), since the
	// manager's client reads Secrets past it (operator.ClientOptions).
	// Start refuses to run without it: every delivery would then read its
	// Secret from the API server. Handler alone (tests) falls back to
	// Client.
	SecretCache client.Reader
	// SecretReader reads a signing Secret's data straight from the API
	// server, once per version of it (secretCache).
	SecretReader client.Reader
	Applier      *intake.Applier
	Recorder     events.EventRecorder
	// Tolerance is how far a Standard Webhooks timestamp may be from now;
	// it is also how long a webhook-id is remembered against replays.
	Tolerance time.Duration
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes int64
	// MaxInFlightBytes bounds the body bytes held by all requests at once;
	// when it is spent a request gets 503 with Retry-After before its body
	// is read.
	MaxInFlightBytes int64
	// SourceRate (per second) and SourceBurst size the token bucket of each
	// source address; an empty bucket answers 429 with Retry-After. A
	// negative rate turns the limit off.
	SourceRate  float64
	SourceBurst int
	// SubscriptionRate and SubscriptionBurst size the token bucket of each
	// subscription, taken by verified deliveries only (so that unsigned
	// traffic cannot starve a subscription's sender).
	SubscriptionRate  float64
	SubscriptionBurst int
	// MaxConnections bounds the connections served at once (further ones
	// wait to be accepted) and MaxConnectionsPerSource those of one source
	// address (further ones are closed); negative turns a limit off.
	MaxConnections          int
	MaxConnectionsPerSource int
	// AckTimeout bounds how long a delivery waits for its write.
	AckTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// headers, so that a slow client cannot hold a connection open; the
	// default is 5s. Tests shorten it to see a slow client cut off.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds how long a client may take to send a whole
	// request, body included (default 10s): a slow body holds its share of
	// the in-flight budget at most this long.
	ReadTimeout time.Duration
	Now         func() time.Time
	// TLS, when its files are set, serves HTTPS instead of plain HTTP.
	TLS TLSFiles

	initOnce sync.Once
	secrets  *secretCache
	budget   *byteBudget
	sources  *buckets
	subs     *buckets
	// replays remembers the webhook-ids of acknowledged deliveries per
	// subscription, for as long as their timestamp is acceptable.
	replays *ttl.Map[replayKey, struct{}]
	// warned remembers which subscriptions were warned about an unmatched
	// event, so that a misrouted sender gets one Warning an hour, not one
	// per delivery.
	warned *ttl.Map[warnKey, struct{}]
	// lastSeen remembers when status.lastEventTime was last written per
	// subscription.
	lastSeen *ttl.Map[types.UID, struct{}]
	// lastEvents writes status.lastEventTime.
	lastEvents *lastEventWriter
	addr       chan net.Addr
}

type replayKey struct {
	sub types.UID
	id  string
}

type warnKey struct {
	sub    types.UID
	reason string
}

// Bounds of the endpoint's own memory: how many entries each of its sets
// may hold (see expiring).
const (
	maxReplayEntries = 200_000
	maxSourceEntries = 10_000
	maxSubEntries    = 10_000
	warnEvery        = time.Hour
)

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Tolerance == 0 {
			s.Tolerance = 5 * time.Minute
		}
		if s.MaxBodyBytes == 0 {
			s.MaxBodyBytes = DefaultMaxBodyBytes
		}
		if s.MaxInFlightBytes == 0 {
			s.MaxInFlightBytes = DefaultMaxInFlightBytes
		}
		s.MaxInFlightBytes = max(s.MaxInFlightBytes, s.MaxBodyBytes)
		if s.SourceRate == 0 {
			s.SourceRate, s.SourceBurst = DefaultSourceRate, DefaultSourceBurst
		}
		if s.SubscriptionRate == 0 {
			s.SubscriptionRate, s.SubscriptionBurst = DefaultSubscriptionRate, DefaultSubscriptionBurst
		}
		if s.MaxConnections == 0 {
			s.MaxConnections = DefaultMaxConnections
		}
		if s.MaxConnectionsPerSource == 0 {
			s.MaxConnectionsPerSource = DefaultMaxConnectionsPerSource
		}
		if s.AckTimeout == 0 {
			s.AckTimeout = 15 * time.Second
		}
		if s.ReadHeaderTimeout == 0 {
			s.ReadHeaderTimeout = 5 * time.Second
		}
		if s.ReadTimeout == 0 {
			s.ReadTimeout = 10 * time.Second
		}
		meta := s.SecretCache
		if meta == nil && s.Client != nil {
			meta = s.Client
		}
		s.secrets = newSecretCache(meta, s.SecretReader, s.Now)
		s.budget = &byteBudget{limit: s.MaxInFlightBytes}
		s.sources = newBuckets(s.SourceRate, max(s.SourceBurst, 1), maxSourceEntries)
		s.subs = newBuckets(s.SubscriptionRate, max(s.SubscriptionBurst, 1), maxSubEntries)
		s.replays = ttl.New[replayKey, struct{}](maxReplayEntries, time.Minute)
		s.warned = ttl.New[warnKey, struct{}](maxSubEntries, time.Minute)
		s.lastSeen = ttl.New[types.UID, struct{}](maxSubEntries, time.Minute)
		s.lastEvents = newLastEventWriter(s.Client, maxSubEntries, s.lastSeen.Delete)
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
	if s.SecretCache == nil && s.Client != nil {
		return errors.New("the events endpoint needs SecretCache (the manager's cache): without it every delivery would read its signing Secret from the API server")
	}
	s.init()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
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
	ln = limitConns(ln, s.MaxConnections, s.MaxConnectionsPerSource)
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
