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
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrNotSupported reports that the server does not offer the project's
// webhook contract (Together's public API does not): callers fall back to
// polling instead of failing.
var ErrNotSupported = errors.New("together: webhook subscriptions are not supported by this server")

// APIError is a non-2xx answer from the API. Message comes from whichever of
// the API's three error body shapes the server used; it never contains the
// API key (the client redacts it should a server echo it).
type APIError struct {
	StatusCode int
	Type       string
	Code       string
	Message    string
	// Operation is the client call that failed, e.g. "GetFineTune".
	Operation string
	// RetryAfter is the server's Retry-After, if it sent one, so that a
	// reconciler can requeue after it instead of guessing.
	RetryAfter time.Duration
}

// Error describes the failure without any request header or credential.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("together")
	if e.Operation != "" {
		b.WriteString(": " + e.Operation)
	}
	fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	if e.Type != "" {
		b.WriteString(" " + e.Type)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// errorBody matches all three shapes: {"error":{...}}, {"error":"str"}
// (batch routes) and {"message":"str"} (model limits).
type errorBody struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
}

type errorData struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

// parseAPIError builds an APIError from a response body, removing secret
// from the message in case the server echoed it.
func parseAPIError(op string, status int, header http.Header, body []byte, secret string) *APIError {
	e := &APIError{StatusCode: status, Operation: op, RetryAfter: parseRetryAfter(header)}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		e.Message = eb.Message
		var s string
		var d errorData
		switch {
		case json.Unmarshal(eb.Error, &s) == nil:
			e.Message = s
		case json.Unmarshal(eb.Error, &d) == nil:
			e.Message, e.Type, e.Code = d.Message, d.Type, rawString(d.Code)
		}
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 256 {
			e.Message = e.Message[:256]
		}
	}
	if secret != "" {
		e.Message = strings.ReplaceAll(e.Message, secret, "[REDACTED]")
	}
	return e
}

// rawString reads a code that may be a string, a number or null.
func rawString(r json.RawMessage) string {
	var s string
	if json.Unmarshal(r, &s) == nil {
		return s
	}
	if len(r) == 0 || string(r) == "null" {
		return ""
	}
	return string(r)
}

// parseRetryAfter reads how long the server asks a client to wait, in the
// SDKs' order of preference: Retry-After-Ms (milliseconds), Retry-After
// (seconds or an HTTP date; together-go internal/requestconfig,
// together-typescript client.ts), then x-ratelimit-reset, which Together's
// rate-limit docs call the suggested wait (read as seconds; a value that
// looks like a Unix time is read as that instant — its unit is unconfirmed).
func parseRetryAfter(h http.Header) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
			return time.Duration(secs * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), 0)
		}
	}
	if v := h.Get("X-Ratelimit-Reset"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
			if secs > 1e9 {
				return max(time.Until(time.Unix(int64(secs), 0)), 0)
			}
			return time.Duration(secs * float64(time.Second))
		}
	}
	return 0
}

// hasRetryAfter reports whether the server sent any wait hint at all.
func hasRetryAfter(h http.Header) bool {
	return h.Get("Retry-After-Ms") != "" || h.Get("Retry-After") != "" || h.Get("X-Ratelimit-Reset") != ""
}

func statusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsUnauthorized reports a rejected or missing API key (401).
func IsUnauthorized(err error) bool { return statusOf(err) == http.StatusUnauthorized }

// IsNotFound reports an unknown id (404).
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsRateLimited reports a 429 that outlasted the client's retries.
func IsRateLimited(err error) bool { return statusOf(err) == http.StatusTooManyRequests }

// IsQuotaExceeded reports the account's spending limit (402).
func IsQuotaExceeded(err error) bool { return statusOf(err) == http.StatusPaymentRequired }

// IsInvalidRequest reports a request the server refused as malformed or not
// allowed (400, 403, 409, 422); retrying it unchanged will not help.
func IsInvalidRequest(err error) bool {
	switch statusOf(err) {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusConflict, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// IsServerError reports a 5xx that outlasted the client's retries.
func IsServerError(err error) bool { return statusOf(err) >= 500 }

// outcome names an error class for the requests metric.
func outcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, ErrNotSupported):
		return "not_supported"
	case IsUnauthorized(err):
		return "unauthorized"
	case IsNotFound(err):
		return "not_found"
	case IsRateLimited(err):
		return "rate_limited"
	case IsQuotaExceeded(err):
		return "quota_exceeded"
	case IsInvalidRequest(err):
		return "invalid_request"
	case IsServerError(err):
		return "server_error"
	case statusOf(err) != 0:
		return "client_error"
	}
	return "transport_error"
}

// notSupportedError is both ErrNotSupported and the APIError behind it.
type notSupportedError struct{ api *APIError }

func (e *notSupportedError) Error() string   { return ErrNotSupported.Error() + ": " + e.api.Error() }
func (e *notSupportedError) Unwrap() []error { return []error{ErrNotSupported, e.api} }
