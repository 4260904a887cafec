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
	pro := Plan{ID: "p-pro", Key: "mail-pro"}
	var ns *NotSubscribableError
	if err := CheckNoOverlap(c, pro, at("2026-08-01T00:00:00Z"), []Subscription{canceled, base}, ""); !errors.As(err, &ns) ||
		!strings.HasPrefix(err.Error(), "plan: ") || !strings.Contains(err.Error(), "s1") {
		t.Errorf("CheckNoOverlap with an open subscription: %v", err)
	}
	if err := CheckNoOverlap(c, pro, at("2026-08-01T00:00:00Z"), []Subscription{base}, "s1"); err != nil {
		t.Errorf("CheckNoOverlap excepting the only subscription: %v", err)
	}
	if err := CheckNoOverlap(c, pro, at("2026-06-16T00:00:00Z"), []Subscription{canceled}, ""); err != nil {
		t.Errorf("CheckNoOverlap after a cancellation: %v", err)
	}
}
