package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tally-metering/tally/internal/auth"
)

// Defaults of the per-credential rate limit and the concurrency cap.
const (
	DefaultRateLimit     = 100 // requests per second per credential
	DefaultRateBurst     = 200
	DefaultMaxConcurrent = 512
)

// limits holds the request limits: a token bucket per credential and a
// cap on requests in flight.
type limits struct {
	limit rate.Limit
	burst int
	sem   chan struct{}

	mu       sync.Mutex
	buckets  map[string]*bucket
	lastSwep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimits(cfg Config) *limits {
	l := &limits{buckets: make(map[string]*bucket)}
	switch {
	case cfg.RateLimit < 0:
		l.limit = rate.Inf
	case cfg.RateLimit == 0:
		l.limit = DefaultRateLimit
	default:
		l.limit = rate.Limit(cfg.RateLimit)
	}
	l.burst = cfg.RateBurst
	if l.burst <= 0 {
		l.burst = max(DefaultRateBurst, int(math.Ceil(float64(l.limit))))
		if l.limit == rate.Inf {
			l.burst = 1
		}
	}
	n := cfg.MaxConcurrent
	if n == 0 {
		n = DefaultMaxConcurrent
	}
	if n > 0 {
		l.sem = make(chan struct{}, n)
	}
	return l
}

// allow takes a token from the caller's bucket or answers 429 with
// Retry-After. The admin token and open mode are not limited: they are the
// operator, who must be able to act while clients are throttled.
func (l *limits) allow(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	if l.limit == rate.Inf || p.Kind == auth.KindAdminToken || p.Kind == auth.KindAnonymous {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	b := l.buckets[p.ID]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[p.ID] = b
	}
	b.used = now
	l.sweep(now)
	l.mu.Unlock()
	res := b.lim.ReserveN(now, 1)
	d := res.DelayFrom(now)
	if res.OK() && d == 0 {
		return true
	}
	res.CancelAt(now)
	secs := int(math.Ceil(d.Seconds()))
	if !res.OK() || secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, Problem{Status: http.StatusTooManyRequests,
		Detail: "too many requests for this credential; retry after " + strconv.Itoa(secs) + "s"})
	return false
}

// sweep drops buckets unused for ten minutes (a full bucket is the same as
// a new one), so that many short-lived tokens don't grow the map forever.
func (l *limits) sweep(now time.Time) {
	if now.Sub(l.lastSwep) < time.Minute {
		return
	}
	l.lastSwep = now
	for id, b := range l.buckets {
		if now.Sub(b.used) > 10*time.Minute {
			delete(l.buckets, id)
		}
	}
}

// limitConcurrency answers 503 with Retry-After while the cap of requests
// in flight is reached, rather than queueing work tally can't keep up with.
func (s *Server) limitConcurrency(next http.Handler) http.Handler {
	if s.limits.sem == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.limits.sem <- struct{}{}:
			defer func() { <-s.limits.sem }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable,
				Detail: "tally is serving as many requests as it is configured to (--max-concurrent-requests); retry shortly"})
		}
	})
}
