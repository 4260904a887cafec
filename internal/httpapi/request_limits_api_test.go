package httpapi_test

// Requests outside the API's bounds get the same kind of answer everywhere:
// 413 for a body over the limit, 415 for a body that is not JSON, 400 for
// text that is not UTF-8, and problem+json for every one.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// meterJSON is a valid meter definition with the given description.
func meterJSON(slug, description string) string {
	return `{"slug":"` + slug + `","eventType":"call","aggregation":"COUNT","description":"` + description + `"}`
}

func TestAPIJSONBodyOverLimit(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"calls","eventType":"call","aggregation":"COUNT"}`)
	big := meterJSON("big", strings.Repeat("x", 2<<20))
	// Every route that reads a JSON body, with a path whose handler gets
	// as far as reading it.
	for _, rt := range [][2]string{
		{"POST", "/api/v1/meters"},
		{"PUT", "/api/v1/meters/calls"},
		{"POST", "/api/v1/meters/calls/query"},
		{"POST", "/api/v1/subjects"},
		{"POST", "/api/v1/customers"},
		{"PUT", "/api/v1/customers/acme"},
		{"POST", "/api/v1/customers/acme/users"},
		{"POST", "/api/v1/plans"},
		{"PUT", "/api/v1/plans/basic"},
		{"POST", "/api/v1/subscriptions"},
		{"POST", "/api/v1/subscriptions/s1/cancel"},
		{"POST", "/api/v1/subscriptions/s1/change"},
		{"POST", "/api/v1/keys"},
	} {
		t.Run(rt[0]+" "+rt[1], func(t *testing.T) {
			p := problemOf(t, h.do(rt[0], rt[1], "application/json", big), http.StatusRequestEntityTooLarge)
			if !strings.Contains(p.Detail, "1048576") {
				t.Errorf("413 detail %q does not give the limit", p.Detail)
			}
		})
	}
	t.Run("chunked", func(t *testing.T) {
		r := h.request("POST", "/api/v1/meters", "application/json", chunkedReader{strings.NewReader(big)})
		p := problemOf(t, r, http.StatusRequestEntityTooLarge)
		if !strings.Contains(p.Detail, "1048576") {
			t.Errorf("413 detail %q does not give the limit", p.Detail)
		}
	})
	t.Run("declared length refused before reading", func(t *testing.T) {
		// The body is never sent: an answer proves tally did not wait for it.
		conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /api/v1/meters HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer secret\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", 2<<20)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer before the body was sent: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("got %d %s, want 413 application/problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	h.expect(h.do("GET", "/api/v1/meters/big", "", ""), http.StatusNotFound, "meter of a refused request")
	// Just under the limit is fine.
	pad := strings.Repeat("x", 1<<20-len(meterJSON("big", "")))
	if r := h.do("POST", "/api/v1/meters", "application/json", meterJSON("big", pad)); r.Status == http.StatusRequestEntityTooLarge {
		t.Errorf("a body of exactly the limit: got %s", r)
	}
}

func TestAPIJSONContentType(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	for i, tc := range []struct {
		ct   string
		want int
	}{
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"", http.StatusUnsupportedMediaType},
		{"text/plain", http.StatusUnsupportedMediaType},
		{"application/json; charset=latin1", http.StatusUnsupportedMediaType},
		{"application/jsonx", http.StatusUnsupportedMediaType},
		{"not a media type;;", http.StatusUnsupportedMediaType},
		{"application/json", http.StatusCreated},
		{"application/json; charset=UTF-8", http.StatusCreated},
		{"Application/JSON;charset=utf-8", http.StatusCreated},
		{"application/merge-patch+json", http.StatusCreated},
	} {
		t.Run(tc.ct, func(t *testing.T) {
			slug := fmt.Sprintf("m%d", i)
			r := h.do("POST", "/api/v1/meters", tc.ct, meterJSON(slug, "d"))
			if tc.want != http.StatusUnsupportedMediaType {
				h.expect(r, tc.want, "create meter")
				return
			}
			p := problemOf(t, r, http.StatusUnsupportedMediaType)
			if !strings.Contains(p.Detail, "application/json") {
				t.Errorf("415 detail %q does not say what to send", p.Detail)
			}
			h.expect(h.do("GET", "/api/v1/meters/"+slug, "", ""), http.StatusNotFound, "meter of a refused request")
		})
	}
	t.Run("no body needs no content type", func(t *testing.T) {
		h.expect(h.do("POST", "/api/v1/meters/m6/query", "", ""), http.StatusOK, "query with an empty body")
		h.expect(h.do("POST", "/api/v1/meters/m6/query", "", "", "Content-Length", "0"), http.StatusOK, "query with an empty body")
	})
	t.Run("form body to a query", func(t *testing.T) {
		problemOf(t, h.do("POST", "/api/v1/meters/m6/query", "application/x-www-form-urlencoded", "groupBy=subject"), http.StatusUnsupportedMediaType)
	})
}

func TestAPIJSONBodyNotUTF8(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	for _, tc := range []struct{ name, description, where string }{
		{"invalid byte", "caf\xe9", "byte 73"},
		{"truncated sequence", "ok \xe2\x82", "byte 73"},
		{"lone high surrogate", `x\ud83d`, `\ud83d`},
		{"lone low surrogate", `x\ude00y`, `\ude00`},
		{"reversed pair", `\ude00\ud83d`, `\ude00`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/meters", "application/json", meterJSON("bad", tc.description)), http.StatusBadRequest)
			if !strings.Contains(p.Detail, tc.where) {
				t.Errorf("400 detail %q does not point at %s", p.Detail, tc.where)
			}
		})
	}
	h.expect(h.do("GET", "/api/v1/meters/bad", "", ""), http.StatusNotFound, "meter of a refused request")
	// Escapes of whole characters and an escaped backslash before a u are
	// text like any other.
	m := h.createMeter(meterJSON("good", `caf\u00e9 \ud83d\ude00 \\ud83d ü`))
	var got struct{ Description string }
	decodeInto(t, h.do("GET", "/api/v1/meters/"+m.Slug, "", ""), &got)
	if want := `café 😀 \ud83d ü`; got.Description != want {
		t.Errorf("description %q, want %q", got.Description, want)
	}
}

func TestAPIUnknownRouteAndMethod(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/api/v1/nope", http.StatusNotFound, ""},
		{"POST", "/nope", http.StatusNotFound, ""},
		{"GET", "/api/v1/meters/", http.StatusNotFound, ""},
		{"DELETE", "/api/v1/events", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
		{"PATCH", "/api/v1/meters/calls", http.StatusMethodNotAllowed, "DELETE, GET, HEAD, PUT"},
		{"GET", "/api/v1/plans/basic/publish", http.StatusMethodNotAllowed, "POST"},
		{"PUT", "/healthz", http.StatusMethodNotAllowed, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			// Without credentials too: a missing route is not a secret.
			for _, token := range []string{"Bearer secret", ""} {
				r := h.do(tc.method, tc.path, "", "", "Authorization", token)
				p := problemOf(t, r, tc.status)
				if p.Instance != tc.path || p.Detail == "" {
					t.Errorf("problem %+v: want instance %s and a detail", p, tc.path)
				}
				if got := r.Header.Get("Allow"); got != tc.allow {
					t.Errorf("Allow %q, want %q", got, tc.allow)
				}
			}
		})
	}
	t.Run("unclean path still redirects", func(t *testing.T) {
		req, _ := http.NewRequest("GET", h.srv.URL+"/api//v1/meters", nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/api/v1/meters" {
			t.Errorf("got %d Location %q, want a redirect to /api/v1/meters", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// groupByJSON is a groupBy object of n keys k0….
func groupByJSON(n int) string {
	var kv []string
	for i := 0; i < n; i++ {
		kv = append(kv, fmt.Sprintf(`"k%d":"$.k%d"`, i, i))
	}
	return "{" + strings.Join(kv, ",") + "}"
}

func TestAPIMeterBounds(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	long := func(n int) string { return strings.Repeat("é", n) }
	for _, tc := range []struct{ name, body, want string }{
		{"1000 groupBy keys", `{"slug":"m","eventType":"e","aggregation":"COUNT","groupBy":` + groupByJSON(1000) + `}`, "groupBy: 1000 keys, at most 20 allowed"},
		{"eventType of 10 kB", `{"slug":"m","eventType":"` + strings.Repeat("e", 10_000) + `","aggregation":"COUNT"}`, "eventType: 10000 bytes, at most 256 allowed"},
		{"long name", `{"slug":"m","name":"` + long(257) + `","eventType":"e","aggregation":"COUNT"}`, "name: 257 characters, at most 256 allowed"},
		{"long description", `{"slug":"m","description":"` + long(4097) + `","eventType":"e","aggregation":"COUNT"}`, "description: 4097 characters, at most 4096 allowed"},
		{"long valueProperty", `{"slug":"m","eventType":"e","aggregation":"SUM","valueProperty":"$.` + strings.Repeat("v", 300) + `"}`, "valueProperty: 302 bytes, at most 256 allowed"},
		{"long groupBy key", `{"slug":"m","eventType":"e","aggregation":"COUNT","groupBy":{"` + strings.Repeat("k", 65) + `":"$.k"}}`, "groupBy: a key of 65 bytes, at most 64 allowed"},
		{"long slug", `{"slug":"` + strings.Repeat("s", 65) + `","eventType":"e","aggregation":"COUNT"}`, "slug: 65 characters, at most 64 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/meters", "application/json", tc.body), http.StatusBadRequest)
			if !strings.Contains(p.Detail, tc.want) {
				t.Errorf("400 detail %.300q does not say %q", p.Detail, tc.want)
			}
			if len(p.Errors) > 2 {
				t.Errorf("%d errors, want the bound alone: %.300q", len(p.Errors), p.Errors)
			}
		})
	}
	// At the bounds, and a change past them.
	m := h.createMeter(`{"slug":"m","name":"` + long(256) + `","description":"` + long(4096) + `","eventType":"` + strings.Repeat("e", 256) + `","aggregation":"COUNT","groupBy":` + groupByJSON(20) + `}`)
	p := problemOf(t, h.do("PUT", "/api/v1/meters/m", "application/json", `{"slug":"m","eventType":"e","aggregation":"COUNT","groupBy":`+groupByJSON(21)+`}`), http.StatusBadRequest)
	if !strings.Contains(p.Detail, "groupBy: 21 keys, at most 20 allowed") {
		t.Errorf("400 detail %q does not give the bound", p.Detail)
	}
	if got := h.do("GET", "/api/v1/meters/m", "", ""); !strings.Contains(string(got.Body), `"k19"`) || strings.Contains(string(got.Body), `"k20"`) {
		t.Errorf("meter after a refused change: %s", got)
	}

	t.Run("query groupBy", func(t *testing.T) {
		all := []string{"subject"}
		for k := range m.GroupBy {
			all = append(all, k)
		}
		h.expect(h.do("GET", "/api/v1/meters/m/query?groupBy="+strings.Join(all, "&groupBy="), "", ""), http.StatusOK, "query grouped by every key")
		many := strings.Repeat("subject,", 99) + "subject"
		p := problemOf(t, h.do("GET", "/api/v1/meters/m/query?groupBy="+strings.ReplaceAll(many, ",", "&groupBy="), "", ""), http.StatusBadRequest)
		if !strings.Contains(p.Detail, "groupBy: 100 entries, at most 21 allowed") {
			t.Errorf("400 detail %q does not give the bound", p.Detail)
		}
		p = problemOf(t, h.do("POST", "/api/v1/meters/m/query", "application/json", `{"groupBy":["`+strings.ReplaceAll(many, ",", `","`)+`"]}`), http.StatusBadRequest)
		if !strings.Contains(p.Detail, "groupBy: 100 entries, at most 21 allowed") {
			t.Errorf("400 detail %q does not give the bound", p.Detail)
		}
	})
}
