package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestProblemDetailsAreNotHTMLEscaped: a 401 tells the client to send
// "Authorization: Bearer <token>", written as such, not as \u003ctoken\u003e.
func TestProblemDetailsAreNotHTMLEscaped(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "s3cret-admin-token"})
	req, err := http.NewRequest("GET", h.srv.URL+"/api/v1/meters", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b.String(), "Authorization: Bearer <token>") || strings.Contains(b.String(), `\u003c`) {
		t.Errorf("no credential: %d %s, want 401 naming Authorization: Bearer <token> unescaped", resp.StatusCode, b.String())
	}
}
