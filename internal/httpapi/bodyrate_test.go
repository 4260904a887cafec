package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/httpapi"
)

// A body that keeps up with the minimum rate on average may pause past
// the grace period: each byte received buys time.
func TestBodyAtTheMinimumRateIsNotCut(t *testing.T) {
	h := newAuthHarness(t, authOptions{configure: func(c *httpapi.Config) {
		c.MinBodyRate = 1024
		c.MinBodyRateGrace = 500 * time.Millisecond
	}})
	twoCustomers(h)
	u, _ := url.Parse(h.srv.URL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 2 KiB of leading white space earn 2 s: the pause of 1 s, past the
	// grace, is within them.
	lead := strings.Repeat(" ", 2048)
	ev := eventBody("steady-1", "fab-1")
	fmt.Fprintf(c, "POST /api/v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, testAdminToken, cloudEvents, len(lead)+len(ev), lead)
	time.Sleep(time.Second)
	if _, err := io.WriteString(c, ev); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("a body sent at the minimum rate on average: got %d, want 204", resp.StatusCode)
	}
}

// Every route that reads a body cuts off one that is overdue, JSON
// documents as events.
func TestSlowJSONBodyIsCut(t *testing.T) {
	const grace = 300 * time.Millisecond
	h := newAuthHarness(t, authOptions{configure: func(c *httpapi.Config) {
		c.MinBodyRate = 1024
		c.MinBodyRateGrace = grace
	}})
	for _, path := range []string{"/api/v1/customers", "/api/v1/meters", "/api/v1/plans"} {
		s := openSlow(t, h, testAdminToken, "POST", path, "application/json")
		resp, body := s.answer(t, 10*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "--min-body-rate") {
			t.Errorf("POST %s with a slow body: got %d %s, want 408 problem naming --min-body-rate", path, resp.StatusCode, body)
		}
		if took := time.Since(s.sent); took < grace {
			t.Errorf("POST %s: cut off after %v, before the grace of %v", path, took, grace)
		}
	}
}
