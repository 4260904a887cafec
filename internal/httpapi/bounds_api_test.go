package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// boundsProblem is a 400 answer's body, as far as these tests read it.
type boundsProblem struct {
	Detail   string   `json:"detail"`
	Errors   []string `json:"errors"`
	Problems []struct {
		Index   int    `json:"index"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"problems"`
}

// expectBad requires a 400 whose body mentions every one of want.
func expectBad(t *testing.T, r apiResp, what string, want ...string) {
	t.Helper()
	if r.Status != http.StatusBadRequest {
		t.Fatalf("%s: got %s, want 400", what, r)
	}
	for _, w := range want {
		if !strings.Contains(string(r.Body), w) {
			t.Errorf("%s: body %s does not mention %q", what, r.Body, w)
		}
	}
}

// TestTimeBounds: a time outside years 0001–9999 in UTC is a 400 wherever
// it enters, rather than accepted and then making reads answer an empty
// 200 or a 500.
func TestTimeBounds(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"request","aggregation":"COUNT"}`)

	t.Run("event time", func(t *testing.T) {
		body := `[` + testEvent("ok-1", "cust-1", "2026-04-01T10:00:00Z") + `,` + testEvent("late", "cust-1", "9999-12-31T23:59:59-23:59") + `]`
		r := h.do("POST", "/api/v1/events", "application/cloudevents-batch+json", body)
		expectBad(t, r, "event in year 10000")
		var p boundsProblem
		if err := json.Unmarshal(r.Body, &p); err != nil || len(p.Problems) != 1 || p.Problems[0].Index != 1 || p.Problems[0].Field != "time" ||
			!strings.Contains(p.Problems[0].Message, `"9999-12-31T23:59:59-23:59" is out of range: it falls in year 10000 in UTC`) {
			t.Errorf("problems = %+v (%v), want event 1's time out of range", p.Problems, err)
		}
	})

	for _, q := range []string{"from=0000-01-01T00:00:00%2B23:59", "to=9999-12-31T23:59:59-23:59", "from=2026-01-01T00:00:00%2B24:00"} {
		t.Run("query "+q, func(t *testing.T) {
			name, _, _ := strings.Cut(q, "=")
			expectBad(t, h.do("GET", "/api/v1/meters/calls/query?"+q, "", ""), "meter query", name+": ")
			expectBad(t, h.do("GET", "/api/v1/events?"+q, "", ""), "event list")
			expectBad(t, h.do("GET", "/api/v1/audit?"+q, "", ""), "audit list")
			expectBad(t, h.do("GET", "/api/v1/reports?"+q, "", ""), "report list")
		})
	}
	t.Run("query body", func(t *testing.T) {
		expectBad(t, h.do("POST", "/api/v1/meters/calls/query", "application/json", `{"from":"0000-01-01T00:00:00+23:59"}`),
			"meter query body", "from: 0000-01-01T00:00:00+23:59 is out of range: it falls in year -1 in UTC")
	})

	t.Run("key expiresAt", func(t *testing.T) {
		for _, at := range []string{"9999-12-31T23:59:59-23:59", "10000-01-01T00:00:00Z"} {
			r := h.do("POST", "/api/v1/keys", "application/json", `{"scope":"read","expiresAt":"`+at+`"}`)
			if at == "10000-01-01T00:00:00Z" {
				// encoding/json refuses a five-digit year itself.
				expectBad(t, r, "key expiring "+at)
				continue
			}
			expectBad(t, r, "key expiring "+at, "expiresAt: 9999-12-31T23:59:59-23:59 is out of range")
		}
		h.expect(h.do("GET", "/api/v1/keys", "", ""), http.StatusOK, "list keys")
	})

	t.Run("meter eventFrom", func(t *testing.T) {
		expectBad(t, h.do("POST", "/api/v1/meters", "application/json",
			`{"slug":"late","eventType":"request","aggregation":"COUNT","eventFrom":"9999-12-31T23:59:59-23:59"}`),
			"meter with eventFrom in year 10000", "eventFrom: 9999-12-31T23:59:59-23:59 is out of range")
		h.expect(h.do("GET", "/api/v1/meters", "", ""), http.StatusOK, "list meters")
	})
}

// TestQueryLastMinuteOfTime: one event dated 9999-12-31T23:59:59Z once made
// every query of its meter without "to" answer an empty 200, because the
// window holding it ends in year 10000.
func TestQueryLastMinuteOfTime(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"request","aggregation":"COUNT"}`)
	h.ingest("application/cloudevents-batch+json", `[`+testEvent("now", "cust-1", "2026-04-01T10:00:00Z")+`,`+testEvent("last", "cust-1", "9999-12-31T23:59:59Z")+`]`)
	for _, q := range []url.Values{
		nil,
		{"windowSize": {"DAY"}},
		{"windowSize": {"MONTH"}, "windowTimeZone": {"Pacific/Kiritimati"}},
		{"groupBy": {"subject"}, "windowTimeZone": {"Pacific/Kiritimati"}},
	} {
		res := h.query("calls", q)
		total := 0
		for _, row := range res.Data {
			n, err := row.Value.Int64()
			if err != nil {
				t.Fatalf("query %s: value %s", q.Encode(), row.Value)
			}
			total += int(n)
		}
		if total != 2 {
			t.Errorf("query %s: %+v, want the 2 events counted", q.Encode(), res.Data)
		}
	}
	r := h.do("GET", "/api/v1/meters/calls/query?windowSize=MINUTE", "", "", "Accept", "text/csv")
	h.expect(r, http.StatusOK, "CSV query")
	if !strings.Contains(string(r.Body), "9999-12-31T23:59:00Z,9999-12-31T23:59:59Z,1") {
		t.Errorf("CSV query: %s, want the last minute's row", r.Body)
	}
	if evs := h.events("subject=cust-1"); len(evs) != 2 {
		t.Errorf("event list: %d events, want 2", len(evs))
	}
}

// TestSubjectSyntax: a subject with a control character ("\u0000" once
// collided with an internal marker) is a 400 at every entry point.
func TestSubjectSyntax(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"request","aggregation":"COUNT"}`)

	r := h.do("POST", "/api/v1/events", "application/cloudevents+json", testEvent("nul", `\u0000`, "2026-04-01T10:00:00Z"))
	expectBad(t, r, "event with subject NUL", `"field":"subject"`, `control character U+0000`)

	expectBad(t, h.do("POST", "/api/v1/customers", "application/json", `{"key":"c1","name":"C1","currency":"EUR","subjects":["ok","\u0000"]}`),
		"customer with subject NUL", `subjects[1]: \"\\x00\" holds the control character U+0000`)
	expectBad(t, h.do("POST", "/api/v1/customers", "application/json", `{"key":"c1","name":"C1","currency":"EUR","subjects":["a\u202eb"]}`),
		"customer with a bidi override", "U+202E")
	h.expect(h.do("POST", "/api/v1/customers", "application/json", `{"key":"c1","name":"C1","currency":"EUR","subjects":["a b"]}`),
		http.StatusCreated, "customer with a valid subject")

	expectBad(t, h.do("POST", "/api/v1/keys", "application/json", `{"scope":"read","subject":"a\nb"}`),
		"key bound to subject a\\nb", "subject: ", "U+000A")
	expectBad(t, h.do("POST", "/api/v1/subjects", "application/json", `[{"key":"ok"},{"key":"\u0000"}]`),
		"subject key NUL", "[1].key: ", "U+0000")
	expectBad(t, h.do("GET", "/api/v1/meters/calls/query?subject=a&subject=%00", "", ""), "query for subject NUL", "subject[1]: ", "U+0000")
	expectBad(t, h.do("POST", "/api/v1/meters/calls/query", "application/json", `{"subject":["a\u0085"]}`), "query body for a C1 subject", "subject: ", "U+0085")
	expectBad(t, h.do("GET", "/api/v1/events?subject=a%0Ab", "", ""), "events of subject a\\nb", "subject: ", "U+000A")
}

// TestPortalTokenSubjectSyntax: a portal token can't be bound to a subject
// outside the subject syntax.
func TestPortalTokenSubjectSyntax(t *testing.T) {
	w := setupWorld(t)
	r := w.h.call(testAdminToken, "POST", "/api/v1/portal/tokens", `{"subject":"contoso-eu-1\u0000"}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "U+0000") {
		t.Errorf("portal token for a subject with NUL: %s, want 400 naming U+0000", r)
	}
}

// testEvent is one CloudEvent of type request; subject is put in the JSON
// string as it is (so it may hold escapes).
func testEvent(id, subject, at string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"test","type":"request","subject":"` + subject + `","time":"` + at + `"}`
}

// TestOIDCSubSyntax: an OIDC token whose sub claim fails the subject
// syntax is not authenticated.
func TestOIDCSubSyntax(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	h.must("POST", "/api/v1/meters", `{"slug":"emails","eventType":"email","aggregation":"COUNT"}`, http.StatusCreated, nil)
	now := h.clock.Now()
	claims := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "user\x00admin",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "scope": "openid tally:read"}
	r := h.call(signJWT(t, rsaKeys()[0], "k1", claims), "GET", "/api/v1/meters", "")
	if r.status != http.StatusUnauthorized {
		t.Errorf("token with sub \"user\\x00admin\": %s, want 401", r)
	}
}

// TestTimeInBodyBeyondYear9999: a time encoding/json can't read (a
// five-digit year) is a 400 naming the member, not the parser's words.
func TestTimeInBodyBeyondYear9999(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	r := h.do("POST", "/api/v1/keys", "application/json", `{"scope":"read","expiresAt":"10000-01-01T00:00:00Z"}`)
	expectBad(t, r, "key expiring in year 10000", `expiresAt: \"10000-01-01T00:00:00Z\" is not an RFC 3339 time in years 0001–9999`)
}
