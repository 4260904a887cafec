package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

const mergePatch = "application/merge-patch+json"

func TestPatchCustomer(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	r := h.do("POST", "/api/v1/customers", "application/json",
		`{"key":"contoso","name":"Contoso","email":"ap@contoso.example","currency":"EUR","metadata":{"tier":"gold","region":"eu"},"subjects":["contoso-mail"]}`)
	h.expect(r, http.StatusCreated, "create")
	if tag := r.Header.Get("ETag"); tag != `"1"` {
		t.Errorf("ETag of a new customer: %q, want \"1\"", tag)
	}

	// A field left out stays: the email is kept.
	var c apiCustomer
	r = h.do("PATCH", "/api/v1/customers/contoso", mergePatch, `{"name":"Contoso Ltd","metadata":{"region":null,"size":"l"}}`)
	h.expect(r, http.StatusOK, "patch name")
	decodeInto(t, r, &c)
	if c.Name != "Contoso Ltd" || c.Email != "ap@contoso.example" || c.Currency != "EUR" || !slices.Equal(c.Subjects, []string{"contoso-mail"}) ||
		len(c.Metadata) != 2 || c.Metadata["tier"] != "gold" || c.Metadata["size"] != "l" {
		t.Errorf("after patching the name and metadata: %+v", c)
	}
	if tag := r.Header.Get("ETag"); tag != `"2"` {
		t.Errorf("ETag after a patch: %q, want \"2\"", tag)
	}
	// null clears an optional field (application/json is accepted too).
	// (Each response is decoded into a new value: a member left out of
	// it must not keep an earlier one.)
	var cleared, read apiCustomer
	h.json("PATCH", "/api/v1/customers/contoso", `{"email":null}`, http.StatusOK, &cleared)
	if cleared.Email != "" || cleared.Name != "Contoso Ltd" {
		t.Errorf("after email null: %+v", cleared)
	}
	h.json("GET", "/api/v1/customers/contoso", "", http.StatusOK, &read)
	if read.Email != "" || read.Name != "Contoso Ltd" || read.Metadata["tier"] != "gold" {
		t.Errorf("read back after email null: %+v", read)
	}

	// If-Match: a stale tag is 412 with the current one, and changes
	// nothing; the current one is accepted.
	r = h.do("GET", "/api/v1/customers/contoso", "", "")
	current := r.Header.Get("ETag")
	if current != `"3"` {
		t.Fatalf("ETag: %q, want \"3\"", current)
	}
	r = h.do("PATCH", "/api/v1/customers/contoso", mergePatch, `{"name":"Stale"}`, "If-Match", `"2"`)
	p := problemOf(t, r, http.StatusPreconditionFailed)
	if r.Header.Get("ETag") != current || !strings.Contains(p.Detail, "version 3") {
		t.Errorf("stale If-Match: ETag %q, detail %q", r.Header.Get("ETag"), p.Detail)
	}
	r = h.do("PUT", "/api/v1/customers/contoso", "application/json", `{"name":"Stale","currency":"EUR"}`, "If-Match", `"2"`)
	problemOf(t, r, http.StatusPreconditionFailed)
	var after apiCustomer
	h.json("GET", "/api/v1/customers/contoso", "", http.StatusOK, &after)
	if after.Name != "Contoso Ltd" {
		t.Errorf("a refused write changed the customer: %+v", after)
	}
	r = h.do("PATCH", "/api/v1/customers/contoso", mergePatch, `{"email":"billing@contoso.example"}`, "If-Match", `"9", `+current)
	h.expect(r, http.StatusOK, "patch with the current ETag")
	c = apiCustomer{}
	decodeInto(t, r, &c)
	if c.Email != "billing@contoso.example" || c.Name != "Contoso Ltd" {
		t.Errorf("after a patch with If-Match: %+v", c)
	}

	// A patch is held to the rules of a PUT body.
	for _, tc := range []struct{ name, body, want string }{
		{"unknown member", `{"tenant":"x"}`, `unknown field "tenant"`},
		{"unknown member set to null", `{"tenant":null}`, `unknown field "tenant"`},
		{"near miss", `{"Email":null}`, `did you mean "email"`},
		{"invalid result", `{"currency":"eur"}`, "currency"},
		{"required member removed", `{"name":null}`, "name: is required"},
		{"not an object", `["name"]`, "merge patch is a JSON object"},
		{"bad JSON", `{"name":`, "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("PATCH", "/api/v1/customers/contoso", mergePatch, tc.body), http.StatusBadRequest)
			if !strings.Contains(p.Detail+strings.Join(p.Errors, "; "), tc.want) {
				t.Errorf("detail %q, errors %q; want %q", p.Detail, p.Errors, tc.want)
			}
		})
	}
	problemOf(t, h.do("PATCH", "/api/v1/customers/nobody", mergePatch, `{"name":"X"}`), http.StatusNotFound)
	problemOf(t, h.do("PATCH", "/api/v1/customers/contoso", "text/plain", `{"name":"X"}`), http.StatusUnsupportedMediaType)
	h.expect(h.do("DELETE", "/api/v1/customers/contoso", "", ""), http.StatusNoContent, "delete")
	problemOf(t, h.do("PATCH", "/api/v1/customers/"+c.ID, mergePatch, `{"name":"X"}`), http.StatusConflict)
}

func TestPatchPlan(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT"}`)
	h.json("POST", "/api/v1/plans", `{"key":"mail-pro","name":"Mail Pro","description":"E-mail","currency":"EUR","cadence":"P1M","baseFee":"10.00",
  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`, http.StatusCreated, nil)

	r := h.do("GET", "/api/v1/plans/mail-pro", "", "")
	tag := r.Header.Get("ETag")
	if tag == "" {
		t.Fatal("GET of a plan has no ETag")
	}
	// The draft: a member left out stays, null clears the description.
	var p apiPlan
	r = h.do("PATCH", "/api/v1/plans/mail-pro", mergePatch, `{"baseFee":"12.50","description":null}`, "If-Match", tag)
	h.expect(r, http.StatusOK, "patch the draft")
	decodeInto(t, r, &p)
	if p.Version != 1 || p.Status != "draft" || p.BaseFee != "12.50" || p.Name != "Mail Pro" || len(p.Charges) != 1 || p.Charges[0].Included != "1000" {
		t.Errorf("patched draft: %+v", p)
	}
	if strings.Contains(string(r.Body), `"description"`) {
		t.Errorf("description not cleared: %s", r.Body)
	}
	next := r.Header.Get("ETag")
	if next == tag {
		t.Errorf("the ETag did not change with the draft")
	}
	// The old tag is stale now.
	problemOf(t, h.do("PATCH", "/api/v1/plans/mail-pro", mergePatch, `{"name":"Stale"}`, "If-Match", tag), http.StatusPreconditionFailed)
	problemOf(t, h.do("PUT", "/api/v1/plans/mail-pro", "application/json", mailProBody, "If-Match", tag), http.StatusPreconditionFailed)

	// A published version never changes: a patch makes the next draft.
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	r = h.do("PATCH", "/api/v1/plans/mail-pro", mergePatch, `{"name":"Mail Pro 2"}`)
	h.expect(r, http.StatusCreated, "patch a published plan")
	p = apiPlan{}
	decodeInto(t, r, &p)
	if p.Version != 2 || p.Status != "draft" || p.Name != "Mail Pro 2" || p.BaseFee != "12.50" {
		t.Errorf("next draft: %+v", p)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/plans/mail-pro?version=2" {
		t.Errorf("Location %q", loc)
	}
	var v1 apiPlan
	h.json("GET", "/api/v1/plans/mail-pro?version=1", "", http.StatusOK, &v1)
	if v1.Name != "Mail Pro" || v1.Status != "published" {
		t.Errorf("version 1 changed: %+v", v1)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"key":"other"}`, "key: a plan's key can't change"},
		{`{"charges":[{"key":"x","meter":"nope","pricing":{"model":"per_unit","unitPrice":"1"}}]}`, `there is no meter "nope"`},
		{`{"bogus":1}`, `unknown field "bogus"`},
	} {
		p := problemOf(t, h.do("PATCH", "/api/v1/plans/mail-pro", mergePatch, tc.body), http.StatusBadRequest)
		if !strings.Contains(p.Detail+strings.Join(p.Errors, "; "), tc.want) {
			t.Errorf("%s: detail %q, errors %q; want %q", tc.body, p.Detail, p.Errors, tc.want)
		}
	}
	problemOf(t, h.do("PATCH", "/api/v1/plans/nope", mergePatch, `{"name":"X"}`), http.StatusNotFound)
}

// TestPatchCustomerConcurrent: patches of different members made at once
// all land (none is applied over a write it did not see), and of patches
// based on the same ETag exactly one is made.
func TestPatchCustomerConcurrent(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR"}`, http.StatusCreated, nil)
	const n = 6
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r := h.do("PATCH", "/api/v1/customers/contoso", mergePatch, fmt.Sprintf(`{"metadata":{"k%d":"v"}}`, i))
				if r.Status != http.StatusConflict { // too many collisions in a row: retry
					statuses <- r.Status
					return
				}
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusOK {
			t.Errorf("a concurrent patch answered %d", st)
		}
	}
	var c apiCustomer
	h.json("GET", "/api/v1/customers/contoso", "", http.StatusOK, &c)
	if len(c.Metadata) != n {
		t.Errorf("after %d concurrent patches metadata is %v: a write was lost", n, c.Metadata)
	}

	tag := h.do("GET", "/api/v1/customers/contoso", "", "").Header.Get("ETag")
	codes := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- h.do("PATCH", "/api/v1/customers/contoso", mergePatch, fmt.Sprintf(`{"name":"N%d"}`, i), "If-Match", tag).Status
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusPreconditionFailed] != n-1 {
		t.Errorf("patches based on one ETag: %v, want one 200 and %d 412", count, n-1)
	}
}
