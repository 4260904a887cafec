package azuretest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 10, 20, 0, 0, time.UTC)

func serve(t *testing.T) (*Emulator, *httptest.Server, string) {
	t.Helper()
	e := New(func() time.Time { return now })
	e.AddClient("t1", "app", "pw")
	e.AddResource(Resource{ID: "R1", PlanID: "pro", Dimensions: []string{"d"}})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	resp, err := http.PostForm(srv.URL+"/t1/oauth2/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"pw"}, "resource": {MeteringResource},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   string `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.ExpiresIn != "3600" {
		t.Fatalf("token: status %d, %+v, %v", resp.StatusCode, tok, err)
	}
	return e, srv, tok.AccessToken
}

func post(t *testing.T, srv *httptest.Server, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/api/batchUsageEvent?api-version="+APIVersion, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func event(resource, at, qty string) string {
	return fmt.Sprintf(`{"resourceId":%q,"quantity":%s,"dimension":"d","effectiveStartTime":%q,"planId":"pro"}`, resource, qty, at)
}

func batch(events ...string) string { return `{"request":[` + strings.Join(events, ",") + `]}` }

func statuses(t *testing.T, body string) []string {
	t.Helper()
	var b struct {
		Count  int `json:"count"`
		Result []struct {
			Status string `json:"status"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var out []string
	for _, r := range b.Result {
		out = append(out, r.Status)
	}
	if b.Count != len(out) {
		t.Errorf("count %d for %d results", b.Count, len(out))
	}
	return out
}

func TestBatchRules(t *testing.T) {
	e, srv, tok := serve(t)
	code, body := post(t, srv, tok, batch(
		event("r1", "2026-11-22T09:00:00Z", "1.5"),                                 // resource ids ignore case
		event("R1", "2026-11-22T09:59:59", "2"),                                    // the same hour
		event("R1", "2026-11-21T10:20:00Z", "1"),                                   // exactly 24 hours old
		event("R1", "2026-11-21T10:19:59Z", "1"),                                   // older
		event("R1", "2026-11-22T10:20:01Z", "1"),                                   // in the future
		event("R1", "2026-11-22T08:00:00Z", "0"),                                   // not positive
		event("R1", "2026-11-22T07:00:00Z", `"1"`),                                 // a string
		event("R2", "2026-11-22T09:00:00Z", "1"),                                   // unknown resource
		event("R1", "yesterday", "1"),                                              // not a time
		strings.Replace(event("R1", "2026-11-22T06:00:00Z", "1"), `"d"`, `"x"`, 1), // unknown dimension
	))
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	want := "Accepted Duplicate Accepted Expired BadArgument InvalidQuantity BadArgument ResourceNotFound BadArgument InvalidDimension"
	if got := strings.Join(statuses(t, body), " "); got != want {
		t.Errorf("statuses\n got %s\nwant %s", got, want)
	}
	u := e.Usage()
	if q := u[Key{"R1", "d", time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}]; q.String() != "1.5" || len(u) != 2 {
		t.Errorf("usage %v: want 1.5 for 09:00 (first write wins) and one more hour", u)
	}
}

func TestBatchRefusals(t *testing.T) {
	_, srv, tok := serve(t)
	var many []string
	for i := range MaxBatch + 1 {
		many = append(many, event("R1", fmt.Sprintf("2026-11-22T%02d:00:00Z", i%10), "1"))
	}
	tests := []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", batch(event("R1", "2026-11-22T09:00:00Z", "1")), 403},
		{"unknown token", "forged", batch(event("R1", "2026-11-22T09:00:00Z", "1")), 403},
		{"26 events", tok, batch(many...), 400},
		{"25 events", tok, batch(many[:MaxBatch]...), 200},
		{"no events", tok, batch(), 400},
		{"not JSON", tok, "request=1", 400},
	}
	for _, tt := range tests {
		if code, body := post(t, srv, tt.token, tt.body); code != tt.want {
			t.Errorf("%s: status %d, want %d: %s", tt.name, code, tt.want, body)
		}
	}
}

func TestTokensExpire(t *testing.T) {
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	e := New(func() time.Time { return time.Unix(0, clock.Load()).UTC() })
	e.EnableManagedIdentity("mi")
	e.AddResource(Resource{ID: "R1", PlanID: "pro", Dimensions: []string{"d"}, Owner: "mi"})
	e.SetTokenTTL(10 * time.Minute)
	srv := httptest.NewServer(e)
	defer srv.Close()
	get := func(metadata bool) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+ManagedIdentityPath+"?api-version=2018-02-01&resource="+MeteringResource, nil)
		if metadata {
			req.Header.Set("Metadata", "true")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&tok)
		return resp.StatusCode, tok.AccessToken
	}
	if code, _ := get(false); code != 400 {
		t.Errorf("without Metadata: true: status %d, want 400", code)
	}
	code, tok := get(true)
	if code != 200 || tok == "" {
		t.Fatalf("status %d, token %q", code, tok)
	}
	if code, body := post(t, srv, tok, batch(event("R1", "2026-11-22T09:00:00Z", "1"))); code != 200 || !strings.Contains(body, "Accepted") {
		t.Fatalf("status %d: %s", code, body)
	}
	clock.Add(int64(10 * time.Minute))
	if code, _ := post(t, srv, tok, batch(event("R1", "2026-11-22T08:00:00Z", "1"))); code != 403 {
		t.Errorf("expired token: status %d, want 403", code)
	}
	if e.Calls() != 2 || e.TokenCalls() != 2 {
		t.Errorf("%d calls, %d token calls", e.Calls(), e.TokenCalls())
	}
}
