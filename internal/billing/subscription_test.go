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
