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

package ttl

import (
	"testing"
	"time"
)

func TestMapStaysBounded(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	m := New[int, string](100, time.Minute)
	for i := range 1000 {
		m.Set(i, "v", t0, t0.Add(time.Second))
	}
	if n := m.Len(); n > 100 {
		t.Fatalf("%d entries, bound 100", n)
	}
	if _, ok := m.Get(999, t0); !ok {
		t.Fatal("the newest entry was dropped")
	}
	if _, ok := m.Get(999, t0.Add(time.Second)); ok {
		t.Fatal("an expired entry is still returned")
	}
	m.Set(-1, "v", t0.Add(2*time.Second), t0.Add(time.Hour))
	if n := m.Len(); n != 1 {
		t.Fatalf("%d entries after every other one expired, want 1", n)
	}
}

func TestGetOrSetAndTouch(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	m := New[string, int](10, time.Minute)
	if v, loaded := m.GetOrSet("k", t0, time.Second, func() int { return 1 }); loaded || v != 1 {
		t.Fatalf("first GetOrSet: %d %v", v, loaded)
	}
	if v, loaded := m.GetOrSet("k", t0, time.Second, func() int { return 2 }); !loaded || v != 1 {
		t.Fatalf("second GetOrSet: %d %v", v, loaded)
	}
	m.Touch("k", t0.Add(900*time.Millisecond), time.Second)
	if _, ok := m.Get("k", t0.Add(1500*time.Millisecond)); !ok {
		t.Fatal("a touched entry expired at its old time")
	}
}
