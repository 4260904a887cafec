package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestAuthFailuresPerAddress(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	a := newAuthFailures(3, time.Minute)
	x, y := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	for i := range 3 {
		if _, blocked := a.blocked(x, t0); blocked {
			t.Fatalf("blocked after %d failures of 3", i)
		}
		a.fail(x, t0)
	}
	d, blocked := a.blocked(x, t0)
	if !blocked || d != 20*time.Second {
		t.Errorf("after 3 failures: blocked %v for %v; want blocked for 20s (one failure refills every minute/3)", blocked, d)
	}
	if _, blocked := a.blocked(y, t0); blocked {
		t.Error("another address is blocked by x's failures")
	}
	if _, blocked := a.blocked(x, t0.Add(20*time.Second)); blocked {
		t.Error("still blocked once a failure refilled")
	}
	a.fail(x, t0.Add(20*time.Second))
	if _, blocked := a.blocked(x, t0.Add(20*time.Second)); !blocked {
		t.Error("the refilled failure was not taken")
	}
	// An address idle for a window is forgotten (its bucket is full).
	a.fail(y, t0.Add(2*time.Minute))
	if n := a.tracked(); n != 1 {
		t.Errorf("tracked %d addresses after x went idle; want 1 (y)", n)
	}
	if _, blocked := a.blocked(x, t0.Add(2*time.Minute)); blocked {
		t.Error("x is blocked after a window without failures")
	}
	// Memory is bounded: past max, the least recent failure is forgotten.
	a.max = 2
	z := netip.MustParsePrefix("192.0.2.3/32")
	now := t0.Add(2*time.Minute + time.Second)
	a.fail(x, now)
	a.fail(z, now)
	if n := a.tracked(); n != 2 {
		t.Errorf("tracked %d addresses; want at most 2", n)
	}
	a.mu.Lock()
	_, yKept := a.byAddr[y]
	a.mu.Unlock()
	if yKept {
		t.Error("the least recently failing address was kept over the cap")
	}
	if newAuthFailures(-1, 0) != nil {
		t.Error("a negative limit is not off")
	}
}

func TestClientAddr(t *testing.T) {
	s := &Server{Config: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"peer", "192.0.2.7:5555", nil, "192.0.2.7/32"},
		{"untrusted peer's header is ignored", "192.0.2.7:5555", []string{"198.51.100.1"}, "192.0.2.7/32"},
		{"trusted proxy", "10.1.2.3:5555", []string{"198.51.100.1"}, "198.51.100.1/32"},
		{"a client's own entries are skipped", "10.1.2.3:5555", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1/32"},
		{"proxy chain", "10.1.2.3:5555", []string{"198.51.100.1", "10.9.9.9"}, "198.51.100.1/32"},
		{"garbage stops at the last trusted hop", "10.1.2.3:5555", []string{"nonsense, 10.9.9.9"}, "10.9.9.9/32"},
		{"trusted proxy without header", "10.1.2.3:5555", nil, "10.1.2.3/32"},
		{"ipv6 by /64", "[2001:db8:1:2:3:4:5:6]:5555", nil, "2001:db8:1:2::/64"},
		{"ipv4-mapped", "[::ffff:192.0.2.7]:5555", nil, "192.0.2.7/32"},
		{"ipv6 proxy", "[::1]:5555", []string{"2001:db8::9"}, "2001:db8::/64"},
	} {
		r := httptest.NewRequest("GET", "/api/v1/meters", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.clientAddr(r).String(); got != tc.want {
			t.Errorf("%s: clientAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}
