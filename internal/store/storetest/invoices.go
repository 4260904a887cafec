package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

func testInvoices(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)

	for _, c := range []billing.Customer{
		{ID: "c-1", Key: "contoso", Name: "Contoso", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0},
		{ID: "c-2", Key: "fabrikam", Name: "Fabrikam", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0},
	} {
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("CreateCustomer(%s): %v", c.Key, err)
		}
	}
	plan := billing.Plan{
		ID: "p-1", Key: "mail-pro", Version: 1, Name: "Mail Pro", Currency: "EUR", Cadence: billing.CadenceMonthly,
		BaseFee: decimal.RequireFromString("10.00"), Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0,
		Charges: []billing.PlanCharge{{
			Key: "emails", Meter: "emails", Included: billing.IncludedQuantity(decimal.RequireFromString("1000")),
			Pricing: billing.Pricing{Model: billing.ModelPackage, PackageSize: decimal.RequireFromString("1000"), UnitPrice: decimal.RequireFromString("5.00")},
		}},
	}
	if err := s.CreatePlan(ctx, plan); err != nil {
		t.Fatalf("CreatePlan: %v", err)
	}
	plan, err := s.PublishPlan(ctx, "p-1", 1, bt0)
	if err != nil {
		t.Fatalf("PublishPlan: %v", err)
	}
	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	sub := func(id, customer string) billing.Subscription {
		return billing.Subscription{
			ID: id, CustomerID: customer, PlanID: "p-1", PlanKey: "mail-pro", PlanVersion: 1, Cadence: billing.CadenceMonthly,
			Start: start, BillingAnchor: billing.AnchorAnniversary, TimeZone: "UTC", Status: billing.SubscriptionActive,
			CreatedAt: bt0, UpdatedAt: bt0,
		}
	}
	s1, s2 := sub("s-1", "c-1"), sub("s-2", "c-2")
	for _, x := range []billing.Subscription{s1, s2} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	final := func(sb billing.Subscription, k int, emails string) billing.Invoice {
		t.Helper()
		loc, _ := sb.Location()
		ps, err := billing.Periods(sb.Start, sb.Cadence, sb.BillingAnchor, loc, sb.Start, sb.Start.AddDate(0, k+1, 0))
		if err != nil || len(ps) <= k {
			t.Fatalf("Periods: %v %v", ps, err)
		}
		inv, err := billing.BuildInvoice(sb, plan, ps[k], map[string]decimal.Decimal{"emails": decimal.RequireFromString(emails)}, nil)
		if err != nil {
			t.Fatalf("BuildInvoice: %v", err)
		}
		at := ps[k].End.Add(24 * time.Hour)
		inv.Status, inv.FinalizedAt = billing.InvoiceFinalized, &at
		return inv
	}

	a := final(s1, 0, "12345")
	got, created, err := s.SaveInvoice(ctx, a)
	if err != nil || !created {
		t.Fatalf("SaveInvoice: created %v, %v", created, err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("SaveInvoice returned (-want +got):\n%s", diff)
	}
	// Finalizing the same period again, even with other numbers, keeps the
	// first invoice.
	again := final(s1, 0, "935")
	got, created, err = s.SaveInvoice(ctx, again)
	if err != nil || created {
		t.Fatalf("SaveInvoice again: created %v, %v", created, err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("SaveInvoice again returned (-first +got):\n%s", diff)
	}
	if got.Total.StringFixed(2) != "70.00" {
		t.Errorf("stored total %s, want 70.00", got.Total)
	}
	if _, _, err := s.SaveInvoice(ctx, final(sub("s-9", "c-1"), 0, "1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveInvoice for an unknown subscription: got %v, want ErrNotFound", err)
	}

	b1 := final(s1, 1, "935")
	c1 := final(s2, 0, "0")
	for _, inv := range []billing.Invoice{b1, c1} {
		if _, created, err := s.SaveInvoice(ctx, inv); err != nil || !created {
			t.Fatalf("SaveInvoice(%s): created %v, %v", inv.ID, created, err)
		}
	}
	one, err := s.GetInvoice(ctx, b1.ID)
	if err != nil {
		t.Fatalf("GetInvoice: %v", err)
	}
	if diff := cmp.Diff(b1, one); diff != "" {
		t.Errorf("GetInvoice (-want +got):\n%s", diff)
	}
	if _, err := s.GetInvoice(ctx, "inv_nope_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetInvoice(unknown): got %v, want ErrNotFound", err)
	}
	ids := func(f store.InvoiceFilter) []string {
		t.Helper()
		l, err := s.ListInvoices(ctx, f)
		if err != nil {
			t.Fatalf("ListInvoices(%+v): %v", f, err)
		}
		out := []string{}
		for _, inv := range l {
			out = append(out, inv.ID)
		}
		return out
	}
	for _, tc := range []struct {
		f    store.InvoiceFilter
		want []string
	}{
		{store.InvoiceFilter{}, []string{a.ID, c1.ID, b1.ID}},
		{store.InvoiceFilter{SubscriptionID: "s-1"}, []string{a.ID, b1.ID}},
		{store.InvoiceFilter{CustomerID: "c-2"}, []string{c1.ID}},
		{store.InvoiceFilter{CustomerID: "c-2", SubscriptionID: "s-1"}, []string{}},
	} {
		if diff := cmp.Diff(tc.want, ids(tc.f)); diff != "" {
			t.Errorf("ListInvoices(%+v) (-want +got):\n%s", tc.f, diff)
		}
	}
	if b.Reopen != nil {
		e.reopen(t)
		s = e.s
		if diff := cmp.Diff([]string{a.ID, c1.ID, b1.ID}, ids(store.InvoiceFilter{})); diff != "" {
			t.Errorf("after reopen (-want +got):\n%s", diff)
		}
	}
}
