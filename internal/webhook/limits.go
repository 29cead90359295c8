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

package webhook

import (
	"math"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/together-operator/together-operator/internal/ttl"
)

// buckets holds one token bucket per key (a source address, a
// subscription). A bucket idle for longer than it takes to refill is
// forgotten: a new full bucket is the same thing.
type buckets struct {
	limit rate.Limit
	burst int
	idle  time.Duration
	m     *ttl.Map[string, *rate.Limiter]
}

func newBuckets(perSecond float64, burst, maxKeys int) *buckets {
	if perSecond <= 0 {
		return nil
	}
	idle := time.Duration(float64(burst)/perSecond*float64(time.Second)) + time.Second
	return &buckets{limit: rate.Limit(perSecond), burst: burst, idle: idle, m: ttl.New[string, *rate.Limiter](maxKeys, idle)}
}

// allow takes a token from key's bucket. When it is empty, it returns false
// and how long until a token is back (a Retry-After).
func (b *buckets) allow(key string, now time.Time) (bool, time.Duration) {
	if b == nil {
		return true, 0
	}
	l, _ := b.m.GetOrSet(key, now, b.idle, func() *rate.Limiter { return rate.NewLimiter(b.limit, b.burst) })
	b.m.Touch(key, now, b.idle)
	if l.AllowN(now, 1) {
		return true, 0
	}
	r := l.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// byteBudget bounds the bytes of request bodies held at once across every
// request of the process. A request reserves what it may read before it
// reads anything, and gives it back once the body is verified and decoded.
type byteBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
}

func (b *byteBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// connLimits bounds the connections the endpoint holds: at most max at once
// (further ones wait in the kernel's accept queue), and at most perSource
// from one address (further ones are closed at once). Each connection costs
// a goroutine and its buffers whatever its requests do, so this, with the
// server's timeouts, is what bounds the memory a flood of connections takes.
type connLimits struct {
	net.Listener
	slots     chan struct{}
	perSource int

	mu      sync.Mutex
	sources map[string]int
}

func limitConns(l net.Listener, max, perSource int) net.Listener {
	if max <= 0 {
		return l
	}
	return &connLimits{Listener: l, slots: make(chan struct{}, max), perSource: perSource, sources: map[string]int{}}
}

func (l *connLimits) Accept() (net.Conn, error) {
	for {
		l.slots <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		src := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(src); err == nil {
			src = host
		}
		l.mu.Lock()
		if l.perSource > 0 && l.sources[src] >= l.perSource {
			l.mu.Unlock()
			connsRefused.Inc()
			_ = c.Close()
			<-l.slots
			continue
		}
		l.sources[src]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimits
	src  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.sources[c.src]--; c.l.sources[c.src] <= 0 {
			delete(c.l.sources, c.src)
		}
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
