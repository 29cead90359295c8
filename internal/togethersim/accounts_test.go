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

package togethersim_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// Each key added with AddAccount sees only its own account's fine-tunes and
// batches, another account's IDs answer 404, and calls are counted per
// account.
func TestAccountsSeeOnlyTheirOwnWork(t *testing.T) {
	s := start(t, togethersim.Options{})
	s.AddAccount("team-b-key")
	ctx := context.Background()
	a := client(t, s)
	b, err := together.New(together.Options{BaseURL: s.URL(), APIKey: "team-b-key", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ftA := s.AddFineTune(togethersim.FineTune{Model: "org/m", Status: "running"})
	ftB := s.AddFineTune(togethersim.FineTune{Model: "org/m", Status: "running", Account: "team-b-key"})
	batchB := s.AddBatch(togethersim.Batch{Account: "team-b-key"})

	ids := func(c *together.Client) (out []string) {
		fts, err := c.ListFineTunes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fts {
			out = append(out, f.ID)
		}
		return out
	}
	if got := ids(a); len(got) != 1 || got[0] != ftA {
		t.Errorf("the default account lists %v, want only %s", got, ftA)
	}
	if got := ids(b); len(got) != 1 || got[0] != ftB {
		t.Errorf("team-b lists %v, want only %s", got, ftB)
	}
	var apiErr *together.APIError
	if _, err := a.GetFineTune(ctx, ftB); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("reading another account's job: %v, want 404", err)
	}
	if _, err := a.GetBatch(ctx, batchB); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("reading another account's batch: %v, want 404", err)
	}
	if bs, err := b.ListBatches(ctx); err != nil || len(bs) != 1 || bs[0].ID != batchB {
		t.Errorf("team-b lists batches %v (%v), want only %s", bs, err, batchB)
	}
	if n := s.CountCallsAs("team-b-key", "GET", "/v1/fine-tunes"); n != 1 {
		t.Errorf("team-b listed fine-tunes %d times by the server's count, want 1", n)
	}
	if n := s.CountCallsAs("", "GET", "/v1/fine-tunes"); n != 1 {
		t.Errorf("the default account listed fine-tunes %d times by the server's count, want 1", n)
	}
	unknown, err := together.New(together.Options{BaseURL: s.URL(), APIKey: "unknown", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unknown.ListFineTunes(ctx); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown key: %v, want 401", err)
	}
}
