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

// Package togethersim is an in-memory stand-in for Together AI's REST API,
// used by envtest suites, benchmarks and `make run` where no machine can
// reach Together. It serves the same routes and JSON shapes as the real
// service (internal/together's golden fixtures pin both) and behaves like it
// rather than echoing: jobs move through their real lifecycles on a clock
// the caller sets, batch outputs answer each input line, errors use the real
// body shapes, and requests without the key get 401.
//
// Lifecycle rules worth knowing when writing tests:
//   - fine-tunes: pending → queued → running (one checkpoint_save event per
//     step, loss decreasing) → compressing → uploading → completed, or error
//     at the step a FineTuneScript names.
//   - batches: VALIDATING → IN_PROGRESS → COMPLETED. An input line whose
//     body contains the text "fail" is answered in the error file instead of
//     the output file; output lines come back shuffled, as the real service
//     does not keep order. FAILED and EXPIRED are reachable via BatchScript.
//   - v1 endpoints: POST /v1/endpoints answers 403
//     endpoints_v1_create_access_disabled, as Together does since v1 creation
//     was retired; AddV1Endpoint preloads one made before. PENDING →
//     STARTING → STARTED (and STOPPING → STOPPED). GET /v1/endpoints also
//     lists a serverless endpoint per catalogue model (owner "together");
//     mine=true and type=dedicated filter them out.
//   - v2 dedicated endpoints (v2endpoints.go, wire JSON of its own): a
//     completed fine-tune registers ml_/rv_ ids and three config revisions;
//     deployments go PROVISIONING → SCALING → READY (or FAILED via
//     FailNextV2Deployment), 0/0 goes STOPPING → STOPPED; a deployment is
//     deleted only when stopped and out of the traffic split, an endpoint
//     only when it has no deployments.
//   - accounts (accounts.go): Options.APIKey is the default account;
//     AddAccount adds keys that are accounts of their own. Fine-tunes and
//     batches belong to the account that made them and are invisible (404,
//     absent from lists) to the others; CountCallsAs counts one account's
//     calls.
//
// The routes under /v1/webhooks and the signed event deliveries are NOT part
// of Together's API: they are the push contract this project defines for
// relays and for the day Together offers push. Deliveries are signed both
// ways the receiver accepts (pkg/push) and retried on non-2xx with
// exponential backoff; Faults can drop, duplicate, reorder and delay them,
// and can make chosen routes answer 429/5xx or slowly.
package togethersim
