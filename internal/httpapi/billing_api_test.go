package httpapi_test

import (
	"github.com/tally-metering/tally/internal/report"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// apiCustomer is the part of a customer the tests read.
type apiCustomer struct {
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	Name      string            `json:"name"`
	Email     string            `json:"email"`
	Currency  string            `json:"currency"`
	Metadata  map[string]string `json:"metadata"`
	Subjects  []string          `json:"subjects"`
	External  map[string]any    `json:"external"`
	CreatedAt time.Time         `json:"createdAt"`
	UpdatedAt time.Time         `json:"updatedAt"`
	DeletedAt *time.Time        `json:"deletedAt"`
}

type apiPlanCharge struct {
	Key      string `json:"key"`
	Meter    string `json:"meter"`
	Included string `json:"included"`
	Pricing  struct {
		Model       string `json:"model"`
		UnitPrice   string `json:"unitPrice"`
		PackageSize string `json:"packageSize"`
		Tiers       []struct {
			UpTo      *string `json:"upTo"`
			UnitPrice string  `json:"unitPrice"`
			FlatPrice string  `json:"flatPrice"`
		} `json:"tiers"`
	} `json:"pricing"`
}

type apiPlan struct {
	ID          string          `json:"id"`
	Key         string          `json:"key"`
	Version     int             `json:"version"`
	Name        string          `json:"name"`
	Currency    string          `json:"currency"`
	Cadence     string          `json:"cadence"`
	BaseFee     string          `json:"baseFee"`
	Charges     []apiPlanCharge `json:"charges"`
	Status      string          `json:"status"`
	PublishedAt *time.Time      `json:"publishedAt"`
}

// The example bodies, as written in its API sketch.
const (
	contosoBody = `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"]}`
	mailProBody = `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
  "charges":[{"key":"emails","meter":"emails","included":"1000",
              "pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`
)

func (h *apiHarness) json(method, path, body string, status int, v any) {
	h.t.Helper()
	r := h.do(method, path, "application/json", body)
	h.expect(r, status, method+" "+path)
	if v != nil {
		decodeInto(h.t, r, v)
	}
}

func TestCustomersAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})

	var c apiCustomer
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, &c)
	if c.ID == "" || c.Key != "contoso" || c.Currency != "EUR" || !slices.Equal(c.Subjects, []string{"contoso-mail"}) || !c.CreatedAt.Equal(apiStart) {
		t.Fatalf("created customer: %+v", c)
	}
	for _, path := range []string{"/api/v1/customers/contoso", "/api/v1/customers/" + c.ID} {
		var got apiCustomer
		h.json("GET", path, "", http.StatusOK, &got)
		if got.ID != c.ID || got.Name != "Contoso" {
			t.Errorf("GET %s: %+v", path, got)
		}
	}

	// Bad input: every mistake named by its field, nothing stored.
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     []string // substrings of errors, in order
	}{
		{"every field wrong", "POST", "/api/v1/customers",
			`{"key":"-bad","name":"","email":"nope","currency":"eur","subjects":["a","a",""],"metadata":{"":"x"},
			  "external":{"aws":{"customerAWSAccountId":"12"},"stripe":{}}}`,
			http.StatusBadRequest,
			[]string{"key: ", "name: is required", "email: ", "currency: \"eur\"", "metadata: a key is empty", "subjects[1]: \"a\" is listed twice", "subjects[2]: is empty",
				"external.aws.customerAWSAccountId: ", "external.stripe.customerId: is required"}},
		{"unknown field", "POST", "/api/v1/customers", `{"key":"x","name":"X","currency":"EUR","tenant":"x"}`, http.StatusBadRequest, nil},
		{"key conflict", "POST", "/api/v1/customers", `{"key":"contoso","name":"Other","currency":"EUR"}`, http.StatusConflict, nil},
		{"subject of another customer", "POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fab","contoso-mail"]}`, http.StatusConflict, nil},
		{"unknown customer", "GET", "/api/v1/customers/nobody", "", http.StatusNotFound, nil},
		{"put unknown customer", "PUT", "/api/v1/customers/nobody", contosoBody, http.StatusNotFound, nil},
		{"bad includeDeleted", "GET", "/api/v1/customers?includeDeleted=maybe", "", http.StatusBadRequest, []string{}},
		{"user without key or email", "POST", "/api/v1/customers/contoso/users", `{"name":"Nobody"}`, http.StatusBadRequest, []string{"key: set key or email"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do(tc.method, tc.path, "application/json", tc.body), tc.status)
			if len(tc.want) > 0 && len(p.Errors) != len(tc.want) {
				t.Fatalf("errors %q, want %d matching %q", p.Errors, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(p.Errors[i], w) && !strings.Contains(p.Errors[i], w) {
					t.Errorf("errors[%d] = %q, want it to contain %q", i, p.Errors[i], w)
				}
			}
			if tc.status == http.StatusConflict && !strings.Contains(p.Detail, "contoso") {
				t.Errorf("conflict detail %q does not name what it clashes with", p.Detail)
			}
		})
	}
	var list struct{ Items []apiCustomer }
	h.json("GET", "/api/v1/customers", "", http.StatusOK, &list)
	if len(list.Items) != 1 {
		t.Fatalf("after refused creates, customers = %+v, want only contoso", list.Items)
	}
	// The refused fabrikam did not keep its free subject "fab".
	h.json("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"USD","subjects":["fab"],
		"external":{"azure":{"resourceUri":"/subscriptions/x/resourceGroups/y/providers/Microsoft.Solutions/applications/z"}}}`, http.StatusCreated, nil)

	// PUT replaces, moving a subject; a subject taken by the other is 409.
	h.clock.Advance(time.Hour)
	var upd apiCustomer
	h.json("PUT", "/api/v1/customers/contoso", `{"name":"Contoso Ltd","email":"ap@contoso.example","currency":"EUR","subjects":["contoso-web","contoso-mail"],"metadata":{"tier":"gold"}}`, http.StatusOK, &upd)
	if upd.ID != c.ID || upd.Key != "contoso" || upd.Name != "Contoso Ltd" || !upd.CreatedAt.Equal(apiStart) || !upd.UpdatedAt.Equal(apiStart.Add(time.Hour)) ||
		!slices.Equal(upd.Subjects, []string{"contoso-mail", "contoso-web"}) || upd.Metadata["tier"] != "gold" {
		t.Errorf("updated customer: %+v", upd)
	}
	p := problemOf(t, h.do("PUT", "/api/v1/customers/fabrikam", "application/json", `{"name":"F","currency":"USD","subjects":["contoso-web"]}`), http.StatusConflict)
	if !strings.Contains(p.Detail, `subject "contoso-web" belongs to customer "contoso"`) {
		t.Errorf("conflict detail %q", p.Detail)
	}

	// Users.
	h.json("POST", "/api/v1/customers/contoso/users", `{"key":"alice","email":"alice@contoso.example","name":"Alice"}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/customers/contoso/users", `{"email":"bob@contoso.example"}`, http.StatusCreated, nil)
	problemOf(t, h.do("POST", "/api/v1/customers/contoso/users", "application/json", `{"key":"alice"}`), http.StatusConflict)
	problemOf(t, h.do("POST", "/api/v1/customers/nobody/users", "application/json", `{"key":"alice"}`), http.StatusNotFound)
	var users struct {
		Items []struct{ Key, Email, CustomerID string }
	}
	h.json("GET", "/api/v1/customers/"+c.ID+"/users", "", http.StatusOK, &users)
	if len(users.Items) != 2 || users.Items[0].Key != "alice" || users.Items[1].Email != "bob@contoso.example" || users.Items[0].CustomerID != c.ID {
		t.Errorf("users: %+v", users.Items)
	}

	// DELETE keeps the history and frees key and subjects.
	h.expect(h.do("DELETE", "/api/v1/customers/contoso", "", ""), http.StatusNoContent, "delete")
	h.expect(h.do("DELETE", "/api/v1/customers/"+c.ID, "", ""), http.StatusNoContent, "delete again")
	var gone apiCustomer
	h.json("GET", "/api/v1/customers/"+c.ID, "", http.StatusOK, &gone)
	if gone.DeletedAt == nil || !slices.Equal(gone.Subjects, []string{"contoso-mail", "contoso-web"}) {
		t.Errorf("deleted customer: %+v", gone)
	}
	problemOf(t, h.do("PUT", "/api/v1/customers/"+c.ID, "application/json", contosoBody), http.StatusConflict)
	problemOf(t, h.do("POST", "/api/v1/customers/"+c.ID+"/users", "application/json", `{"key":"carol"}`), http.StatusConflict)
	h.json("GET", "/api/v1/customers", "", http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].Key != "fabrikam" {
		t.Errorf("live customers after delete: %+v", list.Items)
	}
	h.json("GET", "/api/v1/customers?includeDeleted=true", "", http.StatusOK, &list)
	if len(list.Items) != 2 {
		t.Errorf("all customers after delete: %+v", list.Items)
	}
	var again apiCustomer
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, &again)
	if again.ID == c.ID {
		t.Errorf("a re-created customer reuses the deleted one's id")
	}
	var byKey apiCustomer
	h.json("GET", "/api/v1/customers/contoso", "", http.StatusOK, &byKey)
	if byKey.ID != again.ID {
		t.Errorf("GET by key returned %s, want the live customer %s", byKey.ID, again.ID)
	}
}

func TestPlansAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{targets: []report.Target{{Name: "azure", Type: report.TypeAzure, Sender: &refusingTarget{got: map[string]string{}}}}})
	problemOf(t, h.do("POST", "/api/v1/plans", "application/json", mailProBody), http.StatusBadRequest) // no meter yet
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT","groupBy":{"kind":"$.kind"}}`)

	var v1 apiPlan
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, &v1)
	if v1.Key != "mail-pro" || v1.Version != 1 || v1.Status != "draft" || v1.Cadence != "P1M" || v1.BaseFee != "10.00" ||
		len(v1.Charges) != 1 || v1.Charges[0].Included != "1000" || v1.Charges[0].Pricing.Model != "package" ||
		v1.Charges[0].Pricing.PackageSize != "1000" || v1.Charges[0].Pricing.UnitPrice != "5.00" {
		t.Fatalf("created plan: %+v", v1)
	}
	problemOf(t, h.do("POST", "/api/v1/plans", "application/json", mailProBody), http.StatusConflict)

	tests := []struct {
		name string
		body string
		want []string
	}{
		{"tiers", `{"key":"t","name":"T","currency":"EUR","cadence":"P1M","charges":[{"key":"e","meter":"emails",
			"pricing":{"model":"graduated","tiers":[{"upTo":"1000","unitPrice":"0.01"},{"upTo":"500","unitPrice":"-1"},{"upTo":null,"unitPrice":"0.005","flatPrice":"0"}]}}]}`,
			[]string{"charges[0].pricing.tiers[1].upTo: 500 is not above", "charges[0].pricing.tiers[1].unitPrice: -1 is negative"}},
		{"plan fields", `{"key":"","name":"N","currency":"XXX","cadence":"P1W","baseFee":"-1"}`,
			[]string{"key: is required", "currency: \"XXX\"", "cadence: \"P1W\" is not supported", "baseFee: -1 is negative"}},
		{"charges", `{"key":"c","name":"C","currency":"EUR","cadence":"P1Y","charges":[
			{"key":"e","meter":"emails","included":"-5","pricing":{"model":"package","unitPrice":"1"}},
			{"key":"e","meter":"sms","filterGroupBy":{"x":"y"},"pricing":{"model":"flat"},
			 "reporting":[{"target":"gcp","dimension":""}]},
			{"key":"f","meter":"emails","filterGroupBy":{"region":"eu"},"pricing":{"model":"per_unit","unitPrice":"1"}}]}`,
			[]string{
				"charges[0].included: -5 is negative", "charges[0].pricing.packageSize: must be positive",
				`charges[1].key: "e" is also the key of charges[0]`, `charges[1].pricing.model: "flat" is not one of`,
				"charges[1].reporting[0].dimension: is required", `charges[1].reporting[0].target: "gcp" is not a configured reporting target`,
				`charges[1].meter: there is no meter "sms"`, `charges[2].filterGroupBy.region: meter "emails" has no groupBy "region"`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/plans", "application/json", tc.body), http.StatusBadRequest)
			if p.Title != "Invalid plan" || len(p.Errors) != len(tc.want) {
				t.Fatalf("problem %q %q, want %d errors like %q", p.Title, p.Errors, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(p.Errors[i], w) {
					t.Errorf("errors[%d] = %q, want prefix %q", i, p.Errors[i], w)
				}
			}
		})
	}

	// A draft is edited in place.
	h.clock.Advance(time.Minute)
	edited := strings.Replace(mailProBody, `"Mail Pro"`, `"Mail Pro (draft 2)"`, 1)
	var d apiPlan
	h.json("PUT", "/api/v1/plans/mail-pro", edited, http.StatusOK, &d)
	if d.Version != 1 || d.Status != "draft" || d.Name != "Mail Pro (draft 2)" || d.ID != v1.ID {
		t.Errorf("edited draft: %+v", d)
	}
	p := problemOf(t, h.do("PUT", "/api/v1/plans/mail-pro", "application/json", strings.Replace(mailProBody, `"mail-pro"`, `"mail-max"`, 1)), http.StatusBadRequest)
	if !strings.HasPrefix(p.Errors[0], "key: ") {
		t.Errorf("changing the key: %q", p.Errors)
	}

	// Publishing makes version 1 immutable; PUT then makes version 2.
	h.clock.Advance(time.Minute)
	var pub apiPlan
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, &pub)
	if pub.Status != "published" || pub.PublishedAt == nil || !pub.PublishedAt.Equal(apiStart.Add(2*time.Minute)) {
		t.Errorf("published: %+v", pub)
	}
	h.json("POST", "/api/v1/plans/"+v1.ID+"/publish", "", http.StatusOK, &pub)
	if !pub.PublishedAt.Equal(apiStart.Add(2 * time.Minute)) {
		t.Errorf("publishing again changed publishedAt to %v", pub.PublishedAt)
	}
	var v2 apiPlan
	h.json("PUT", "/api/v1/plans/mail-pro", strings.Replace(mailProBody, `"10.00"`, `"12.50"`, 1), http.StatusCreated, &v2)
	if v2.Version != 2 || v2.Status != "draft" || v2.BaseFee != "12.50" || v2.ID != v1.ID || v2.PublishedAt != nil {
		t.Errorf("version 2: %+v", v2)
	}
	var got apiPlan
	h.json("GET", "/api/v1/plans/mail-pro", "", http.StatusOK, &got)
	if got.Version != 2 || got.BaseFee != "12.50" {
		t.Errorf("latest: %+v", got)
	}
	h.json("GET", "/api/v1/plans/mail-pro?version=1", "", http.StatusOK, &got)
	if got.Version != 1 || got.BaseFee != "10.00" || got.Status != "published" || got.Name != "Mail Pro (draft 2)" {
		t.Errorf("version 1 after version 2: %+v", got)
	}
	problemOf(t, h.do("GET", "/api/v1/plans/mail-pro?version=3", "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/plans/mail-pro?version=0", "", ""), http.StatusBadRequest)
	problemOf(t, h.do("GET", "/api/v1/plans/nope", "", ""), http.StatusNotFound)

	// Graduated tiers as in the sketch.
	h.json("POST", "/api/v1/plans", `{"key":"mail-grad","name":"Mail Graduated","currency":"EUR","cadence":"P1Y","charges":[{"key":"emails","meter":"emails","included":"unlimited","filterGroupBy":{"kind":"bulk"},
		"pricing":{"model":"graduated","tiers":[{"upTo":"1000","unitPrice":"0.01"},{"upTo":null,"unitPrice":"0.005","flatPrice":"0"}]},
		"reporting":[{"target":"azure","dimension":"emails"}]}]}`, http.StatusCreated, &got)
	if c := got.Charges[0]; c.Included != "unlimited" || len(c.Pricing.Tiers) != 2 || c.Pricing.Tiers[1].UpTo != nil || *c.Pricing.Tiers[0].UpTo != "1000" {
		t.Errorf("graduated plan: %+v", got)
	}
	var list struct{ Items []apiPlan }
	h.json("GET", "/api/v1/plans", "", http.StatusOK, &list)
	if len(list.Items) != 2 || list.Items[0].Key != "mail-grad" || list.Items[1].Version != 2 {
		t.Errorf("plans: %+v", list.Items)
	}
}

// TestBillingListsShape checks that every list endpoint of the billing API
// answers the same shape, {"items":[…]}, with an empty array (never null)
// when there is nothing to list.
func TestBillingListsShape(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, nil)
	lists := []string{
		"/api/v1/customers", "/api/v1/customers?includeDeleted=true", "/api/v1/customers/contoso/users",
		"/api/v1/plans", "/api/v1/subscriptions", "/api/v1/subscriptions?customer=contoso",
		"/api/v1/invoices", "/api/v1/invoices?customer=contoso",
	}
	shape := func(path string) []any {
		t.Helper()
		r := h.do("GET", path, "", "")
		h.expect(r, http.StatusOK, "GET "+path)
		var body map[string]any
		decodeInto(t, r, &body)
		items, ok := body["items"].([]any)
		if len(body) != 1 || !ok {
			t.Errorf("GET %s: %s, want {\"items\":[…]}", path, r.Body)
		}
		return items
	}
	for _, path := range lists[2:] { // all but the customer lists are empty
		if items := shape(path); len(items) != 0 {
			t.Errorf("GET %s: %d items, want none", path, len(items))
		}
	}
	h.json("POST", "/api/v1/customers/contoso/users", `{"key":"alice"}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro"}`, http.StatusCreated, nil)
	for _, path := range lists {
		if items := shape(path); len(items) != 1 {
			t.Errorf("GET %s: %d items, want 1", path, len(items))
		}
	}
}
