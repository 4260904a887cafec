package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// testCreditNotes: a credit note is issued once per id, numbered from one
// gapless sequence in the order of issue, found by id or number and
// listed by subscription, customer and the invoices it credits.
func testCreditNotes(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	sub := subscriptionFixture(t, s)
	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	s1, s2 := sub("s-1", start), sub("s-2", start)
	s2.PlanID, s2.PlanKey = "p-2", "mail-team"
	for _, x := range []billing.Subscription{s1, s2} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	note := func(sb billing.Subscription, seq int, credits ...string) billing.CreditNote {
		t.Helper()
		var cs []billing.Adjustment
		for i, c := range credits {
			ps := start.AddDate(0, i, 0)
			cs = append(cs, billing.Adjustment{
				Invoice: billing.InvoiceID(sb.ID, ps), PeriodStart: ps, PeriodEnd: ps.AddDate(0, 1, 0), ChargeKey: "emails", Meter: "emails",
				Quantity: decimal.RequireFromString("-12000"), Amount: decimal.RequireFromString(c).Neg(),
			})
		}
		cn, ok, err := billing.BuildCreditNote(sb, "EUR", seq, start.AddDate(0, 2, 0), cs)
		if err != nil || !ok {
			t.Fatalf("BuildCreditNote: %v %v", ok, err)
		}
		return cn
	}
	a1 := note(s1, 1, "60.00")
	got, created, err := s.IssueCreditNote(ctx, a1)
	if err != nil || !created {
		t.Fatalf("IssueCreditNote: created %v, %v", created, err)
	}
	want := a1
	want.Number = "CN-000001"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IssueCreditNote returned (-want +got):\n%s", diff)
	}
	// The same note computed again (another run, other numbers) is not
	// issued twice and takes no number.
	again := note(s1, 1, "5.00")
	if got, created, err := s.IssueCreditNote(ctx, again); err != nil || created || got.Number != "CN-000001" || got.Total.StringFixed(2) != "60.00" {
		t.Errorf("IssueCreditNote again = %s %s, created %v, %v; want the stored CN-000001 of 60.00", got.Number, got.Total, created, err)
	}
	if _, _, err := s.IssueCreditNote(ctx, note(sub("s-9", start), 1, "1.00")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("IssueCreditNote for an unknown subscription: got %v, want ErrNotFound", err)
	}
	// Concurrent issuers of the same notes: each stored once, numbers
	// without gaps.
	b1, a2 := note(s2, 1, "10.00"), note(s1, 2, "1.00", "2.50")
	var wg sync.WaitGroup
	createdCount := make([]int, 2)
	var mu sync.Mutex
	for range 4 {
		for i, cn := range []billing.CreditNote{b1, a2} {
			wg.Go(func() {
				_, created, err := s.IssueCreditNote(ctx, cn)
				if err != nil {
					t.Errorf("IssueCreditNote(%s): %v", cn.ID, err)
				}
				if created {
					mu.Lock()
					createdCount[i]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if diff := cmp.Diff([]int{1, 1}, createdCount); diff != "" {
		t.Errorf("concurrent issues created (-want +got):\n%s", diff)
	}

	check := func() {
		t.Helper()
		byNumber, err := s.GetCreditNote(ctx, "CN-000001")
		if err != nil || byNumber.ID != a1.ID {
			t.Errorf("GetCreditNote(CN-000001) = %s, %v; want %s", byNumber.ID, err, a1.ID)
		}
		one, err := s.GetCreditNote(ctx, a2.ID)
		if err != nil {
			t.Fatalf("GetCreditNote: %v", err)
		}
		if one.Total.StringFixed(2) != "3.50" || len(one.Lines) != 2 || one.Number == "" {
			t.Errorf("GetCreditNote(%s) = %+v", a2.ID, one)
		}
		for _, bad := range []string{"cn_nope_1", "CN-000009", "CN-1", ""} {
			if _, err := s.GetCreditNote(ctx, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetCreditNote(%q): got %v, want ErrNotFound", bad, err)
			}
		}
		list := func(f store.CreditNoteFilter) []string {
			t.Helper()
			l, err := s.ListCreditNotes(ctx, f)
			if err != nil {
				t.Fatalf("ListCreditNotes(%+v): %v", f, err)
			}
			out := []string{}
			for i, cn := range l {
				out = append(out, cn.ID)
				if i > 0 && cn.Number <= l[i-1].Number {
					t.Errorf("ListCreditNotes(%+v): %s after %s", f, cn.Number, l[i-1].Number)
				}
			}
			return out
		}
		all, err := s.ListCreditNotes(ctx, store.CreditNoteFilter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("ListCreditNotes = %d, %v", len(all), err)
		}
		var numbers []string
		for _, cn := range all {
			numbers = append(numbers, cn.Number)
		}
		if diff := cmp.Diff([]string{"CN-000001", "CN-000002", "CN-000003"}, numbers); diff != "" {
			t.Errorf("numbers (-want +got):\n%s", diff)
		}
		julyS1 := billing.InvoiceID("s-1", start.AddDate(0, 1, 0))
		for _, tc := range []struct {
			f    store.CreditNoteFilter
			want []string
		}{
			{store.CreditNoteFilter{SubscriptionID: "s-1"}, []string{a1.ID, a2.ID}},
			{store.CreditNoteFilter{SubscriptionIDs: []string{"s-2", "s-9"}}, []string{b1.ID}},
			{store.CreditNoteFilter{SubscriptionIDs: []string{}}, []string{}},
			{store.CreditNoteFilter{CustomerID: "c-1"}, []string{all[0].ID, all[1].ID, all[2].ID}},
			{store.CreditNoteFilter{CustomerID: "c-2"}, []string{}},
			{store.CreditNoteFilter{InvoiceID: billing.InvoiceID("s-1", start)}, []string{a1.ID, a2.ID}},
			{store.CreditNoteFilter{InvoiceID: julyS1}, []string{a2.ID}},
			{store.CreditNoteFilter{InvoiceID: julyS1, SubscriptionID: "s-2"}, []string{}},
		} {
			if diff := cmp.Diff(tc.want, list(tc.f)); diff != "" {
				t.Errorf("ListCreditNotes(%+v) (-want +got):\n%s", tc.f, diff)
			}
		}
	}
	check()
	if b.Reopen != nil {
		e.reopen(t)
		s = e.s
		check()
	}
}
