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

package catalogue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/together-operator/together-operator/internal/together"
)

type fakeLister struct {
	calls atomic.Int32
	ids   []string
	err   error
}

func (f *fakeLister) ListModels(context.Context) ([]together.Model, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	var out []together.Model
	for _, id := range f.ids {
		out = append(out, together.Model{ID: id})
	}
	return out, nil
}

func TestHasListsOncePerAccountPerTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New(0, time.Minute, func() time.Time { return now })
	a, b := &fakeLister{ids: []string{"org/a"}}, &fakeLister{ids: []string{"org/b"}}
	ctx := context.Background()

	// Many migrations of two accounts, concurrently: one list each.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			acc, api, want := "A", a, "org/a"
			if i%2 == 1 {
				acc, api, want = "B", b, "org/b"
			}
			if ok, err := c.Has(ctx, acc, api, want); err != nil || !ok {
				t.Errorf("Has(%s, %s) = %v, %v", acc, want, ok, err)
			}
			if ok, _ := c.Has(ctx, acc, api, "org/other"); ok {
				t.Errorf("Has(%s, org/other) = true", acc)
			}
		})
	}
	wg.Wait()
	if a.calls.Load() != 1 || b.calls.Load() != 1 {
		t.Fatalf("list calls A=%d B=%d, want 1 each", a.calls.Load(), b.calls.Load())
	}
	// One account's list never answers for another.
	if ok, _ := c.Has(ctx, "A", a, "org/b"); ok {
		t.Error("account A's answer came from account B's list")
	}

	// After the TTL the list is read again: a model added meanwhile is seen.
	a.ids = append(a.ids, "org/new")
	now = now.Add(time.Minute)
	if ok, err := c.Has(ctx, "A", a, "org/new"); err != nil || !ok {
		t.Errorf("after the TTL: Has(org/new) = %v, %v", ok, err)
	}
	if a.calls.Load() != 2 {
		t.Errorf("list calls after the TTL = %d, want 2", a.calls.Load())
	}
}

func TestFailedListIsNotRemembered(t *testing.T) {
	c := New(0, time.Minute, nil)
	f := &fakeLister{err: errors.New("boom")}
	if _, err := c.Has(context.Background(), "A", f, "org/a"); err == nil {
		t.Fatal("a failed list must be an error, not a miss")
	}
	f.err, f.ids = nil, []string{"org/a"}
	if ok, err := c.Has(context.Background(), "A", f, "org/a"); err != nil || !ok {
		t.Errorf("after the failure cleared: %v, %v", ok, err)
	}
}

func TestBoundedAccounts(t *testing.T) {
	c := New(4, time.Hour, nil)
	f := &fakeLister{ids: []string{"org/a"}}
	for i := range 100 {
		if _, err := c.Has(context.Background(), fmt.Sprint(i), f, "org/a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.m.Len(); n > 4 {
		t.Errorf("cache holds %d accounts, bound is 4", n)
	}
}
