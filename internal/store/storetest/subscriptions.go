package storetest

import (
	"errors"
	"fmt"
	"sync"
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
	s2.Version = 7 // ignored: a new subscription is version 1
	s3 := sub("s-3", "c-1", start.AddDate(0, -2, 0))
	ended := start.AddDate(0, -1, 0) // c-1 was on the plan before s-1, not at once
	s3.Status, s3.CancelAt, s3.CanceledAt = billing.SubscriptionCanceled, &ended, &ended
	for _, x := range []billing.Subscription{s1, s2, s3} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	s1.Version, s2.Version, s3.Version = 1, 1, 1
	if err := s.CreateSubscription(ctx, sub("s-1", "c-3", start)); !errors.Is(err, store.ErrConflict) {
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

	for _, want := range []billing.Subscription{s1, s2} {
		got, err := s.GetSubscription(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetSubscription: %v", err)
		}
		if diff := cmp.Diff(want, got, billingOpts); diff != "" {
			t.Errorf("GetSubscription(%s) (-want +got):\n%s", want.ID, diff)
		}
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
	// Pages: a limit, and the subscriptions after the last of a page.
	list(store.SubscriptionFilter{Limit: 2}, "s-3", "s-2")
	list(store.SubscriptionFilter{AfterStart: s2.Start, AfterID: "s-2", Limit: 2}, "s-1")
	list(store.SubscriptionFilter{AfterStart: s3.Start, AfterID: "s-3", CustomerID: "c-1"}, "s-1")
	list(store.SubscriptionFilter{AfterStart: s1.Start, AfterID: "s-1"})
	// Same start, the id decides.
	list(store.SubscriptionFilter{AfterStart: s1.Start, AfterID: "s-0"}, "s-1")

	// Overlaps are refused in the store, against what it holds.
	var ns *billing.NotSubscribableError
	if err := s.CreateSubscription(ctx, sub("s-4", "c-1", start.AddDate(0, 3, 0))); !errors.As(err, &ns) {
		t.Errorf("CreateSubscription overlapping s-1: got %v, want a *billing.NotSubscribableError", err)
	}
	if err := s.CreateSubscription(ctx, sub("s-4", "c-1", start.AddDate(0, -3, 0))); !errors.As(err, &ns) {
		t.Errorf("CreateSubscription starting before s-3, open-ended: got %v, want a *billing.NotSubscribableError", err)
	}
	list(store.SubscriptionFilter{CustomerID: "c-1"}, "s-3", "s-1")

	// Cancelling keeps the subscription and changes only the cancellation.
	at := bt0.Add(time.Hour)
	got, err := s.GetSubscription(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSubscription: %v", err)
	}
	canceled, err := got.Cancel(billing.CancelNow, at)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	canceled.CreatedAt = time.Time{} // the store keeps CreatedAt
	if err := s.UpdateSubscription(ctx, canceled); err != nil {
		t.Fatalf("UpdateSubscription: %v", err)
	}
	canceled.CreatedAt = bt0
	canceled.Version = 2
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
	// A write based on version 1 is stale now: it is refused, and the
	// cancellation stays.
	var stale *store.StaleError
	again, err := s1.Cancel(billing.CancelPeriodEnd, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSubscription(ctx, again); !errors.As(err, &stale) || !errors.Is(err, store.ErrConflict) || stale.Read != 1 || stale.Stored != 2 {
		t.Errorf("UpdateSubscription based on version 1 of version 2: got %v, want a *store.StaleError (1, 2) that is ErrConflict", err)
	}
	if got, err := s.GetSubscription(ctx, "s-1"); err != nil || got.Version != 2 || got.Status != billing.SubscriptionCanceled {
		t.Errorf("after a stale update: %+v, %v; want version 2, canceled", got, err)
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

	// s-1 has ended: c-1 can be on the plan again from then on.
	if err := s.CreateSubscription(ctx, sub("s-5", "c-1", at)); err != nil {
		t.Errorf("CreateSubscription from the end of s-1: %v", err)
	}
	// A deleted customer can't subscribe, whatever its caller saw before.
	if err := s.DeleteCustomer(ctx, "c-2", at); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSubscription(ctx, sub("s-6", "c-2", at.AddDate(1, 0, 0))); !errors.As(err, &ns) {
		t.Errorf("CreateSubscription of a deleted customer: got %v, want a *billing.NotSubscribableError", err)
	}

	t.Run("PlanChanges", func(t *testing.T) { testSubscriptionPlanChanges(t, b) })
	t.Run("ConcurrentCreates", func(t *testing.T) { testConcurrentSubscriptionCreates(t, b) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentSubscriptionUpdates(t, b) })
}

// subscriptionFixture stores customer c-1 and two published monthly plans
// in EUR, p-1 (mail-pro) and p-2 (mail-team), and returns a subscription
// of c-1 to p-1 with the given id and start, not stored.
func subscriptionFixture(t *testing.T, s store.Store) func(id string, start time.Time) billing.Subscription {
	t.Helper()
	ctx := ctxOf(t)
	c := billing.Customer{ID: "c-1", Key: "contoso", Name: "Contoso", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0}
	if err := s.CreateCustomer(ctx, c); err != nil {
		t.Fatalf("CreateCustomer: %v", err)
	}
	for _, p := range []billing.Plan{
		{ID: "p-1", Key: "mail-pro", Version: 1, Name: "Mail Pro", Currency: "EUR", Cadence: billing.CadenceMonthly, Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0},
		{ID: "p-2", Key: "mail-team", Version: 1, Name: "Mail Team", Currency: "EUR", Cadence: billing.CadenceMonthly, Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0},
	} {
		if err := s.CreatePlan(ctx, p); err != nil {
			t.Fatalf("CreatePlan: %v", err)
		}
		if _, err := s.PublishPlan(ctx, p.ID, 1, bt0); err != nil {
			t.Fatalf("PublishPlan: %v", err)
		}
	}
	return func(id string, start time.Time) billing.Subscription {
		return billing.Subscription{
			ID: id, CustomerID: "c-1", PlanID: "p-1", PlanKey: "mail-pro", PlanVersion: 1, Cadence: billing.CadenceMonthly,
			Start: start, BillingAnchor: billing.AnchorAnniversary, TimeZone: "UTC", Status: billing.SubscriptionActive,
			CreatedAt: bt0, UpdatedAt: bt0,
		}
	}
}

// testSubscriptionPlanChanges: a plan change onto a plan the customer is on
// already, through another subscription, is refused; a cancellation never
// is.
func testSubscriptionPlanChanges(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	sub := subscriptionFixture(t, s)
	pro := sub("s-pro", bt0)
	team := sub("s-team", bt0)
	team.PlanID, team.PlanKey = "p-2", "mail-team"
	for _, x := range []billing.Subscription{pro, team} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	p1, err := s.GetPlan(ctx, "p-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.GetSubscription(ctx, "s-team")
	if err != nil {
		t.Fatal(err)
	}
	now := bt0.Add(time.Hour)
	toPro, err := stored.ChangePlan(p1, "EUR", billing.ChangePeriodEnd, now)
	if err != nil {
		t.Fatal(err)
	}
	var ns *billing.NotSubscribableError
	if err := s.UpdateSubscription(ctx, toPro); !errors.As(err, &ns) {
		t.Fatalf("UpdateSubscription onto a plan s-pro is on: got %v, want a *billing.NotSubscribableError", err)
	}
	if got, err := s.GetSubscription(ctx, "s-team"); err != nil || got.Version != 1 || len(got.Phases) != 0 {
		t.Errorf("after a refused plan change: %+v, %v; want version 1 unchanged", got, err)
	}
	// Once s-pro ends where the change takes effect, the change is fine.
	stored, err = s.GetSubscription(ctx, "s-pro")
	if err != nil {
		t.Fatal(err)
	}
	ending, err := stored.Cancel(billing.CancelPeriodEnd, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSubscription(ctx, ending); err != nil {
		t.Fatalf("UpdateSubscription cancelling s-pro: %v", err)
	}
	if err := s.UpdateSubscription(ctx, toPro); err != nil {
		t.Fatalf("UpdateSubscription onto p-1 after s-pro ends: %v", err)
	}
	if got, err := s.GetSubscription(ctx, "s-team"); err != nil || got.Version != 2 || len(got.Phases) != 1 {
		t.Errorf("after the plan change: %+v, %v; want version 2 with one phase", got, err)
	}
}

// concurrency is how many goroutines the concurrency tests race.
const concurrency = 16

// race runs f(0) … f(concurrency-1) at once and returns their errors.
func race(f func(i int) error) []error {
	errs := make([]error, concurrency)
	var ready, done sync.WaitGroup
	ready.Add(concurrency)
	done.Add(concurrency)
	start := make(chan struct{})
	for i := range concurrency {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// testConcurrentSubscriptionCreates: of concurrent subscriptions of one
// customer to one plan, exactly one is stored; every other gets the
// overlap error.
func testConcurrentSubscriptionCreates(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	sub := subscriptionFixture(t, s)
	errs := race(func(i int) error {
		return s.CreateSubscription(ctx, sub(fmt.Sprintf("s-%02d", i), bt0.Add(time.Duration(i)*time.Minute)))
	})
	won := 0
	for i, err := range errs {
		var ns *billing.NotSubscribableError
		switch {
		case err == nil:
			won++
		case !errors.As(err, &ns):
			t.Errorf("CreateSubscription(s-%02d): got %v, want nil or a *billing.NotSubscribableError", i, err)
		}
	}
	subs, err := s.ListSubscriptions(ctx, store.SubscriptionFilter{CustomerID: "c-1"})
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(subs) != 1 {
		t.Errorf("%d concurrent subscriptions to one plan: %d succeeded, %d stored; want exactly 1", concurrency, won, len(subs))
	}
}

// testConcurrentSubscriptionUpdates: of concurrent writes based on the
// same version of a subscription, exactly one is stored; every other gets
// a *store.StaleError, and nothing else is written.
func testConcurrentSubscriptionUpdates(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	sub := subscriptionFixture(t, s)
	if err := s.CreateSubscription(ctx, sub("s-1", bt0)); err != nil {
		t.Fatal(err)
	}
	read, err := s.GetSubscription(ctx, "s-1")
	if err != nil {
		t.Fatal(err)
	}
	errs := race(func(i int) error {
		// Each cancels at its own instant, to tell which one was stored.
		canceled, err := read.Cancel(billing.CancelNow, bt0.Add(time.Duration(i+1)*time.Hour))
		if err != nil {
			return err
		}
		return s.UpdateSubscription(ctx, canceled)
	})
	winner := -1
	for i, err := range errs {
		var stale *store.StaleError
		switch {
		case err == nil && winner >= 0:
			t.Errorf("UpdateSubscription %d and %d, both based on version 1, succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.As(err, &stale) || stale.Read != 1 || stale.Stored != 2:
			t.Errorf("UpdateSubscription %d: got %v, want nil or a *store.StaleError (read 1, stored 2)", i, err)
		}
	}
	got, err := s.GetSubscription(ctx, "s-1")
	if err != nil {
		t.Fatal(err)
	}
	if winner < 0 || got.Version != 2 || got.CancelAt == nil || !got.CancelAt.Equal(bt0.Add(time.Duration(winner+1)*time.Hour)) {
		t.Errorf("after %d concurrent updates (winner %d): version %d, cancelAt %v; want version 2 with the winner's cancellation", concurrency, winner, got.Version, got.CancelAt)
	}
}
