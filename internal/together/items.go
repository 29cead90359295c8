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
	"io"

	"github.com/prometheus/client_golang/prometheus"
)

// malformedItems counts list items that did not decode and were skipped.
var malformedItems = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "together_api_malformed_items_total",
	Help: "List items from the Together API that did not decode and were skipped, by client operation.",
}, []string{"operation"})

// MalformedItem is a list item that did not decode. ID is the item's "id"
// when that much could be read.
type MalformedItem struct {
	Operation string
	ID        string
	Err       error
}

// decodeItems decodes each raw item on its own, so that one item the client
// cannot read (a malformed timestamp, a status of an unexpected type) skips
// that item instead of failing the whole list and, with it, a poll cycle.
func decodeItems[T any](c *Client, op string, raw []json.RawMessage) ([]T, []MalformedItem) {
	out := make([]T, 0, len(raw))
	var bad []MalformedItem
	for _, r := range raw {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			var idOnly struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(r, &idOnly)
			bad = append(bad, MalformedItem{Operation: op, ID: idOnly.ID, Err: err})
			malformedItems.WithLabelValues(op).Inc()
			c.log.Info("skipping a list item that does not decode", "operation", op, "id", idOnly.ID, "error", err.Error())
			continue
		}
		out = append(out, v)
	}
	return out, bad
}

// cancelOnClose releases a streamed call's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
