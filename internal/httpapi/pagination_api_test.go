package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// apiPage is a page of a list: its items' ids (or keys) and the cursor.
type apiPage struct {
	Items     []map[string]any `json:"items"`
	NextAfter string           `json:"nextAfter"`
}

// page reads one page of path (which may hold a query) with limit and
// after.
func (h *apiHarness) page(path string, limit int, after string) apiPage {
	h.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	r := h.do("GET", path+sep+q.Encode(), "", "")
	h.expect(r, http.StatusOK, "GET "+path)
	var p apiPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		h.t.Fatalf("decode %s: %v", r, err)
	}
	if p.Items == nil {
		h.t.Fatalf("GET %s: items is not an array: %s", path, r.Body)
	}
	return p
}

// walk pages through path limit items at a time and returns the field of
// every item, in order, and how many pages it took.
func (h *apiHarness) walk(path, field string, limit int) ([]string, int) {
	h.t.Helper()
	var out []string
	after := ""
	for pages := 1; ; pages++ {
		p := h.page(path, limit, after)
		if len(p.Items) > limit {
			h.t.Fatalf("GET %s: %d items on a page of %d", path, len(p.Items), limit)
		}
		for _, it := range p.Items {
			out = append(out, fmt.Sprint(it[field]))
		}
		if p.NextAfter == "" {
			return out, pages
		}
		if len(p.Items) == 0 {
			h.t.Fatalf("GET %s: an empty page with a next page", path)
		}
		after = p.NextAfter
	}
}

func TestPaginationCustomers(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	var want []string
	for i := range 250 {
		key := fmt.Sprintf("c-%03d", i)
		h.json("POST", "/api/v1/customers", fmt.Sprintf(`{"key":%q,"name":"C","currency":"EUR"}`, key), http.StatusCreated, nil)
		want = append(want, key)
	}

	// 250 customers, 100 a page: 3 pages, by key, none twice, none missing.
	got, pages := h.walk("/api/v1/customers", "key", 100)
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("pages %d, keys %v; want 3 pages of %v", pages, got, want)
	}
	// Without a limit a page holds 100.
	if p := h.page("/api/v1/customers", 0, ""); len(p.Items) != 100 || p.NextAfter == "" {
		t.Errorf("default page: %d items, nextAfter %q", len(p.Items), p.NextAfter)
	}
	// A last page that is exactly full has no next page.
	if p := h.page("/api/v1/customers", 250, ""); len(p.Items) != 250 || p.NextAfter != "" {
		t.Errorf("page of 250: %d items, nextAfter %q", len(p.Items), p.NextAfter)
	}

	// Customers created between two pages: one before the cursor is not
	// seen (it sorts before what was read), one after it is, once; none
	// of the others repeats or goes missing.
	first := h.page("/api/v1/customers", 100, "")
	h.json("POST", "/api/v1/customers", `{"key":"a-early","name":"A","currency":"EUR"}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/customers", `{"key":"c-150a","name":"A","currency":"EUR"}`, http.StatusCreated, nil)
	var rest []string
	for after := first.NextAfter; after != ""; {
		p := h.page("/api/v1/customers", 100, after)
		for _, it := range p.Items {
			rest = append(rest, it["key"].(string))
		}
		after = p.NextAfter
	}
	wantRest := slices.Insert(slices.Clone(want[100:]), 51, "c-150a")
	if !slices.Equal(rest, wantRest) {
		t.Errorf("after an insert between pages: %v, want %v", rest, wantRest)
	}

	// The filter holds across pages: deleted customers only with
	// includeDeleted.
	for _, k := range []string{"c-010", "c-120", "c-240"} {
		h.expect(h.do("DELETE", "/api/v1/customers/"+k, "", ""), http.StatusNoContent, "delete "+k)
	}
	live, _ := h.walk("/api/v1/customers", "key", 50)
	all, _ := h.walk("/api/v1/customers?includeDeleted=true", "key", 50)
	if len(live) != 249 || len(all) != 252 || slices.Contains(live, "c-120") || !slices.Contains(all, "c-120") {
		t.Errorf("live %d customers (c-120 in: %v), all %d", len(live), slices.Contains(live, "c-120"), len(all))
	}

	// Bad parameters name themselves.
	for _, q := range []string{"after=nonsense", "after=" + url.QueryEscape(h.page("/api/v1/plans", 0, "").NextAfter+"x"), "limit=0", "limit=1001", "limit=ten"} {
		p := problemOf(t, h.do("GET", "/api/v1/customers?"+q, "", ""), http.StatusBadRequest)
		name, _, _ := strings.Cut(q, "=")
		if !strings.Contains(p.Detail, name+":") {
			t.Errorf("?%s: detail %q does not name %s", q, p.Detail, name)
		}
	}
}

func TestPaginationEveryList(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT"}`)
	for i := range 4 {
		h.json("POST", "/api/v1/plans", fmt.Sprintf(`{"key":"plan-%d","name":"P","currency":"EUR","cadence":"P1M","baseFee":"1",
			"charges":[{"key":"emails","meter":"emails","pricing":{"model":"per_unit","unitPrice":"1"}}]}`, i), http.StatusCreated, nil)
		h.json("POST", fmt.Sprintf("/api/v1/plans/plan-%d/publish", i), "", http.StatusOK, nil)
	}
	// Customers created in the past, each subscribed to several plans
	// from months back: many invoices (finalized periods and drafts).
	past := apiStart.AddDate(0, -3, 0)
	for i := range 3 {
		h.json("POST", "/api/v1/customers", fmt.Sprintf(`{"key":"cust-%d","name":"C","currency":"EUR","createdAt":%q}`, i, past.Format(time.RFC3339)), http.StatusCreated, nil)
		for j := range 3 {
			h.json("POST", "/api/v1/subscriptions", fmt.Sprintf(`{"customer":"cust-%d","plan":"plan-%d","start":%q}`, i, j, past.Add(time.Duration(i*3+j)*time.Hour).Format(time.RFC3339)), http.StatusCreated, nil)
		}
		for j := range 3 {
			h.json("POST", fmt.Sprintf("/api/v1/customers/cust-%d/users", i), fmt.Sprintf(`{"key":"u-%d"}`, j), http.StatusCreated, nil)
		}
		h.json("POST", "/api/v1/keys", fmt.Sprintf(`{"scope":"read","customer":"cust-%d"}`, i), http.StatusCreated, nil)
	}
	var sub struct{ ID string }
	h.json("GET", "/api/v1/subscriptions?limit=1", "", http.StatusOK, &struct{ Items []*struct{ ID string } }{[]*struct{ ID string }{&sub}})
	subID := sub.ID
	for _, s := range []string{"sub-a", "sub-b", "sub-c"} {
		h.json("POST", "/api/v1/cancellation-rules", fmt.Sprintf(`{"subjects":[%q],"reason":"test"}`, s), http.StatusCreated, nil)
	}

	// Every list read a page of 2 at a time equals the list read whole,
	// filters included.
	for _, tc := range []struct {
		path, field string
		n           int // items in all
	}{
		{"/api/v1/plans", "key", 4},
		{"/api/v1/subscriptions", "id", 9},
		{"/api/v1/subscriptions?customer=cust-1", "id", 3},
		{"/api/v1/subscriptions?plan=plan-2", "id", 3},
		{"/api/v1/invoices", "id", 0},
		{"/api/v1/invoices?customer=cust-2", "id", 0},
		{"/api/v1/invoices?subscription=SUB", "id", 0},
		{"/api/v1/customers/cust-0/users", "key", 3},
		{"/api/v1/keys", "id", 3},
		{"/api/v1/cancellation-rules", "id", 3},
		{"/api/v1/credit-notes", "id", 0},
		{"/api/v1/audit", "seq", 0},
	} {
		tc.path = strings.Replace(tc.path, "SUB", subID, 1)
		t.Run(tc.path, func(t *testing.T) {
			whole, pages := h.walk(tc.path, tc.field, 1000)
			if pages != 1 || (tc.n > 0 && len(whole) != tc.n) {
				t.Fatalf("whole list: %d pages, %d items, want 1 page of %d", pages, len(whole), tc.n)
			}
			paged, pages := h.walk(tc.path, tc.field, 2)
			if !slices.Equal(paged, whole) {
				t.Errorf("paged by 2: %v, want %v", paged, whole)
			}
			if strings.HasPrefix(tc.path, "/api/v1/invoices") && len(whole) < 3 {
				t.Errorf("%d invoices: too few to page", len(whole))
			}
			if want := max(1, (len(whole)+1)/2); pages != want {
				t.Errorf("%d pages of 2 for %d items, want %d", pages, len(whole), want)
			}
			seen := map[string]bool{}
			for _, id := range paged {
				if seen[id] {
					t.Errorf("%s listed twice", id)
				}
				seen[id] = true
			}
		})
	}

	// A cursor of one list is refused by another, naming after.
	next := h.page("/api/v1/plans", 2, "").NextAfter
	p := problemOf(t, h.do("GET", "/api/v1/subscriptions?after="+url.QueryEscape(next), "", ""), http.StatusBadRequest)
	if !strings.Contains(p.Detail, "after:") {
		t.Errorf("a plans cursor on subscriptions: %q", p.Detail)
	}
}

// TestPaginationPortalTokensAndBoundLists: portal tokens page like every
// list, and a credential bound to a customer pages through its own
// customer's items only.
func TestPaginationPortalTokensAndBoundLists(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	for range 4 {
		h.portalToken(`{"customer":"contoso","ttl":"1h"}`)
	}
	walk := func(cred, path string, limit int) []string {
		t.Helper()
		var ids []string
		after := ""
		for {
			q := fmt.Sprintf("limit=%d", limit)
			if after != "" {
				q += "&after=" + url.QueryEscape(after)
			}
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			r := h.call(cred, "GET", path+sep+q, "")
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %s", path, r)
			}
			var p struct {
				Items     []struct{ ID, Customer, CustomerID string }
				NextAfter string
			}
			if err := json.Unmarshal([]byte(r.body), &p); err != nil {
				t.Fatalf("decode %s: %v", r.body, err)
			}
			for _, it := range p.Items {
				ids = append(ids, it.ID+" "+it.Customer+it.CustomerID)
			}
			if p.NextAfter == "" {
				return ids
			}
			after = p.NextAfter
		}
	}
	whole := walk(testAdminToken, "/api/v1/portal/tokens?customer=contoso", 1000)
	if paged := walk(testAdminToken, "/api/v1/portal/tokens?customer=contoso", 2); len(whole) < 5 || !slices.Equal(paged, whole) {
		t.Errorf("portal tokens by 2: %v, whole %v", paged, whole)
	}
	for _, path := range []string{"/api/v1/customers", "/api/v1/subscriptions", "/api/v1/invoices", "/api/v1/credit-notes"} {
		got := walk(w.creds["readA"], path, 1)
		if len(got) == 0 {
			t.Errorf("%s as contoso's key: nothing", path)
		}
		for _, it := range got {
			if !strings.Contains(it, w.aID) {
				t.Errorf("%s as contoso's key lists %s", path, it)
			}
		}
	}
}
