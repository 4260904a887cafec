package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

func testSubscriptions(t *testing.T, b Backend) {
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
	plan := billing.Plan{ID: "p-1", Key: "mail-pro", Version: 1, Name: "Mail Pro", Currency: "EUR", Cadence: billing.CadenceMonthly, Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0}
	if err := s.CreatePlan(ctx, plan); err != nil {
		t.Fatalf("CreatePlan: %v", err)
	}
	if _, err := s.PublishPlan(ctx, "p-1", 1, bt0); err != nil {
		t.Fatalf("PublishPlan: %v", err)
	}

	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	sub := func(id, customer string, start time.Time) billing.Subscription {
		return billing.Subscription{
			ID: id, CustomerID: customer, PlanID: "p-1", PlanKey: "mail-pro", PlanVersion: 1, Cadence: billing.CadenceMonthly,
			Start: start, BillingAnchor: billing.AnchorAnniversary, TimeZone: "Europe/Berlin", Status: billing.SubscriptionActive,
			CreatedAt: bt0, UpdatedAt: bt0,
		}
	}
	s1 := sub("s-1", "c-1", start)
	s2 := sub("s-2", "c-2", start.Add(-time.Hour))
	s3 := sub("s-3", "c-1", start.AddDate(0, -2, 0))
	for _, x := range []billing.Subscription{s1, s2, s3} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	if err := s.CreateSubscription(ctx, sub("s-1", "c-2", start)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSubscription with a taken id: got %v, want ErrConflict", err)
	}
	if err := s.CreateSubscription(ctx, sub("s-4", "c-9", start)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSubscription for an unknown customer: got %v, want ErrNotFound", err)
	}
	bad := sub("s-4", "c-1", start)
	bad.PlanVersion = 2
	if err := s.CreateSubscription(ctx, bad); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSubscription for an unknown plan version: got %v, want ErrNotFound", err)
	}

	got, err := s.GetSubscription(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSubscription: %v", err)
	}
	if diff := cmp.Diff(s1, got, billingOpts); diff != "" {
		t.Errorf("GetSubscription (-want +got):\n%s", diff)
	}
	if _, err := s.GetSubscription(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSubscription(nope): got %v, want ErrNotFound", err)
	}

	list := func(f store.SubscriptionFilter, want ...string) {
		t.Helper()
		subs, err := s.ListSubscriptions(ctx, f)
		if err != nil {
			t.Fatalf("ListSubscriptions(%+v): %v", f, err)
		}
		var ids []string
		for _, x := range subs {
			ids = append(ids, x.ID)
		}
		if diff := cmp.Diff(want, ids, billingOpts); diff != "" {
			t.Errorf("ListSubscriptions(%+v) ids (-want +got):\n%s", f, diff)
		}
	}
	list(store.SubscriptionFilter{}, "s-3", "s-2", "s-1")
	list(store.SubscriptionFilter{CustomerID: "c-1"}, "s-3", "s-1")
	list(store.SubscriptionFilter{CustomerID: "c-2", PlanID: "p-1"}, "s-2")
	list(store.SubscriptionFilter{CustomerID: "c-9"})

	// Cancelling keeps the subscription and changes only the cancellation.
	at := bt0.Add(time.Hour)
	canceled, err := s1.Cancel(billing.CancelNow, at)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	canceled.CreatedAt = time.Time{} // the store keeps CreatedAt
	if err := s.UpdateSubscription(ctx, canceled); err != nil {
		t.Fatalf("UpdateSubscription: %v", err)
	}
	canceled.CreatedAt = bt0
	got, err = s.GetSubscription(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSubscription after cancel: %v", err)
	}
	if diff := cmp.Diff(canceled, got, billingOpts); diff != "" {
		t.Errorf("canceled subscription (-want +got):\n%s", diff)
	}
	if got.Status != billing.SubscriptionCanceled || got.CancelAt == nil || !got.CancelAt.Equal(at) {
		t.Errorf("canceled subscription: %+v", got)
	}
	moved := got
	moved.PlanVersion = 2
	if err := s.UpdateSubscription(ctx, moved); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateSubscription changing the plan version: got %v, want ErrConflict", err)
	}
	if err := s.UpdateSubscription(ctx, sub("nope", "c-1", start)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSubscription(nope): got %v, want ErrNotFound", err)
	}
	list(store.SubscriptionFilter{CustomerID: "c-1"}, "s-3", "s-1")
}
