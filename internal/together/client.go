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

package together

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// DefaultBaseURL is Together's API; the legacy https://api.together.xyz/v1
// serves the same routes.
const DefaultBaseURL = "https://api.together.ai/v1"

// Defaults used when Options leaves a field zero.
const (
	DefaultRateLimit    rate.Limit = 10
	DefaultBurst                   = 20
	DefaultMaxRetries              = 4
	DefaultRetryWaitMin            = 500 * time.Millisecond
	DefaultRetryWaitMax            = 30 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for a response's
	// headers on every attempt, so a server that accepts and then hangs
	// cannot hold a reconciler or the poller.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// DefaultCallTimeout (v2endpoints.go, 30 s) bounds one call, retries
	// and body included, unless Options.CallTimeout says otherwise.
	// DefaultStreamTimeout bounds an upload, whose body may be large.
	DefaultStreamTimeout = 30 * time.Minute
	maxErrorBody         = 64 << 10
)

// Options configure a Client.
type Options struct {
	// BaseURL defaults to DefaultBaseURL.
	BaseURL string
	// APIKey is sent as a bearer token and never logged.
	APIKey string
	// HTTPClient is copied, not modified; its Transport gets the limiter.
	HTTPClient *http.Client
	// RateLimit and Burst bound requests per second on this client;
	// zero means DefaultRateLimit/DefaultBurst, rate.Inf means unlimited.
	RateLimit rate.Limit
	Burst     int
	// MaxRetries is the number of retries after the first attempt; zero
	// means DefaultMaxRetries, negative disables retries.
	MaxRetries   int
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// ResponseHeaderTimeout, CallTimeout and StreamTimeout bound every
	// call (zero means the Default… values). A download's body is the
	// caller's to bound once its headers have arrived.
	ResponseHeaderTimeout time.Duration
	CallTimeout           time.Duration
	StreamTimeout         time.Duration
	Logger                logr.Logger
	// Metrics is where the requests counter is registered; nil means
	// controller-runtime's registry.
	Metrics prometheus.Registerer
}

// Client calls the Together API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	v2   *url.URL
	key  string
	// callTimeout and streamTimeout are the per-call deadlines.
	callTimeout, streamTimeout time.Duration
	http                       *http.Client // limiter-wrapped; used directly for streamed uploads
	retry                      *retryablehttp.Client
	log                        logr.Logger
	counts                     *prometheus.CounterVec
}

// requestsTotal is created once per process: New is called many times (every
// test, every key rotation) and registering a fresh collector each time
// would fail with AlreadyRegistered.
var requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "together_api_requests_total",
	Help: "Calls to the Together API by client operation and outcome.",
}, []string{"operation", "outcome"})

// New returns a Client for o.
func New(o Options) (*Client, error) {
	base, err := parseBase(o.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := registerMetrics(o.Metrics); err != nil {
		return nil, err
	}
	o = withDefaults(o)
	hc := limitedHTTPClient(o.HTTPClient, rate.NewLimiter(o.RateLimit, o.Burst), o.ResponseHeaderTimeout)
	return &Client{
		base:          base,
		callTimeout:   o.CallTimeout,
		streamTimeout: o.StreamTimeout,
		key:           o.APIKey,
		http:          hc,
		retry:         newRetryClient(hc, o),
		log:           o.Logger,
		counts:        requestsTotal,
	}, nil
}

func parseBase(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("together: base URL %q must be an absolute http(s) URL", raw)
	}
	return u, nil
}

func registerMetrics(r prometheus.Registerer) error {
	if r == nil {
		r = metrics.Registry
	}
	for _, c := range []prometheus.Collector{requestsTotal, malformedItems} {
		if err := r.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				return fmt.Errorf("together: registering metrics: %w", err)
			}
		}
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	if o.RetryWaitMax < o.RetryWaitMin {
		o.RetryWaitMax = o.RetryWaitMin
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.StreamTimeout <= 0 {
		o.StreamTimeout = DefaultStreamTimeout
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return o
}

// call describes one API call.
type call struct {
	op     string
	method string
	path   string
	body   any
	// idempotent marks calls that may be retried after the server may have
	// acted on them; see retry.go.
	idempotent bool
	// accept overrides the Accept header (default application/json).
	accept string
	// v2 sends the call to the v2 API next to the base URL (see v2URL).
	v2 bool
}

// do runs c and decodes a 2xx JSON body into out (if non-nil).
func (c *Client) do(ctx context.Context, k call, out any) (err error) {
	defer func() { c.counts.WithLabelValues(k.op, outcome(err)).Inc() }()
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := c.send(ctx, k)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("together: %s: decoding response: %w", k.op, err)
	}
	return nil
}

// send performs k with retries and returns a 2xx response whose body the
// caller must close, or an error (an *APIError for non-2xx answers).
func (c *Client) send(ctx context.Context, k call) (*http.Response, error) {
	var body io.Reader
	if k.body != nil {
		b, err := json.Marshal(k.body)
		if err != nil {
			return nil, fmt.Errorf("together: %s: encoding request: %w", k.op, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.url(k.path)
	if k.v2 {
		u = c.v2URL(k.path)
	}
	req, err := retryablehttp.NewRequestWithContext(withIdempotency(ctx, k.idempotent), k.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("together: %s: building request: %w", k.op, err)
	}
	c.authorize(req.Request)
	if k.accept != "" {
		req.Header.Set("Accept", k.accept)
	}
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.retry.Do(req)
	if err != nil {
		// The library's message names the method and URL only, never
		// headers, so the key cannot leak through it.
		return nil, fmt.Errorf("together: %s: %w", k.op, err)
	}
	return c.check(k.op, resp)
}

// check turns a non-2xx response into an *APIError and closes it.
func (c *Client) check(op string, resp *http.Response) (*http.Response, error) {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer drainClose(resp.Body)
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return nil, parseAPIError(op, resp.StatusCode, resp.Header, b, c.key)
}

func (c *Client) authorize(r *http.Request) {
	r.Header.Set("Authorization", "Bearer "+c.key)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "together-operator")
}

func (c *Client) url(path string) string {
	return c.base.String() + path
}

func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, maxErrorBody))
	_ = rc.Close()
}

func pathID(prefix, id string) string { return prefix + "/" + url.PathEscape(id) }

// limitedHTTPClient copies hc (or a default) with a Transport that waits on
// lim before every attempt, retries included. An *http.Transport (the
// default one included) is cloned with headerTimeout as its
// ResponseHeaderTimeout unless it sets a shorter one.
func limitedHTTPClient(hc *http.Client, lim *rate.Limiter, headerTimeout time.Duration) *http.Client {
	var cp http.Client
	if hc != nil {
		cp = *hc
	}
	next := cp.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if t, ok := next.(*http.Transport); ok && (t.ResponseHeaderTimeout == 0 || t.ResponseHeaderTimeout > headerTimeout) {
		t = t.Clone()
		t.ResponseHeaderTimeout = headerTimeout
		next = t
	}
	cp.Transport = &limitedTransport{next: next, lim: lim}
	return &cp
}

type limitedTransport struct {
	next http.RoundTripper
	lim  *rate.Limiter
}

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.lim.Wait(r.Context()); err != nil {
		return nil, fmt.Errorf("waiting for the client-side rate limiter: %w", err)
	}
	return t.next.RoundTrip(r)
}
