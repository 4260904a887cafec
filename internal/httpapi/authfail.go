package httpapi

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the limit on failed authentications per client address.
const (
	DefaultAuthFailureLimit  = 20 // failures per window per client address
	DefaultAuthFailureWindow = time.Minute
	// maxAuthFailureAddrs bounds the addresses tracked; past it the one
	// that failed least recently is forgotten.
	maxAuthFailureAddrs = 100_000
)

// authFailures limits the failed authentications of each client address:
// a token bucket of limit failures refilled over window. An address whose
// bucket is empty gets 429 before its credential is even checked, so
// guessing tokens (and making tally verify them) is slow. Only failures
// take from the bucket: an address that never fails is never tracked, and
// one address's failures don't touch another's.
type authFailures struct {
	rate   rate.Limit
	burst  int
	window time.Duration
	max    int

	mu     sync.Mutex
	byAddr map[netip.Prefix]*list.Element
	lru    *list.List // of *failEntry, most recent failure first
}

type failEntry struct {
	addr netip.Prefix
	lim  *rate.Limiter
	last time.Time
}

// newAuthFailures returns the limiter (nil: no limit).
func newAuthFailures(limit int, window time.Duration) *authFailures {
	if limit < 0 {
		return nil
	}
	if limit == 0 {
		limit = DefaultAuthFailureLimit
	}
	if window <= 0 {
		window = DefaultAuthFailureWindow
	}
	return &authFailures{
		rate: rate.Limit(float64(limit) / window.Seconds()), burst: limit, window: window, max: maxAuthFailureAddrs,
		byAddr: make(map[netip.Prefix]*list.Element), lru: list.New(),
	}
}

// blocked reports whether addr has no failure left, and when it will.
func (a *authFailures) blocked(addr netip.Prefix, now time.Time) (time.Duration, bool) {
	if a == nil {
		return 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	el := a.byAddr[addr]
	if el == nil {
		return 0, false
	}
	tokens := el.Value.(*failEntry).lim.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(a.rate) * float64(time.Second)), true
}

// fail takes one failure from addr's bucket.
func (a *authFailures) fail(addr netip.Prefix, now time.Time) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forgetIdle(now)
	el := a.byAddr[addr]
	if el == nil {
		for a.lru.Len() >= a.max {
			old := a.lru.Remove(a.lru.Back()).(*failEntry)
			delete(a.byAddr, old.addr)
		}
		el = a.lru.PushFront(&failEntry{addr: addr, lim: rate.NewLimiter(a.rate, a.burst)})
		a.byAddr[addr] = el
	} else {
		a.lru.MoveToFront(el)
	}
	e := el.Value.(*failEntry)
	e.last = now
	e.lim.AllowN(now, 1)
}

// forgetIdle drops the addresses whose last failure is a window old: their
// bucket is full again, the same as a new one.
func (a *authFailures) forgetIdle(now time.Time) {
	for el := a.lru.Back(); el != nil; el = a.lru.Back() {
		e := el.Value.(*failEntry)
		if now.Sub(e.last) < a.window {
			return
		}
		a.lru.Remove(el)
		delete(a.byAddr, e.addr)
	}
}

// tracked is how many addresses are tracked.
func (a *authFailures) tracked() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

// refuse answers 429 to a blocked address.
func (a *authFailures) refuse(w http.ResponseWriter, r *http.Request, d time.Duration) {
	secs := max(1, int(math.Ceil(d.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, Problem{Status: http.StatusTooManyRequests,
		Detail: "too many failed authentications from this address; retry after " + strconv.Itoa(secs) + "s with a valid credential"})
}

// clientAddr is the address a request's failed authentications count
// against: the peer's IP, or, when the peer is a trusted proxy, the
// nearest address in X-Forwarded-For that is not one (a client can prepend
// anything to the header, so it is read from the right). An IPv6 client
// counts by its /64, which one host usually has whole.
func (s *Server) clientAddr(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	if s.trusted(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			ip = hop.Unmap()
			if !s.trusted(ip) {
				break
			}
		}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
