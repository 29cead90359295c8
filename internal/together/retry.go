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
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/go-retryablehttp"
)

// maxRetryAfter caps how long one retry honours a server's Retry-After, so
// that a reconciler is not parked for an hour inside a single call; past
// that, the caller gets IsRateLimited and APIError.RetryAfter to requeue on.
const maxRetryAfter = time.Minute

type idempotencyKey struct{}

func withIdempotency(ctx context.Context, idempotent bool) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, idempotent)
}

// newRetryClient wires go-retryablehttp with this package's policy.
func newRetryClient(hc *http.Client, o Options) *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = hc
	rc.RetryMax = o.MaxRetries
	rc.RetryWaitMin = o.RetryWaitMin
	rc.RetryWaitMax = o.RetryWaitMax
	rc.CheckRetry = checkRetry
	rc.Backoff = backoff
	// Hand the last response back so it becomes a typed APIError rather
	// than the library's generic "giving up" error.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = leveled{o.Logger}
	return rc
}

// checkRetry retries 429, 5xx and connection errors for idempotent calls
// only. Together's API has no idempotency keys, so retrying a create after
// the server may have acted on it (a 5xx, a reset connection, a timeout)
// could start a second fine-tune or batch and bill for it twice; those
// errors go back to the reconciler, which first looks for the job it may
// have created (by suffix or input file) before creating again. A 429 is
// the exception: it means the request was not processed, so it is safe to
// retry any call.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		return true, nil
	}
	if idem, _ := ctx.Value(idempotencyKey{}).(bool); !idem {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff is exponential with full jitter between half and all of the
// step, so that many clients retrying together spread out, and honours a
// server's Retry-After (capped at maxRetryAfter) on 429 and 503.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if ra := parseRetryAfter(resp.Header); ra > 0 || hasRetryAfter(resp.Header) {
			return min(ra, maxRetryAfter)
		}
	}
	d := retryablehttp.DefaultBackoff(minWait, maxWait, attempt, nil)
	half := d / 2
	return half + rand.N(half+1)
}

// leveled adapts logr to the library's logger; the library logs method and
// URL, never headers, so the key stays out of logs.
type leveled struct{ l logr.Logger }

func (l leveled) Error(msg string, kv ...any) { l.l.V(1).Info(msg, kv...) }
func (l leveled) Info(msg string, kv ...any)  { l.l.V(2).Info(msg, kv...) }
func (l leveled) Debug(msg string, kv ...any) { l.l.V(3).Info(msg, kv...) }
func (l leveled) Warn(msg string, kv ...any)  { l.l.V(1).Info(msg, kv...) }
