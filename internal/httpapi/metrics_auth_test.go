package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsNeedACredential: /metrics is for an admin or a key with the
// metrics scope, which can read nothing else; in open mode it is open.
func TestMetricsNeedACredential(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	_, scraper := h.createKey(`{"scope":"metrics","name":"prometheus"}`)
	_, reader := h.createKey(`{"scope":"read"}`)
	for _, tc := range []struct {
		name, cred, path string
		want             int
	}{
		{"no credential", "", "/metrics", http.StatusUnauthorized},
		{"read key", reader, "/metrics", http.StatusForbidden},
		{"metrics key", scraper, "/metrics", http.StatusOK},
		{"admin", testAdminToken, "/metrics", http.StatusOK},
		{"metrics key elsewhere", scraper, "/api/v1/meters", http.StatusForbidden},
		{"metrics key on the portal", scraper, "/api/v1/portal/usage", http.StatusForbidden},
	} {
		r := h.call(tc.cred, "GET", tc.path, "")
		if r.status != tc.want {
			t.Errorf("%s: GET %s = %s, want %d", tc.name, tc.path, r, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(r.body, "tally_http_request_duration_seconds") {
			t.Errorf("%s: not the metrics: %.200s", tc.name, r.body)
		}
	}
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR"}`, http.StatusCreated, nil)
	r := h.call(testAdminToken, "POST", "/api/v1/keys", `{"scope":"metrics","customer":"contoso"}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "scope: an admin or metrics key can't be bound") {
		t.Errorf("a customer-bound metrics key: %s; want 400 naming scope", r)
	}

	open := newAuthHarness(t, authOptions{open: true})
	if r := open.call("", "GET", "/metrics", ""); r.status != http.StatusOK {
		t.Errorf("open mode: GET /metrics = %s, want 200", r)
	}
}
