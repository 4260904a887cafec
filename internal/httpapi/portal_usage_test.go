package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// TestPortalUsageHidesChargesNotMoney: a portal token limited to some
// meters sees only their charges as lines, but the totals are still the
// whole bill, and otherCharges sums what it does not see, so that the
// numbers shown add up.
func TestPortalUsageHidesChargesNotMoney(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	h.must("POST", "/api/v1/meters", `{"slug":"emails","eventType":"email","aggregation":"COUNT"}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/meters", `{"slug":"sms","eventType":"sms","aggregation":"COUNT"}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/meters", `{"slug":"calls","eventType":"call","aggregation":"COUNT"}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/plans", `{"key":"comms","name":"Comms","currency":"EUR","cadence":"P1M","baseFee":"10.00","charges":[
	  {"key":"emails","meter":"emails","included":"1","pricing":{"model":"per_unit","unitPrice":"0.10"}},
	  {"key":"sms","meter":"sms","included":"0","pricing":{"model":"per_unit","unitPrice":"0.25"}},
	  {"key":"calls","meter":"calls","included":"0","pricing":{"model":"per_unit","unitPrice":"1.005"}}]}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/plans/comms/publish", "", http.StatusOK, nil)
	h.must("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"comms"}`, http.StatusCreated, nil)
	var evs []string
	for i, typ := range []string{"email", "email", "email", "sms", "sms", "call"} {
		evs = append(evs, fmt.Sprintf(`{"specversion":"1.0","id":"e%d","source":"t","type":%q,"subject":"c-1","time":%q}`,
			i, typ, apiStart.Add(5*time.Minute).Format(time.RFC3339)))
	}
	h.must("POST", "/api/v1/events", "["+strings.Join(evs, ",")+"]", http.StatusNoContent, nil)
	h.clock.Advance(10 * time.Minute)

	type charge struct{ Meter, Amount, ProjectedAmount string }
	type view struct {
		Subscriptions []struct {
			BaseFee, Total, ProjectedTotal string
			Charges                        []charge
			OtherCharges                   *struct {
				Charges                 int
				Amount, ProjectedAmount string
			}
		}
	}
	var full view
	h.must("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &full)
	if len(full.Subscriptions) != 1 || len(full.Subscriptions[0].Charges) != 3 {
		t.Fatalf("full view: %+v", full)
	}
	fs := full.Subscriptions[0]
	// 2 e-mails over 1 included at 0.10, 2 SMS at 0.25, 1 call at 1.005 (1.00 half-even).
	if fs.Total != "11.70" {
		t.Fatalf("full total = %s, want 11.70 (10.00 + 0.20 + 0.50 + 1.00)", fs.Total)
	}

	var pt struct{ Token string }
	h.must("POST", "/api/v1/portal/tokens", `{"customer":"contoso","meters":["emails"]}`, http.StatusCreated, &pt)
	r := h.call(pt.Token, "GET", "/api/v1/portal/usage", "")
	if r.status != http.StatusOK {
		t.Fatalf("portal usage: %s", r)
	}
	if strings.Contains(r.body, `"sms"`) || strings.Contains(r.body, `"calls"`) {
		t.Errorf("the portal view names a meter the token may not see: %s", r.body)
	}
	var pv view
	if err := json.Unmarshal([]byte(r.body), &pv); err != nil {
		t.Fatal(err)
	}
	ps := pv.Subscriptions[0]
	if len(ps.Charges) != 1 || ps.Charges[0].Meter != "emails" || ps.Charges[0].Amount != "0.20" {
		t.Errorf("portal charges = %+v; want the e-mails line only", ps.Charges)
	}
	if ps.Total != fs.Total || ps.ProjectedTotal != fs.ProjectedTotal || ps.BaseFee != fs.BaseFee {
		t.Errorf("portal totals %s / %s, want the whole bill %s / %s", ps.Total, ps.ProjectedTotal, fs.Total, fs.ProjectedTotal)
	}
	if ps.OtherCharges == nil || ps.OtherCharges.Charges != 2 || ps.OtherCharges.Amount != "1.50" {
		t.Fatalf("otherCharges = %+v; want 2 charges, 1.50", ps.OtherCharges)
	}
	sum := func(xs ...string) string {
		var d decimal.Decimal
		for _, x := range xs {
			d = d.Add(decimal.RequireFromString(x))
		}
		return d.StringFixed(2)
	}
	if got := sum(ps.BaseFee, ps.Charges[0].Amount, ps.OtherCharges.Amount); got != ps.Total {
		t.Errorf("baseFee + lines + otherCharges = %s, total %s: they must add up", got, ps.Total)
	}
	if got := sum(ps.BaseFee, ps.Charges[0].ProjectedAmount, ps.OtherCharges.ProjectedAmount); got != ps.ProjectedTotal {
		t.Errorf("projected: baseFee + lines + otherCharges = %s, projectedTotal %s", got, ps.ProjectedTotal)
	}
	// A token for every meter shows every line and no otherCharges.
	h.must("POST", "/api/v1/portal/tokens", `{"customer":"contoso"}`, http.StatusCreated, &pt)
	if r := h.call(pt.Token, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusOK || strings.Contains(r.body, "otherCharges") || !strings.Contains(r.body, `"calls"`) {
		t.Errorf("unrestricted portal token: %s", r)
	}
}
