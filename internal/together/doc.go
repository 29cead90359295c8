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
