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

package togethersim

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RouteFault makes matching requests fail or slow down.
type RouteFault struct {
	// Status, if non-zero, is answered instead of serving the request, in
	// the route's real error shape.
	Status int
	// RetryAfter is sent as Retry-After (whole seconds, rounded up).
	RetryAfter time.Duration
	// Times is how many requests the fault hits; zero means every one.
	Times int
	// Delay is waited before answering (or serving, if Status is zero).
	Delay time.Duration
}

type routeFault struct {
	method, prefix string
	RouteFault
	used int
}

// Faults holds the fault-injection knobs. Delivery faults are decided by a
// seeded generator so a test sees the same drops and duplicates every run.
type Faults struct {
	mu        sync.Mutex
	routes    []*routeFault
	rejectKey bool
	rng       *rand.Rand

	// DropRate is the chance (0..1) that a delivery is never sent.
	dropRate float64
	// DuplicateRate is the chance (0..1) that a delivery is sent twice.
	dupRate float64
	// ReorderWindow holds up to this many deliveries and sends them shuffled.
	reorder int
	// Delay is waited before each delivery.
	delay time.Duration
}

func newFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0xfa17))}
}

// SetRoute makes requests whose method matches (empty matches any) and whose
// path starts with pathPrefix (e.g. "/v1/fine-tunes") hit f.
func (f *Faults) SetRoute(method, pathPrefix string, rf RouteFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = append(f.routes, &routeFault{method: method, prefix: pathPrefix, RouteFault: rf})
}

// ClearRoutes removes every route fault.
func (f *Faults) ClearRoutes() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = nil
}

// RejectKey makes every request answer 401, as after a key is revoked.
func (f *Faults) RejectKey(reject bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejectKey = reject
}

// SetDelivery sets the delivery knobs: drop and duplicate chances, reorder
// window and a fixed delay before each send.
func (f *Faults) SetDelivery(dropRate, duplicateRate float64, reorderWindow int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropRate, f.dupRate, f.reorder, f.delay = dropRate, duplicateRate, reorderWindow, delay
}

func (f *Faults) keyRejected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejectKey
}

// take returns the first live fault matching the request and counts it.
func (f *Faults) take(method, path string) (RouteFault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rf := range f.routes {
		if (rf.method != "" && rf.method != method) || !strings.HasPrefix(path, rf.prefix) {
			continue
		}
		if rf.Times > 0 && rf.used >= rf.Times {
			continue
		}
		rf.used++
		return rf.RouteFault, true
	}
	return RouteFault{}, false
}

// apply waits and/or answers the fault; it reports whether the request
// should still be served.
func (rf RouteFault) apply(w http.ResponseWriter, r *http.Request) bool {
	if rf.Delay > 0 {
		select {
		case <-time.After(rf.Delay):
		case <-r.Context().Done():
			return false
		}
	}
	if rf.Status == 0 {
		return true
	}
	if rf.RetryAfter > 0 {
		secs := int((rf.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	writeError(w, r, rf.Status, "injected_fault", http.StatusText(rf.Status)+" (injected by the simulator)")
	return false
}

// deliveryPlan decides, for one delivery, whether to drop it and how many
// copies to send.
func (f *Faults) deliveryPlan() (copies int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropRate > 0 && f.rng.Float64() < f.dropRate {
		return 0, f.delay
	}
	copies = 1
	if f.dupRate > 0 && f.rng.Float64() < f.dupRate {
		copies = 2
	}
	return copies, f.delay
}

func (f *Faults) reorderWindow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reorder
}

func (f *Faults) shuffle(n int, swap func(i, j int)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rng.Shuffle(n, swap)
}
