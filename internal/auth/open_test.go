package auth

import (
	"errors"
	"net/http/httptest"
	"testing"
)

// TestOpenModeOnlyForThisMachine: open mode makes every request without
// credentials an admin, so a web page in a browser on the same machine
// must not become one. It can rebind its own domain name to 127.0.0.1
// (the request then names its host, not a loopback one) or send a
// cross-origin write it can't read the answer of, but that still acts.
func TestOpenModeOnlyForThisMachine(t *testing.T) {
	c := &Chain{OpenLoopbackOnly: true}
	c.SetOpen(true)
	for _, tc := range []struct {
		name, method, host string
		header             map[string]string
		ok                 bool
	}{
		{"curl to 127.0.0.1", "POST", "127.0.0.1:8080", nil, true},
		{"curl to localhost", "GET", "localhost:8080", nil, true},
		{"curl to ::1", "DELETE", "[::1]:8080", nil, true},
		{"same-origin page", "POST", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}, true},
		{"rebound name", "GET", "evil.example:8080", nil, false},
		{"rebound name, no port", "GET", "attacker.test", nil, false},
		{"cross-site write", "POST", "127.0.0.1:8080", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, false},
		{"cross-origin write, old browser", "POST", "localhost:8080", map[string]string{"Origin": "https://evil.example"}, false},
	} {
		r := httptest.NewRequest(tc.method, "/api/v1/keys", nil)
		r.Host = tc.host
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		p, err := c.Authenticate(r)
		if tc.ok && (err != nil || p.Kind != KindAnonymous) {
			t.Errorf("%s: %+v, %v; want the anonymous admin", tc.name, p, err)
		}
		var fe *ForbiddenError
		if !tc.ok && !errors.As(err, &fe) {
			t.Errorf("%s: %+v, %v; want a ForbiddenError", tc.name, p, err)
		}
	}
	// With --insecure-no-auth on a public address any host is fine, but a
	// browser's cross-origin write is still refused.
	c = &Chain{}
	c.SetOpen(true)
	r := httptest.NewRequest("GET", "/api/v1/meters", nil)
	r.Host = "tally.internal:8080"
	if _, err := c.Authenticate(r); err != nil {
		t.Errorf("insecure open mode, any host: %v", err)
	}
	r = httptest.NewRequest("POST", "/api/v1/keys", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if _, err := c.Authenticate(r); err == nil {
		t.Errorf("insecure open mode, cross-site write: accepted")
	}
}
