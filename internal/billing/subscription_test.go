package billing

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSubscriptionCurrentPeriodAndCancel(t *testing.T) {
	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	s := Subscription{ID: "s", Start: start, Cadence: CadenceMonthly, BillingAnchor: AnchorAnniversary, TimeZone: "UTC", Status: SubscriptionActive}
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	p, err := s.CurrentPeriod(now)
	if err != nil || !p.Start.Equal(start) || !p.End.Equal(time.Date(2026, 7, 20, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("CurrentPeriod = %+v, %v", p, err)
	}
	// Before the start: the first period.
	if p, err := s.CurrentPeriod(start.Add(-time.Hour)); err != nil || p.Index != 0 || !p.Start.Equal(start) {
		t.Errorf("CurrentPeriod before start = %+v, %v", p, err)
	}

	sc, err := s.Cancel(CancelPeriodEnd, now)
	if err != nil || sc.Status != SubscriptionScheduledCancel || !sc.CancelAt.Equal(p.End) || !sc.CanceledAt.Equal(now) {
		t.Fatalf("Cancel at period end = %+v, %v", sc, err)
	}
	if again, err := sc.Cancel(CancelPeriodEnd, now.Add(time.Hour)); err != nil || !again.CanceledAt.Equal(now) {
		t.Errorf("repeated cancel at period end = %+v, %v", again, err)
	}
	if st := sc.StatusAt(p.End.Add(-time.Nanosecond)); st != SubscriptionScheduledCancel {
		t.Errorf("status before period end = %s", st)
	}
	if st := sc.StatusAt(p.End); st != SubscriptionCanceled {
		t.Errorf("status at period end = %s", st)
	}
	var ns *NotSubscribableError
	if _, err := sc.Cancel(CancelNow, p.End); !errors.As(err, &ns) {
		t.Errorf("cancelling after the scheduled end: %v", err)
	}
	cn, err := sc.Cancel(CancelNow, now)
	if err != nil || cn.Status != SubscriptionCanceled || !cn.CancelAt.Equal(now) {
		t.Errorf("cancel now after scheduling = %+v, %v", cn, err)
	}
}

func TestSubscriptionInputValidate(t *testing.T) {
	old := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	err := SubscriptionInput{PlanVersion: -1, Start: &old, BillingAnchor: "weekly", TimeZone: "Local"}.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	want := []string{"customer:", "plan:", "planVersion:", "start:", "billingAnchor:", "timeZone:"}
	got := ve.Errors()
	if len(got) != len(want) {
		t.Fatalf("errors %q, want %d", got, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("errors[%d] = %q, want prefix %q", i, got[i], w)
		}
	}
	if err := (SubscriptionInput{Customer: "c", Plan: "p", TimeZone: "Europe/Berlin"}).Validate(); err != nil {
		t.Errorf("valid input: %v", err)
	}
}

func TestCheckSubscribable(t *testing.T) {
	c := Customer{Key: "contoso", Currency: "EUR"}
	p := Plan{Key: "mail-pro", Version: 1, Currency: "EUR", Status: PlanPublished}
	if err := CheckSubscribable(c, p); err != nil {
		t.Errorf("CheckSubscribable = %v", err)
	}
	var ns *NotSubscribableError
	draft := p
	draft.Status = PlanDraft
	if err := CheckSubscribable(c, draft); !errors.As(err, &ns) {
		t.Errorf("draft plan: %v", err)
	}
	gone := c
	gone.DeletedAt = &time.Time{}
	if err := CheckSubscribable(gone, p); !errors.As(err, &ns) {
		t.Errorf("deleted customer: %v", err)
	}
	usd := p
	usd.Currency = "USD"
	var ve *ValidationError
	if err := CheckSubscribable(c, usd); !errors.As(err, &ve) || !strings.HasPrefix(ve.Errors()[0], "plan: ") {
		t.Errorf("currency mismatch: %v", err)
	}
}

func TestOnPlanFromAndCheckNoOverlap(t *testing.T) {
	at := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	ptrTime := func(s string) *time.Time { ts := at(s); return &ts }
	base := Subscription{ID: "s1", PlanID: "p-pro", Start: at("2026-06-01T00:00:00Z"), Cadence: CadenceMonthly, BillingAnchor: AnchorAnniversary, Status: SubscriptionActive}
	changed := base
	changed.Phases = []PlanPhase{{PlanID: "p-team", From: at("2026-07-01T00:00:00Z")}, {PlanID: "p-pro", From: at("2026-09-01T00:00:00Z")}}
	canceled := base
	canceled.Status, canceled.CancelAt = SubscriptionCanceled, ptrTime("2026-06-16T00:00:00Z")
	for _, tc := range []struct {
		name   string
		sub    Subscription
		plan   string
		t      string
		want   string // "" for no overlap
		wantOK bool
	}{
		{"open-ended, later start", base, "p-pro", "2026-08-01T00:00:00Z", "2026-08-01T00:00:00Z", true},
		{"open-ended, earlier start", base, "p-pro", "2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z", true},
		{"another plan", base, "p-team", "2026-05-01T00:00:00Z", "", false},
		{"changed away, then back", changed, "p-pro", "2026-07-15T00:00:00Z", "2026-09-01T00:00:00Z", true},
		{"changed to", changed, "p-team", "2026-06-15T00:00:00Z", "2026-07-01T00:00:00Z", true},
		{"after the changed-to phase", changed, "p-team", "2026-09-01T00:00:00Z", "", false},
		{"canceled, before the end", canceled, "p-pro", "2026-06-15T23:59:59Z", "2026-06-15T23:59:59Z", true},
		{"canceled, at the end", canceled, "p-pro", "2026-06-16T00:00:00Z", "", false},
	} {
		got, ok := tc.sub.OnPlanFrom(tc.plan, at(tc.t))
		if ok != tc.wantOK || (ok && !got.Equal(at(tc.want))) {
			t.Errorf("%s: OnPlanFrom(%s, %s) = %s, %v; want %s, %v", tc.name, tc.plan, tc.t, got, ok, tc.want, tc.wantOK)
		}
	}
	c := Customer{ID: "c1", Key: "contoso"}
	var ns *NotSubscribableError
	fresh := Subscription{ID: "s2", PlanID: "p-pro", PlanKey: "mail-pro", Start: at("2026-08-01T00:00:00Z")}
	if err := CheckNoOverlap(c, nil, fresh, []Subscription{canceled, base}); !errors.As(err, &ns) ||
		!strings.HasPrefix(err.Error(), "plan: ") || !strings.Contains(err.Error(), "s1") || !strings.Contains(err.Error(), `"mail-pro"`) {
		t.Errorf("CheckNoOverlap with an open subscription: %v", err)
	}
	if err := CheckNoOverlap(c, nil, base, []Subscription{base}); err != nil {
		t.Errorf("CheckNoOverlap of a subscription with itself: %v", err)
	}
	fresh.Start = at("2026-06-16T00:00:00Z")
	if err := CheckNoOverlap(c, nil, fresh, []Subscription{canceled}); err != nil {
		t.Errorf("CheckNoOverlap after a cancellation: %v", err)
	}
	// A new subscription's plan changes count as well as its first plan.
	fresh.PlanID, fresh.Phases = "p-team", []PlanPhase{{PlanID: "p-pro", PlanKey: "mail-pro", From: at("2026-07-01T00:00:00Z")}}
	if err := CheckNoOverlap(c, nil, fresh, []Subscription{base}); !errors.As(err, &ns) {
		t.Errorf("CheckNoOverlap of a new subscription changing onto a taken plan: %v", err)
	}

	// What the write adds ends with its next change or cancellation.
	early := Subscription{ID: "s5", PlanID: "p-pro", PlanKey: "mail-pro", Start: at("2026-05-01T00:00:00Z"),
		Phases: []PlanPhase{{PlanID: "p-team", PlanKey: "team", From: at("2026-06-01T00:00:00Z")}}}
	if err := CheckNoOverlap(c, nil, early, []Subscription{base}); err != nil {
		t.Errorf("CheckNoOverlap of a new subscription leaving the plan when the other starts: %v", err)
	}
	early.Phases[0].From = at("2026-06-01T00:00:01Z")
	if err := CheckNoOverlap(c, nil, early, []Subscription{base}); !errors.As(err, &ns) || !strings.Contains(err.Error(), "2026-06-01T00:00:00Z") {
		t.Errorf("CheckNoOverlap of a new subscription leaving the plan a second after the other starts: %v", err)
	}
	early.Phases, early.CancelAt = nil, ptrTime("2026-06-01T00:00:00Z")
	if err := CheckNoOverlap(c, nil, early, []Subscription{base}); err != nil {
		t.Errorf("CheckNoOverlap of a new subscription ending when the other starts: %v", err)
	}

	// A change is checked for the plan changes it adds only.
	team := Subscription{ID: "s3", PlanID: "p-team", PlanKey: "team", Start: at("2026-06-01T00:00:00Z")}
	toPro := team
	toPro.Phases = []PlanPhase{{PlanID: "p-pro", PlanKey: "mail-pro", From: at("2026-08-01T00:00:00Z")}}
	if err := CheckNoOverlap(c, &team, toPro, []Subscription{base, team}); !errors.As(err, &ns) || !strings.Contains(err.Error(), "s1") {
		t.Errorf("CheckNoOverlap of a change onto a taken plan: %v", err)
	}
	if err := CheckNoOverlap(c, &team, toPro, []Subscription{canceled, team}); err != nil {
		t.Errorf("CheckNoOverlap of a change onto a plan left before: %v", err)
	}
	// Both already overlap (stored before this check existed): cancelling
	// one adds nothing and is allowed.
	dup := Subscription{ID: "s4", PlanID: "p-pro", PlanKey: "mail-pro", Start: at("2026-06-01T00:00:00Z")}
	dupCanceled, err := dup.Cancel(CancelNow, at("2026-06-10T00:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNoOverlap(c, &dup, dupCanceled, []Subscription{base, dup}); err != nil {
		t.Errorf("CheckNoOverlap of a cancellation: %v", err)
	}
	// So is a change that keeps the phases it had.
	if err := CheckNoOverlap(c, &changed, changed, []Subscription{base, changed}); err != nil {
		t.Errorf("CheckNoOverlap of a write keeping the phases: %v", err)
	}

	// CheckNewSubscription refuses a deleted customer before looking at
	// overlaps, and an overlap of a subscribable one.
	pro := Plan{ID: "p-pro", Key: "mail-pro", Version: 1, Currency: "EUR", Status: PlanPublished}
	c.Currency = "EUR"
	fresh = Subscription{ID: "s2", PlanID: "p-pro", PlanKey: "mail-pro", Start: at("2026-08-01T00:00:00Z")}
	if err := CheckNewSubscription(c, pro, fresh, []Subscription{base}); !errors.As(err, &ns) || !strings.Contains(err.Error(), "s1") {
		t.Errorf("CheckNewSubscription overlapping: %v", err)
	}
	if err := CheckNewSubscription(c, pro, fresh, nil); err != nil {
		t.Errorf("CheckNewSubscription alone: %v", err)
	}
	deleted := c
	deleted.DeletedAt = ptrTime("2026-07-01T00:00:00Z")
	if err := CheckNewSubscription(deleted, pro, fresh, nil); !errors.As(err, &ns) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("CheckNewSubscription of a deleted customer: %v", err)
	}
}

func TestUsageEnd(t *testing.T) {
	sub := exampleSub()
	cancel := time.Date(2026, 7, 3, 12, 30, 45, 0, time.UTC)
	minute := time.Date(2026, 7, 3, 12, 30, 0, 0, time.UTC)
	if got := sub.UsageEnd(cancel); !got.Equal(minute) {
		t.Errorf("UsageEnd of a mid-minute boundary = %s, want %s", got, minute)
	}
	sub.CancelAt = &cancel
	if got := sub.UsageEnd(cancel); !got.Equal(minute.Add(time.Minute)) {
		t.Errorf("UsageEnd of the cancellation = %s, want the next minute %s", got, minute.Add(time.Minute))
	}
	if got := sub.UsageEnd(cancel.Add(-time.Second)); !got.Equal(minute) {
		t.Errorf("UsageEnd before the cancellation = %s, want %s", got, minute)
	}
	whole := minute
	sub.CancelAt = &whole
	if got := sub.UsageEnd(whole); !got.Equal(minute) {
		t.Errorf("UsageEnd of a cancellation on a whole minute = %s, want %s", got, minute)
	}
}
