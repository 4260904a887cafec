package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tally-metering/tally/internal/auth"
)

// Defaults of the per-credential rate limit and the concurrency caps.
const (
	DefaultRateLimit     = 100 // requests per second per credential
	DefaultRateBurst     = 200
	DefaultMaxConcurrent = 512
	// DefaultMaxConcurrentPerCredential and DefaultMaxConcurrentPerAddress
	// are well below DefaultMaxConcurrent, so that one credential holds a
	// sixteenth of the slots at most and one client address an eighth,
	// however slowly its requests arrive.
	DefaultMaxConcurrentPerCredential = 32
	DefaultMaxConcurrentPerAddress    = 64
)

// limits holds the request limits: a token bucket per credential, a cap
// on requests in flight, and caps on the requests in flight of one
// credential and of one client address.
type limits struct {
	limit rate.Limit
	burst int
	sem   chan struct{}
	// tenantMax is how many of sem's slots authenticated requests of
	// credentials other than admin ones may hold (0: all of them); the
	// rest are kept for the operator, who must get in while clients fill
	// the server.
	tenantMax int
	// perCred and perAddr cap one credential's and one client address's
	// requests in flight (0: no cap).
	perCred, perAddr int

	inFlight sync.Mutex
	tenants  int
	byCred   map[string]int
	byAddr   map[netip.Prefix]int

	mu       sync.Mutex
	buckets  map[string]*bucket
	lastSwep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimits(cfg Config) *limits {
	l := &limits{buckets: make(map[string]*bucket), byCred: make(map[string]int), byAddr: make(map[netip.Prefix]int)}
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
		l.tenantMax = n - adminReserve(n)
	}
	l.perCred = capOr(cfg.MaxConcurrentPerCredential, DefaultMaxConcurrentPerCredential)
	l.perAddr = capOr(cfg.MaxConcurrentPerAddress, DefaultMaxConcurrentPerAddress)
	return l
}

// adminReserve is the share of n slots kept for admin credentials: an
// eighth, at least one when there are two slots or more.
func adminReserve(n int) int {
	if n < 2 {
		return 0
	}
	return max(1, n/8)
}

// capOr resolves a configured cap: 0 is def, negative no cap (0).
func capOr(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// allow admits an authenticated caller: it takes a slot of the caller's
// credential and of the clients' share of the concurrency cap (held until
// limitConcurrency, outside, is done with the request) and a token from
// the caller's bucket; otherwise it answers 429 or 503 with Retry-After.
// The admin token and open mode have neither bucket nor per-credential
// cap, and admin credentials may use the share kept for them: they are
// the operator, who must be able to act while clients are throttled.
func (l *limits) allow(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	if held, ok := r.Context().Value(slotsKey{}).(*slots); ok && !l.enterCredential(w, r, p, held) {
		return false
	}
	if l.limit == rate.Inf || operator(p) {
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

// operator reports whether p is the admin token or open mode's caller,
// which have no rate limit and no per-credential cap.
func operator(p auth.Principal) bool {
	return p.Kind == auth.KindAdminToken || p.Kind == auth.KindAnonymous
}

// slots are what one request holds of the caps on requests in flight
// besides the global one. limitConcurrency takes the address slot before
// authentication and releases them all when the request is done; allow
// adds the credential's slot and the clients' share once the caller is
// known.
type slots struct {
	addr    netip.Prefix
	hasAddr bool
	cred    string // "" none
	tenant  bool
}

type slotsKey struct{}

// limitConcurrency answers 503 with Retry-After while the cap of requests
// in flight is reached, rather than queueing work tally can't keep up with,
// and 429 while the client address has its cap of requests in flight, so
// that one client, authenticated or not, can't take every slot. A slot is
// held until the handler returns, body read and all (see minBodyRate for
// how long a slow body may take).
func (s *Server) limitConcurrency(next http.Handler) http.Handler {
	l := s.limits
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.sem != nil {
			select {
			case l.sem <- struct{}{}:
				defer func() { <-l.sem }()
			default:
				w.Header().Set("Retry-After", "1")
				writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable,
					Detail: "tally is serving as many requests as it is configured to (--max-concurrent-requests); retry shortly"})
				return
			}
		}
		held := &slots{}
		defer l.release(held)
		if !l.enterAddress(w, r, s.clientAddr(r), held) {
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), slotsKey{}, held)))
	})
}

// enterAddress takes a slot of the client address or answers 429.
func (l *limits) enterAddress(w http.ResponseWriter, r *http.Request, addr netip.Prefix, held *slots) bool {
	if l.perAddr == 0 || !addr.IsValid() {
		return true
	}
	l.inFlight.Lock()
	n := l.byAddr[addr]
	if n < l.perAddr {
		l.byAddr[addr] = n + 1
		held.addr, held.hasAddr = addr, true
	}
	l.inFlight.Unlock()
	if held.hasAddr {
		return true
	}
	tooManyInFlight(w, r, fmt.Sprintf("this client address has %d requests in flight, the most one address may have (--max-concurrent-per-address); retry when one of them is done", l.perAddr))
	return false
}

// enterCredential takes a slot of p's credential and, unless p is an
// admin credential, of the clients' share of the concurrency cap, or
// answers 429 or 503.
func (l *limits) enterCredential(w http.ResponseWriter, r *http.Request, p auth.Principal, held *slots) bool {
	capped := l.perCred > 0 && !operator(p) && held.cred == ""
	tenant := l.tenantMax > 0 && !(p.Can(auth.ScopeAdmin) && !p.Bound()) && !held.tenant
	l.inFlight.Lock()
	credFull := capped && l.byCred[p.ID] >= l.perCred
	tenantsFull := tenant && l.tenants >= l.tenantMax
	if !credFull && !tenantsFull {
		if capped {
			l.byCred[p.ID]++
			held.cred = p.ID
		}
		if tenant {
			l.tenants++
			held.tenant = true
		}
	}
	l.inFlight.Unlock()
	switch {
	case credFull:
		tooManyInFlight(w, r, fmt.Sprintf("this credential has %d requests in flight, the most one credential may have (--max-concurrent-per-credential); retry when one of them is done", l.perCred))
		return false
	case tenantsFull:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable,
			Detail: fmt.Sprintf("tally is serving as many client requests as it is configured to (%d: --max-concurrent-requests less the share kept for admin credentials); retry shortly", l.tenantMax)})
		return false
	}
	return true
}

// release gives back the slots a request held.
func (l *limits) release(held *slots) {
	l.inFlight.Lock()
	defer l.inFlight.Unlock()
	if held.hasAddr {
		if l.byAddr[held.addr]--; l.byAddr[held.addr] <= 0 {
			delete(l.byAddr, held.addr)
		}
	}
	if held.cred != "" {
		if l.byCred[held.cred]--; l.byCred[held.cred] <= 0 {
			delete(l.byCred, held.cred)
		}
	}
	if held.tenant {
		l.tenants--
	}
	*held = slots{}
}

// tooManyInFlight answers 429: a slot is back as soon as one of the
// caller's requests is done.
func tooManyInFlight(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, Problem{Status: http.StatusTooManyRequests, Detail: detail})
}
