// Package together is a typed client for Together AI's public REST API
// (https://api.together.ai/v1): fine-tunes, batches, files, dedicated
// endpoints and models, shaped exactly as Together's own OpenAPI spec and Go
// SDK describe them.
//
// It also speaks the webhook registration routes under /webhooks. Those are
// NOT part of Together's API, which pushes nothing and must be polled: they
// are the push contract this project defines for relays and for the day
// Together offers push. Against the real service they answer 404, which the
// client reports as ErrNotSupported so callers can fall back to polling.
//
// Calls are rate limited on the client side, counted in the Prometheus
// counter together_api_requests_total{operation,outcome}, and retried with
// exponential backoff, jitter and Retry-After only where a retry cannot do
// the same work twice (see retry.go). The API key is sent only in the
// Authorization header; it never appears in a log line or an error.
package together
