package webhook

import (
	"math"
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
