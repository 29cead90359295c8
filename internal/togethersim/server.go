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
	"context"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Options configure a Server.
type Options struct {
	// APIKey is the only bearer token accepted; empty accepts any token
	// but still requires the header, as the real API does.
	APIKey string
	// StepInterval paces the lifecycles: every interval each live job
	// advances one step. Zero stops the clock; tests then call Advance.
	StepInterval time.Duration
	// TotalSteps is how many training steps a fine-tune runs (default 5).
	TotalSteps int
	// Now is the clock for timestamps (default time.Now).
	Now func() time.Time
	// Seed makes shuffles and delivery faults reproducible (default 1).
	Seed   uint64
	Logger logr.Logger
	// DeliveryRetryMin/Max bound the sender's backoff between attempts of
	// one delivery (defaults 50ms / 2s); DeliveryAttempts caps them (6).
	DeliveryRetryMin, DeliveryRetryMax time.Duration
	DeliveryAttempts                   int
}

// Call records one request the server answered.
type Call struct {
	Method string
	Path   string
	// Route is the pattern that served it, e.g.
	// "GET /v1/fine-tunes/{id}/metrics" ("" when no route matched).
	Route string
	// Query is the raw query string, e.g. "global_step_from=3&resolution=20".
	Query  string
	Status int
	// account is the account the request acted as (see AddAccount).
	account string
}

// Server is the simulator. Its methods are safe for concurrent use.
type Server struct {
	opts   Options
	faults *Faults
	mux    *http.ServeMux

	mu        sync.Mutex
	rng       *rand.Rand
	calls     []Call
	fineTunes map[string]*fineTune
	ftScripts []ftScript
	batches   map[string]*batch
	bScripts  []batchScript
	files     map[string]*file
	blobs     map[string][]byte
	endpoints map[string]*endpoint
	models    []modelObject
	// deprecated holds the IDs of models /v2/supported-models lists as
	// SUPPORTED_MODEL_STATUS_DEPRECATED.
	deprecated map[string]bool
	hooks      map[string]*hook
	v2         *v2State
	// accounts are the keys added with AddAccount, each its own account.
	accounts []string

	deliver *deliverer
	srv     *http.Server
	ln      net.Listener
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New returns a Server that is not listening yet; use Start or Handler.
func New(o Options) *Server {
	if o.TotalSteps <= 0 {
		o.TotalSteps = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	s := &Server{
		opts:       o,
		faults:     newFaults(o.Seed),
		rng:        rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed)),
		fineTunes:  map[string]*fineTune{},
		batches:    map[string]*batch{},
		files:      map[string]*file{},
		blobs:      map[string][]byte{},
		endpoints:  map[string]*endpoint{},
		models:     defaultModels(),
		deprecated: map[string]bool{},
		hooks:      map[string]*hook{},
		v2:         newV2State(),
		stop:       make(chan struct{}),
	}
	s.deliver = newDeliverer(s)
	s.mux = s.routes()
	return s
}

// Start listens on 127.0.0.1 at a free port, serves, and starts the clock.
// It returns URL().
func (s *Server) Start() (string, error) {
	return s.StartAt("127.0.0.1:0")
}

// StartAt is Start on a chosen address, for the together-sim binary.
func (s *Server) StartAt(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("togethersim: listening on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error(err, "simulator stopped serving")
		}
	}()
	s.startClock()
	s.deliver.start()
	return s.URL(), nil
}

// URL is the base URL to give together.Options.BaseURL, ending in "/v1".
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String() + "/v1"
}

// Handler serves the API without listening, e.g. under httptest. The clock
// and the webhook sender still need Start, or Advance and Flush.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Close stops the clock, the sender and the listener.
func (s *Server) Close() {
	select {
	case <-s.stop:
		return
	default:
		close(s.stop)
	}
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	}
	s.deliver.close()
	s.wg.Wait()
}

func (s *Server) startClock() {
	if s.opts.StepInterval <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.StepInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.Advance()
			}
		}
	}()
}

// Advance moves every live job, batch and endpoint one step, as one tick
// of the clock does. Tests with StepInterval 0 drive lifecycles with it.
func (s *Server) Advance() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range sortedKeys(s.fineTunes) {
		s.stepFineTune(s.fineTunes[id])
	}
	for _, id := range sortedKeys(s.batches) {
		s.stepBatch(s.batches[id])
	}
	for _, id := range sortedKeys(s.endpoints) {
		s.stepEndpoint(s.endpoints[id])
	}
	for _, id := range sortedKeys(s.files) {
		s.stepFile(s.files[id])
	}
	s.stepV2()
}

// Faults returns the fault knobs.
func (s *Server) Faults() *Faults { return s.faults }

// Calls returns every request answered so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CountCalls counts answered requests with this method and exact path
// (e.g. "/v1/fine-tunes").
func (s *Server) CountCalls(method, path string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

// CallsByRoute counts the requests served per route pattern (e.g.
// "GET /v1/fine-tunes/{id}/metrics"), as the server saw them: a test can
// assert what a client costs without trusting the client's own counters.
func (s *Server) CallsByRoute() map[string]int {
	out := map[string]int{}
	for _, c := range s.Calls() {
		out[c.Route]++
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	_, route := s.mux.Handler(r)
	if route == "/" {
		route = ""
	}
	account := s.accountOf(r)
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Route: route, Query: r.URL.RawQuery, Status: rec.status, account: account})
		s.mu.Unlock()
	}()
	if !s.authorized(r) {
		writeError(rec, r, http.StatusUnauthorized, "invalid_api_key", "Invalid API key provided. You can find your API key at https://api.together.ai/settings/api-keys.")
		return
	}
	if f, ok := s.faults.take(r.Method, r.URL.Path); ok {
		if !f.apply(rec, r) {
			return
		}
	}
	s.mux.ServeHTTP(rec, r)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.faults.keyRejected() {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	if s.accountOf(r) != "" {
		return true
	}
	return s.opts.APIKey == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.APIKey)) == 1
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/fine-tunes", s.createFineTune)
	m.HandleFunc("GET /v1/fine-tunes", s.listFineTunes)
	m.HandleFunc("GET /v1/fine-tunes/{id}", s.getFineTune)
	m.HandleFunc("POST /v1/fine-tunes/{id}/cancel", s.cancelFineTune)
	m.HandleFunc("GET /v1/fine-tunes/{id}/events", s.fineTuneEvents)
	m.HandleFunc("GET /v1/fine-tunes/{id}/checkpoints", s.fineTuneCheckpoints)
	m.HandleFunc("GET /v1/fine-tunes/{id}/metrics", s.fineTuneMetrics)
	m.HandleFunc("POST /v1/batches", s.createBatch)
	m.HandleFunc("GET /v1/batches", s.listBatches)
	m.HandleFunc("GET /v1/batches/{id}", s.getBatch)
	m.HandleFunc("POST /v1/batches/{id}/cancel", s.cancelBatch)
	m.HandleFunc("POST /v1/files/upload", s.uploadFile)
	m.HandleFunc("GET /v1/files", s.listFiles)
	m.HandleFunc("GET /v1/files/{id}", s.getFile)
	m.HandleFunc("GET /v1/files/{id}/content", s.fileContent)
	m.HandleFunc("GET /v1/endpoints", s.listEndpoints)
	m.HandleFunc("GET /v1/endpoints/{id}", s.getEndpoint)
	m.HandleFunc("PATCH /v1/endpoints/{id}", s.updateEndpoint)
	m.HandleFunc("DELETE /v1/endpoints/{id}", s.deleteEndpoint)
	m.HandleFunc("GET /v1/models", s.listModels)
	m.HandleFunc("GET /v2/supported-models", s.listSupportedModels)
	s.v2Routes(m) // whoami, the retired v1 endpoint create, v2 endpoints
	// The project's own push contract, not Together's API.
	m.HandleFunc("POST /v1/webhooks", s.createWebhook)
	m.HandleFunc("GET /v1/webhooks", s.listWebhooks)
	m.HandleFunc("PATCH /v1/webhooks/{id}", s.updateWebhook)
	m.HandleFunc("DELETE /v1/webhooks/{id}", s.deleteWebhook)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", "no route "+r.Method+" "+r.URL.Path)
	})
	return m
}

// newID returns prefix + a random (version 4) UUID, the form of Together's
// IDs (ft-…, file-…, endpoint-…; a batch's is a bare UUID). It draws from
// crypto/rand, never from the seeded generator, so that two simulator runs
// (a restart of make run, say) cannot hand out the same ID.
func newID(prefix string) string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%s%x-%x-%x-%x-%x", prefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (s *Server) now() time.Time { return s.opts.Now().UTC().Truncate(time.Second) }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the real API's error shape for the route: batch
// routes send {"error": "<string>"}, the rest ErrorData.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if strings.HasPrefix(r.URL.Path, "/v1/batches") {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	writeJSON(w, status, errorData{Error: errorBody{Message: msg, Type: errorType(status), Code: code}})
}

func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "invalid_request_error"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case http.StatusNotFound:
		return "not_found_error"
	}
	if status >= 500 {
		return "server_error"
	}
	return "invalid_request_error"
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_json", "request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
