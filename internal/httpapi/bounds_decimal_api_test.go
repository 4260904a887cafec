package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestPlanDecimalBoundsAPI: a plan amount is checked before it is expanded.
// Before, baseFee 1e999999999 pinned a core for minutes and 1e3000000 made
// every GET /plans take seconds; 0e99999999999 was "not a number".
func TestPlanDecimalBoundsAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT"}`)
	plan := func(key, baseFee, pricing string) string {
		return `{"key":"` + key + `","name":"P","currency":"EUR","cadence":"P1M","baseFee":` + baseFee +
			`,"charges":[{"key":"e","meter":"emails","pricing":` + pricing + `}]}`
	}
	perUnit := `{"model":"per_unit","unitPrice":"0.01"}`
	digits51 := "123456789012345678901234567890123456789012345678901"
	tests := []struct {
		name, body, want string
	}{
		{"huge base fee", plan("a", `"1e999999999"`, perUnit), `baseFee: "1e999999999" has 1000000000 integer digits, outside the supported range of at most 40`},
		{"huge base fee number", plan("a", `1e3000000`, perUnit), `baseFee: "1e3000000" has 3000001 integer digits`},
		{"51-digit unit price", plan("a", `"1"`, `{"model":"per_unit","unitPrice":"`+digits51+`"}`),
			`unitPrice: "12345678901234567890…" (51 characters) has 51 integer digits, outside the supported range of at most 40`},
		{"tier bound", plan("a", `"1"`, `{"model":"volume","tiers":[{"upTo":"1e999999999","unitPrice":"1"},{"unitPrice":"1"}]}`), `upTo: "1e999999999" has 1000000000 integer digits`},
		{"tiny price", plan("a", `"1"`, `{"model":"per_unit","unitPrice":"1e-999999999"}`), `unitPrice: "1e-999999999" has 999999999 decimal places, outside the supported range of at most 30`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/plans", "application/json", tc.body), http.StatusBadRequest)
			if !strings.Contains(p.Detail+strings.Join(p.Errors, "\n"), tc.want) {
				t.Errorf("problem %+v, want it to say %q", p, tc.want)
			}
		})
	}

	var created apiPlan
	h.json("POST", "/api/v1/plans", plan("zero", `"0e99999999999"`, `{"model":"per_unit","unitPrice":-0.000e-5}`), http.StatusCreated, &created)
	if created.BaseFee != "0.00" || created.Charges[0].Pricing.UnitPrice != "0.00" {
		t.Errorf("baseFee %q, unitPrice %q; want 0.00 and 0.00 (EUR's minor units)", created.BaseFee, created.Charges[0].Pricing.UnitPrice)
	}
	var list struct {
		Items []apiPlan `json:"items"`
	}
	h.json("GET", "/api/v1/plans", "", http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].BaseFee != "0.00" {
		t.Errorf("plans %+v, want the one plan with baseFee 0.00", list.Items)
	}
}

// TestMeterPathRuleAPI: a path whose cost can't be bounded is refused at
// meter creation, naming the path.
func TestMeterPathRuleAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$..tokens"}`)
	for _, tc := range []struct{ path, want string }{
		{"$..x..tokens", `valueProperty: "$..x..tokens" uses recursive descent (..) more than once`},
		{"$.items[?(@.n > 1)].n", `valueProperty: "$.items[?(@.n > 1)].n" uses a filter expression`},
		{"$.a[0,-1]", `valueProperty: "$.a[0,-1]" mixes negative and non-negative indices`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/meters", "application/json",
				`{"slug":"m","eventType":"prompt","aggregation":"SUM","valueProperty":"`+tc.path+`"}`), http.StatusBadRequest)
			if !strings.Contains(p.Detail+strings.Join(p.Errors, "\n"), tc.want) {
				t.Errorf("problem %+v, want it to say %q", p, tc.want)
			}
		})
	}
}

// TestDeepEventDataAPI: an event whose data nests deeper than the limit is
// refused, with the whole request, naming the event and its data.
func TestDeepEventDataAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$..tokens"}`)
	deep := strings.Repeat(`{"x":`, 40) + `{"tokens":1}` + strings.Repeat(`}`, 40)
	body := jsonArray(ce("a", "prompt", "c1", "2026-04-01T11:00:00Z", `{"tokens":2}`), ce("b", "prompt", "c1", "2026-04-01T11:00:00Z", deep))
	p := problemOf(t, h.do("POST", "/api/v1/events", batchCT, body), http.StatusBadRequest)
	if len(p.Problems) != 1 || p.Problems[0].Index != 1 || p.Problems[0].Field != "data" ||
		!strings.Contains(p.Problems[0].Message, "nests objects and arrays 41 levels deep, at most 32 allowed") {
		t.Fatalf("problems %+v, want event 1's data nesting 41 levels deep", p.Problems)
	}
	if got := h.total("tokens"); got != "0" {
		t.Errorf("SUM = %s, want 0: the request is refused whole", got)
	}
}
