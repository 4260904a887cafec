package httpapi_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// evAt is one email event of subject at time at.
func evAt(id, subject string, at time.Time) string {
	return fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"moves-test","type":"email","subject":%q,"time":%q}]`, id, subject, at.Format(time.RFC3339))
}

// callAccept is call with an Accept header.
func (h *authHarness) callAccept(cred, path, accept string) authResp {
	h.t.Helper()
	req, err := http.NewRequest("GET", h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// moveWorld is the access world with subject fab-1 moved from B
// (fabrikam) to A (contoso) at 12:10: B's events of fab-1 at 11:00 (seed),
// 12:05 (three) and 12:07 (sent late, after the move), A's at 12:15.
type moveWorld struct {
	*world
	moveAt time.Time
	// creds of B made before the move: a read key, an ingest key, a read
	// key bound to subject fab-1 and a portal token.
	readB, ingestB, subjB, portalB string
	subjPortalB                    string
}

func setupMove(t *testing.T) *moveWorld {
	w := setupWorld(t)
	h := w.h
	mw := &moveWorld{world: w, moveAt: apiStart.Add(10 * time.Minute)}
	_, mw.readB = h.createKey(`{"scope":"read","customer":"fabrikam"}`)
	_, mw.ingestB = h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)
	_, mw.subjB = h.createKey(`{"scope":"read","subject":"fab-1"}`)
	mw.portalB = h.portalToken(`{"customer":"fabrikam","ttl":"2h"}`).Token
	mw.subjPortalB = h.portalToken(`{"subject":"fab-1","ttl":"2h"}`).Token
	h.clock.Advance(mw.moveAt.Sub(h.clock.Now()) - 4*time.Minute) // 12:06
	for i := range 3 {
		if r := h.call(mw.ingestB, "POST", "/api/v1/events", evAt(fmt.Sprintf("b-%d", i), "fab-1", apiStart.Add(5*time.Minute))); r.status != http.StatusNoContent {
			t.Fatalf("B's event before the move: %s", r)
		}
	}
	h.clock.Advance(4 * time.Minute) // 12:10
	h.must("PUT", "/api/v1/customers/fabrikam", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":[]}`, http.StatusOK, nil)
	h.must("PUT", "/api/v1/customers/contoso", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-eu-1","contoso-us-1","fab-1"]}`, http.StatusOK, nil)
	h.clock.Advance(10 * time.Minute) // 12:20
	// B's own usage of the minutes it owned fab-1 may still arrive late.
	if r := h.call(mw.ingestB, "POST", "/api/v1/events", evAt("b-late", "fab-1", apiStart.Add(7*time.Minute))); r.status != http.StatusNoContent {
		t.Fatalf("B's late event of 12:07, a minute it owned fab-1: %s", r)
	}
	if r := h.call(w.creds["ingestA"], "POST", "/api/v1/events", evAt("a-1", "fab-1", apiStart.Add(15*time.Minute))); r.status != http.StatusNoContent {
		t.Fatalf("A's event of 12:15, after the move: %s", r)
	}
	return mw
}

// eventCount counts the fab-1 events cred lists in [from, to).
func (mw *moveWorld) eventCount(t *testing.T, cred string, from, to time.Time) int {
	t.Helper()
	r := mw.h.call(cred, "GET", fmt.Sprintf("/api/v1/events?subject=fab-1&from=%s&to=%s", from.Format(time.RFC3339), to.Format(time.RFC3339)), "")
	if r.status != http.StatusOK {
		t.Fatalf("list events: %s", r)
	}
	var evs []struct {
		Event struct{ Subject string } `json:"event"`
	}
	if err := json.Unmarshal([]byte(r.body), &evs); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event.Subject != "fab-1" {
			t.Errorf("listing fab-1 events got an event of %q", e.Event.Subject)
		}
	}
	return len(evs)
}

// queryTotal sums fab-1's emails in [from, to) as cred's query answers
// them, as JSON and as CSV (which must agree).
func (mw *moveWorld) queryTotal(t *testing.T, cred, base string, from, to time.Time) int64 {
	t.Helper()
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "groupBy": {"subject"}}
	r := mw.h.call(cred, "GET", base+"?"+q.Encode(), "")
	if r.status != http.StatusOK {
		t.Fatalf("query %s: %s", base, r)
	}
	var res struct {
		Data []struct {
			Value   decimal.Decimal
			Subject *string
		}
	}
	if err := json.Unmarshal([]byte(r.body), &res); err != nil {
		t.Fatal(err)
	}
	var total decimal.Decimal
	for _, row := range res.Data {
		if row.Subject != nil && *row.Subject == "fab-1" {
			total = total.Add(row.Value)
		}
	}
	c := mw.h.callAccept(cred, base+"?"+q.Encode(), "text/csv")
	if c.status != http.StatusOK {
		t.Fatalf("CSV query %s: %s", base, c)
	}
	recs, err := csv.NewReader(strings.NewReader(c.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var csvTotal decimal.Decimal
	for _, rec := range recs[1:] {
		if rec[2] == "fab-1" {
			csvTotal = csvTotal.Add(decimal.RequireFromString(rec[len(rec)-1]))
		}
	}
	if !csvTotal.Equal(total) {
		t.Errorf("query %s as CSV: fab-1 total %s, as JSON %s", base, csvTotal, total)
	}
	return total.IntPart()
}

// usageOf is the emails usage the customer usage view (or the portal's)
// shows cred.
func (mw *moveWorld) usageOf(t *testing.T, cred, path string) (usage string, share string, amount string) {
	t.Helper()
	r := mw.h.call(cred, "GET", path, "")
	if r.status != http.StatusOK {
		t.Fatalf("usage view %s: %s", path, r)
	}
	var v struct {
		Subject       string
		Subscriptions []struct {
			Charges []struct{ Key, Usage, Amount string }
		}
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Subscriptions) != 1 || len(v.Subscriptions[0].Charges) != 1 {
		t.Fatalf("usage view %s: %s", path, r.body)
	}
	c := v.Subscriptions[0].Charges[0]
	return c.Usage, v.Subject, c.Amount
}

// TestBoundCredentialsFollowDatedOwnership: before, across and after a
// subject's move from B to A, every read of a bound credential (events,
// meter queries as JSON and CSV, the portal's query, the usage view,
// invoices) shows only the minutes its customer owned the subject, and
// every write reaches only those minutes.
func TestBoundCredentialsFollowDatedOwnership(t *testing.T) {
	mw := setupMove(t)
	h := mw.h
	readA := mw.creds["readA"]
	before := [2]time.Time{apiStart, mw.moveAt}
	across := [2]time.Time{apiStart.Add(-2 * time.Hour), apiStart.Add(20 * time.Minute)}
	after := [2]time.Time{mw.moveAt, apiStart.Add(20 * time.Minute)}
	// B owned fab-1 until 12:10: the seed at 11:00, three at 12:05, one at
	// 12:07. A owns it since: one at 12:15.
	cases := []struct {
		who, cred, queryBase  string
		before, across, after int64
	}{
		{"A's read key", readA, "/api/v1/meters/emails/query", 0, 1, 1},
		{"A's OIDC token", mw.creds["oidcA"], "/api/v1/meters/emails/query", 0, 1, 1},
		{"A's portal token", mw.creds["portalA"], "/api/v1/portal/meters/emails/query", 0, 1, 1},
		{"B's read key", mw.readB, "/api/v1/meters/emails/query", 4, 5, 0},
		{"B's key bound to fab-1", mw.subjB, "/api/v1/meters/emails/query", 4, 5, 0},
		{"B's portal token", mw.portalB, "/api/v1/portal/meters/emails/query", 4, 5, 0},
		{"B's portal token bound to fab-1", mw.subjPortalB, "/api/v1/portal/meters/emails/query", 4, 5, 0},
		{"the admin", testAdminToken, "/api/v1/meters/emails/query", 4, 6, 1},
	}
	for _, c := range cases {
		for _, rg := range []struct {
			name string
			span [2]time.Time
			want int64
		}{{"before", before, c.before}, {"across", across, c.across}, {"after", after, c.after}} {
			if got := mw.queryTotal(t, c.cred, c.queryBase, rg.span[0], rg.span[1]); got != rg.want {
				t.Errorf("%s: fab-1 usage %s the move = %d, want %d", c.who, rg.name, got, rg.want)
			}
			if strings.Contains(c.queryBase, "/portal/") {
				continue
			}
			if got := mw.eventCount(t, c.cred, rg.span[0], rg.span[1]); int64(got) != rg.want {
				t.Errorf("%s: fab-1 events listed %s the move = %d, want %d", c.who, rg.name, got, rg.want)
			}
		}
	}

	// The usage views and invoices of the current period (from 12:00):
	// A has fab-1's 12:15 email, B its four of 12:05 and 12:07.
	for _, c := range []struct {
		who, cred, path, want string
	}{
		{"A's read key", readA, "/api/v1/customers/contoso/usage", "1"},
		{"A's portal token", mw.creds["portalA"], "/api/v1/portal/usage", "1"},
		{"B's read key", mw.readB, "/api/v1/customers/fabrikam/usage", "4"},
		{"B's portal token", mw.portalB, "/api/v1/portal/usage", "4"},
	} {
		if got, _, _ := mw.usageOf(t, c.cred, c.path); got != c.want {
			t.Errorf("%s: usage view shows %s emails, want %s", c.who, got, c.want)
		}
	}
	for _, c := range []struct {
		who, cred, customer, want string
	}{{"A", readA, "contoso", "1"}, {"B", mw.readB, "fabrikam", "4"}} {
		var invs struct {
			Items []struct {
				Lines []struct{ Key, Quantity string }
			}
		}
		r := h.call(c.cred, "GET", "/api/v1/invoices", "")
		if r.status != http.StatusOK {
			t.Fatalf("%s's invoices: %s", c.who, r)
		}
		if err := json.Unmarshal([]byte(r.body), &invs); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, inv := range invs.Items {
			for _, l := range inv.Lines {
				if l.Key == "emails" {
					found = true
					if l.Quantity != c.want {
						t.Errorf("%s's draft invoice bills %s emails, want %s", c.who, l.Quantity, c.want)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s's invoices have no emails line: %s", c.who, r.body)
		}
	}
}

// TestBoundIngestFollowsDatedOwnership: after fab-1 moved from B to A,
// A's ingest key can't put usage on B's bill by dating an event in B's
// time, B's can't reach A's time, and neither can date an event far
// ahead, to land on whoever owns the subject then. Each refusal is 403,
// names the subject and the ownership, and stores nothing.
func TestBoundIngestFollowsDatedOwnership(t *testing.T) {
	mw := setupMove(t)
	h := mw.h
	now := h.clock.Now()
	count := func() int {
		var evs []json.RawMessage
		h.must("GET", "/api/v1/events?limit=1000", "", http.StatusOK, &evs)
		return len(evs)
	}
	stored := count()
	_, deployB := h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)
	_, deployA := h.createKey(`{"scope":"ingest","subject":"contoso-eu-1"}`)
	for _, c := range []struct {
		name, cred, subject string
		at                  time.Time
		field, mention      string
	}{
		{"A dates fab-1 usage in B's time", mw.creds["ingestA"], "fab-1", apiStart.Add(5 * time.Minute), "subject", "from 2026-04-01T12:10:00Z until now"},
		{"A dates fab-1 usage a day before the move", mw.creds["ingestA"], "fab-1", apiStart.Add(-24 * time.Hour), "subject", "2026-04-01T12:10:00Z"},
		{"B dates fab-1 usage in A's time", deployB, "fab-1", apiStart.Add(15 * time.Minute), "subject", "until 2026-04-01T12:10:00Z"},
		{"B dates fab-1 usage in the minute of the move", deployB, "fab-1", mw.moveAt.Add(30 * time.Second), "subject", "until 2026-04-01T12:10:00Z"},
		{"A dates its usage days ahead", mw.creds["ingestA"], "contoso-eu-1", now.Add(72 * time.Hour), "time", "5m0s"},
		{"A dates its usage six minutes ahead", mw.creds["ingestA"], "fab-1", now.Add(6 * time.Minute), "time", "5m0s"},
		{"a subject-bound key dates usage ahead", deployA, "contoso-eu-1", now.Add(time.Hour), "time", "5m0s"},
		{"a subject-bound key sends another subject of its customer", deployA, "contoso-us-1", now, "subject", "contoso-us-1"},
	} {
		// A good event first: the whole request is refused all the same.
		ok := evAt("ok-1", "contoso-us-1", now)
		if c.cred == deployB {
			ok = evAt("ok-1", "fab-1", mw.moveAt.Add(-time.Minute))
		}
		body := strings.TrimSuffix(ok, "]") + "," + strings.TrimPrefix(evAt("bad-"+c.name, c.subject, c.at), "[")
		if c.cred == deployA {
			body = evAt("bad-"+c.name, c.subject, c.at)
		}
		r := h.call(c.cred, "POST", "/api/v1/events", body)
		if r.status != http.StatusForbidden {
			t.Errorf("%s: got %s, want 403", c.name, r)
			continue
		}
		var p struct {
			Detail   string
			Problems []struct {
				Index          int
				Field, Message string
			}
		}
		if err := json.Unmarshal([]byte(r.body), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Problems) != 1 || p.Problems[0].Field != c.field || !strings.Contains(p.Problems[0].Message, c.subject+`"`) && c.field == "subject" || !strings.Contains(p.Problems[0].Message, c.mention) {
			t.Errorf("%s: problems %+v, want one on %s naming %q and %q", c.name, p.Problems, c.field, c.subject, c.mention)
		}
	}
	if got := count(); got != stored {
		t.Errorf("events stored after refused requests: %d, want %d (nothing of a refused request)", got, stored)
	}
	// Within the bound, and within its ownership, a write goes through.
	if r := h.call(mw.creds["ingestA"], "POST", "/api/v1/events", evAt("a-ahead", "fab-1", now.Add(4*time.Minute))); r.status != http.StatusNoContent {
		t.Errorf("A's event four minutes ahead: %s", r)
	}
	if r := h.call(deployB, "POST", "/api/v1/events", evAt("b-09", "fab-1", mw.moveAt.Add(-30*time.Second))); r.status != http.StatusNoContent {
		t.Errorf("B's event of the minute before the move: %s", r)
	}
	// The admin is not bound: it may date usage of any subject in any
	// minute (a correction), within ingest.maxFutureSkew only.
	if r := h.call(testAdminToken, "POST", "/api/v1/events", evAt("admin-1", "fab-1", apiStart.Add(5*time.Minute))); r.status != http.StatusNoContent {
		t.Errorf("admin's event of fab-1 in B's time: %s", r)
	}
}

// TestSubjectBoundCredentialsSeeTheirSubjectOnly: a read key or portal
// token bound to one subject sees that subject's usage and events, a
// usage view of its share with no money, and none of the customer-wide
// views.
func TestSubjectBoundCredentialsSeeTheirSubjectOnly(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	for i := range 3 {
		h.must("POST", "/api/v1/events", evAt(fmt.Sprintf("us-%d", i), "contoso-us-1", apiStart.Add(time.Minute)), http.StatusNoContent, nil)
	}
	h.must("POST", "/api/v1/events", evAt("eu-0", "contoso-eu-1", apiStart.Add(time.Minute)), http.StatusNoContent, nil)
	_, key := h.createKey(`{"scope":"read","subject":"contoso-eu-1"}`)
	tok := h.portalToken(`{"subject":"contoso-eu-1","ttl":"1h"}`).Token
	for _, c := range []struct{ who, cred, path string }{
		{"key", key, "/api/v1/customers/contoso/usage"},
		{"portal token", tok, "/api/v1/portal/usage"},
	} {
		r := h.call(c.cred, "GET", c.path, "")
		if r.status != http.StatusOK {
			t.Fatalf("%s: usage view: %s", c.who, r)
		}
		var v struct {
			Subject       string
			Subscriptions []struct {
				BaseFee, Total *string
				Charges        []map[string]any
			}
		}
		if err := json.Unmarshal([]byte(r.body), &v); err != nil {
			t.Fatal(err)
		}
		if v.Subject != "contoso-eu-1" || len(v.Subscriptions) != 1 || len(v.Subscriptions[0].Charges) != 1 {
			t.Fatalf("%s: usage view %s", c.who, r.body)
		}
		ch := v.Subscriptions[0].Charges[0]
		if ch["usage"] != "1" {
			t.Errorf("%s: usage view shows %v emails, want contoso-eu-1's 1 (not the customer's 4)", c.who, ch["usage"])
		}
		for _, money := range []string{"amount", "projectedAmount", "included", "remaining", "overage"} {
			if _, ok := ch[money]; ok {
				t.Errorf("%s: a subject's share shows %s %v, which is the customer's", c.who, money, ch[money])
			}
		}
		if s := v.Subscriptions[0]; s.BaseFee != nil || s.Total != nil {
			t.Errorf("%s: a subject's share shows the customer's base fee or total: %s", c.who, r.body)
		}
	}
	if r := h.call(key, "GET", "/api/v1/meters/emails/query?groupBy=subject&from=2026-04-01T12:00:00Z", ""); r.status != http.StatusOK || strings.Contains(r.body, "contoso-us-1") || !strings.Contains(r.body, "contoso-eu-1") {
		t.Errorf("subject-bound key's query without a subject: %s, want contoso-eu-1's only", r)
	}
	for _, p := range []string{"/api/v1/invoices", "/api/v1/invoices/" + w.aInvoice, "/api/v1/subscriptions", "/api/v1/subscriptions/" + w.aSub,
		"/api/v1/reports", "/api/v1/reports/" + w.aReport, "/api/v1/customers", "/api/v1/customers/contoso", "/api/v1/customers/contoso/users",
		"/api/v1/subjects/contoso-us-1", "/api/v1/events?subject=contoso-us-1"} {
		if r := h.call(key, "GET", p, ""); r.status != http.StatusForbidden {
			t.Errorf("GET %s with a key bound to subject contoso-eu-1: %s, want 403", p, r)
		}
	}
}

// TestBoundCallerCannotProbePlans: a bound caller filtering its
// subscriptions by a plan learns nothing of which plans exist.
func TestBoundCallerCannotProbePlans(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	h.must("POST", "/api/v1/plans", `{"key":"secret-enterprise","name":"Enterprise","currency":"EUR","cadence":"P1M","baseFee":"900.00","charges":[]}`, http.StatusCreated, nil)
	answers := map[string]authResp{}
	for _, plan := range []string{"secret-enterprise", "no-such-plan"} {
		answers[plan] = h.call(w.creds["readA"], "GET", "/api/v1/subscriptions?plan="+plan, "")
	}
	a, b := answers["secret-enterprise"], answers["no-such-plan"]
	if a.status != b.status || a.body != b.body {
		t.Errorf("a plan that exists and one that doesn't answer differently to a bound caller: %s vs %s", a, b)
	}
	if r := h.call(w.creds["readA"], "GET", "/api/v1/subscriptions?plan=mail-pro", ""); r.status != http.StatusOK || !strings.Contains(r.body, w.aSub) {
		t.Errorf("A's subscriptions to its own plan: %s", r)
	}
}

// TestBoundCallerSeesCorrectionsWithoutNotes: a customer's read key sees
// that one of its events was voided, and when, but not the vendor's reason
// or which credential did it.
func TestBoundCallerSeesCorrectionsWithoutNotes(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	h.must("POST", "/api/v1/events/void", `{"source":"authz-test","id":"seed-0","subject":"contoso-eu-1","reason":"internal: suspected double send by ops"}`, http.StatusOK, nil)
	for _, c := range []struct {
		who, cred string
		notes     bool
	}{{"admin", testAdminToken, true}, {"A's read key", w.creds["readA"], false}} {
		r := h.call(c.cred, "GET", "/api/v1/events?subject=contoso-eu-1", "")
		if r.status != http.StatusOK || !strings.Contains(r.body, `"voided":true`) {
			t.Fatalf("%s: events: %s, want the voided event", c.who, r)
		}
		if got := strings.Contains(r.body, "suspected double send") && strings.Contains(r.body, `"actor"`); got != c.notes {
			t.Errorf("%s: sees the correction's reason and actor: %v, want %v (%s)", c.who, got, c.notes, r.body)
		}
	}
}
