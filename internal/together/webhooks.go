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
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// codeWebhookNotFound is what the project's webhook contract answers for an
// unknown subscription id. A 404 without it means the server has no
// webhook routes at all (Together's real API), i.e. ErrNotSupported.
const codeWebhookNotFound = "webhook_not_found"

// CreateWebhook registers a subscription under the project's push contract.
// Against a server without it (Together today) the error is ErrNotSupported.
func (c *Client) CreateWebhook(ctx context.Context, req WebhookRequest) (*Webhook, error) {
	var w Webhook
	err := c.webhookCall(ctx, call{op: "CreateWebhook", method: http.MethodPost, path: "/webhooks", body: req}, &w)
	return &w, err
}

// ListWebhooks lists the subscriptions.
func (c *Client) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	var l dataList[Webhook]
	return l.Data, c.webhookCall(ctx, get("ListWebhooks", "/webhooks"), &l)
}

// UpdateWebhook replaces a subscription's URL, events and secret.
func (c *Client) UpdateWebhook(ctx context.Context, id string, req WebhookRequest) (*Webhook, error) {
	var w Webhook
	k := call{op: "UpdateWebhook", method: http.MethodPatch, path: pathID("/webhooks", id), body: req, idempotent: true}
	return &w, c.webhookCall(ctx, k, &w)
}

// DeleteWebhook removes a subscription.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	return c.webhookCall(ctx, call{op: "DeleteWebhook", method: http.MethodDelete, path: pathID("/webhooks", id), idempotent: true}, nil)
}

// webhookCall maps "no such route" answers to ErrNotSupported while keeping
// the APIError reachable through errors.As.
func (c *Client) webhookCall(ctx context.Context, k call, out any) error {
	err := c.do(ctx, k, out)
	var api *APIError
	if errors.As(err, &api) && isMissingRoute(api) {
		return &notSupportedError{api: api}
	}
	return err
}

func isMissingRoute(e *APIError) bool {
	return e.StatusCode == http.StatusMethodNotAllowed ||
		(e.StatusCode == http.StatusNotFound && e.Code != codeWebhookNotFound)
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
