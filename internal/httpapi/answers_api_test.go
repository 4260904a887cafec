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

// TestKeysShowTheirCustomerKey: a key bound to a customer names the
// customer's key in every answer, not only in its creation's.
func TestKeysShowTheirCustomerKey(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "s3cret-admin-token"})
	h.expect(h.do("POST", "/api/v1/customers", "application/json", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`), http.StatusCreated, "create customer")
	type key struct {
		ID, Customer, CustomerKey, Scope string
	}
	var created, unbound key
	decodeInto(t, h.do("POST", "/api/v1/keys", "application/json", `{"scope":"read","customer":"contoso"}`), &created)
	if created.CustomerKey != "contoso" || created.Customer == "" {
		t.Fatalf("created key: %+v, want customerKey contoso", created)
	}
	decodeInto(t, h.do("POST", "/api/v1/keys", "application/json", `{"scope":"ingest"}`), &unbound)

	var page struct{ Items []key }
	decodeInto(t, h.do("GET", "/api/v1/keys", "", ""), &page)
	got := map[string]key{}
	for _, k := range page.Items {
		got[k.ID] = k
	}
	if got[created.ID] != created {
		t.Errorf("GET /keys shows the bound key as %+v, want %+v as its creation did", got[created.ID], created)
	}
	if k := got[unbound.ID]; k.CustomerKey != "" || k.Customer != "" {
		t.Errorf("GET /keys shows an unbound key as %+v", k)
	}
	for _, path := range []string{"/api/v1/keys/" + created.ID} {
		var one key
		decodeInto(t, h.do("GET", path, "", ""), &one)
		if one != created {
			t.Errorf("GET %s: %+v, want %+v", path, one, created)
		}
	}
	var revoked key
	decodeInto(t, h.do("DELETE", "/api/v1/keys/"+created.ID, "", ""), &revoked)
	if revoked.CustomerKey != "contoso" {
		t.Errorf("revoked key: %+v, want customerKey contoso", revoked)
	}
}

// TestPlanAnswersInMinorUnits: plan money comes back in the currency's
// minor units, never rounded, and a charge shows only the pricing fields
// of its model.
func TestPlanAnswersInMinorUnits(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT"}`)
	body := `{"key":"tiers","name":"Tiers","currency":"USD","cadence":"P1M","baseFee":10,
	 "charges":[
	  {"key":"g","meter":"emails","pricing":{"model":"graduated","tiers":[{"upTo":"1000","unitPrice":"0.01"},{"upTo":null,"unitPrice":"0.005","flatPrice":"2"}]}},
	  {"key":"u","meter":"emails","pricing":{"model":"per_unit","unitPrice":"1.5"}},
	  {"key":"p","meter":"emails","pricing":{"model":"package","packageSize":"1000","unitPrice":"5"}}]}`
	want := `"baseFee":"10.00","charges":[` +
		`{"key":"g","meter":"emails","included":"0","pricing":{"model":"graduated","tiers":[{"upTo":"1000","unitPrice":"0.01","flatPrice":"0.00"},{"upTo":null,"unitPrice":"0.005","flatPrice":"2.00"}]}},` +
		`{"key":"u","meter":"emails","included":"0","pricing":{"model":"per_unit","unitPrice":"1.50"}},` +
		`{"key":"p","meter":"emails","included":"0","pricing":{"model":"package","unitPrice":"5.00","packageSize":"1000"}}]`
	for _, r := range []apiResp{
		h.do("POST", "/api/v1/plans", "application/json", body),
		h.do("GET", "/api/v1/plans/tiers", "", ""),
		h.do("GET", "/api/v1/plans", "", ""),
		h.do("POST", "/api/v1/plans/tiers/publish", "", ""),
	} {
		if r.Status >= 300 || !strings.Contains(string(r.Body), want) {
			t.Errorf("answer %s\nwant it to contain %s", r, want)
		}
	}
	// JPY has no minor unit; KWD three.
	for cur, fee := range map[string]string{"JPY": `"baseFee":"1000"`, "KWD": `"baseFee":"1000.000"`} {
		b := strings.NewReplacer(`"key":"tiers"`, `"key":"t-`+strings.ToLower(cur)+`"`, `"USD"`, `"`+cur+`"`, `"baseFee":10`, `"baseFee":1000`).Replace(body)
		if r := h.do("POST", "/api/v1/plans", "application/json", b); r.Status != http.StatusCreated || !strings.Contains(string(r.Body), fee) {
			t.Errorf("%s plan: %s, want %s", cur, r, fee)
		}
	}
}

// TestQueryWithoutRangeShowsTheDataExtent: a query with neither from nor
// to (nor a window size) answers each row's first and last minute of
// usage as its window, not the zero time or the end of time.
func TestQueryWithoutRangeShowsTheDataExtent(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens"}`)
	h.ingest("application/cloudevents-batch+json", `[
	 {"specversion":"1.0","id":"e1","source":"chat","type":"prompt","subject":"c-1","time":"2026-03-22T10:00:30Z","data":{"tokens":1}},
	 {"specversion":"1.0","id":"e2","source":"chat","type":"prompt","subject":"c-1","time":"2026-03-22T11:05:00Z","data":{"tokens":2}},
	 {"specversion":"1.0","id":"e3","source":"chat","type":"prompt","subject":"c-2","time":"2026-03-23T09:00:00Z","data":{"tokens":7}}]`)
	for _, q := range []string{"", "?groupBy=subject"} {
		r := h.do("GET", "/api/v1/meters/tokens/query"+q, "", "")
		body := string(r.Body)
		if r.Status != http.StatusOK || strings.Contains(body, "0001-01-01") || strings.Contains(body, "9999-") || strings.Contains(body, `"from"`) || strings.Contains(body, `"to"`) {
			t.Errorf("query%s: %s, want no range and no zero or far bounds", q, r)
		}
		want := `"windowStart":"2026-03-22T10:00:00Z","windowEnd":"2026-03-23T09:01:00Z"`
		if q != "" {
			want = `"value":3,"windowStart":"2026-03-22T10:00:00Z","windowEnd":"2026-03-22T11:06:00Z","subject":"c-1"`
		}
		if !strings.Contains(body, want) {
			t.Errorf("query%s: %s\nwant %s", q, r, want)
		}
	}
}
