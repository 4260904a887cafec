package billing

import (
	"errors"
	"testing"
	"time"
)

func TestChangePlanAndSegments(t *testing.T) {
	sub := exampleSub()
	sub.PlanID, sub.PlanKey, sub.PlanVersion = "p", "mail-pro", 1
	team := mailProPlan()
	team.ID, team.Key = "t", "mail-team"
	now := time.Date(2026, 6, 26, 10, 0, 0, 0, time.UTC)
	period, err := sub.CurrentPeriod(now)
	if err != nil {
		t.Fatal(err)
	}

	// At period end: this period is one segment on the old plan, the next
	// one on the new plan.
	later, err := sub.ChangePlan(team, "EUR", ChangePeriodEnd, now)
	if err != nil {
		t.Fatal(err)
	}
	if segs := later.Segments(period); len(segs) != 1 || segs[0].PlanID != "p" || segs[0].Period != period {
		t.Errorf("this period after a change at period end: %+v", segs)
	}
	next, _ := sub.CurrentPeriod(period.End)
	if segs := later.Segments(next); len(segs) != 1 || segs[0].PlanID != "t" || segs[0].Period != next {
		t.Errorf("next period: %+v", segs)
	}
	if got := later.PlanAt(period.End); got.PlanID != "t" {
		t.Errorf("PlanAt(period end) = %+v", got)
	}

	// Now: two segments, each prorated; their shares sum to one. A change
	// now replaces the change scheduled at period end.
	split, err := later.ChangePlan(team, "EUR", ChangeNow, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(split.Phases) != 1 || !split.Phases[0].From.Equal(now) {
		t.Fatalf("phases %+v", split.Phases)
	}
	segs := split.Segments(period)
	if len(segs) != 2 || segs[0].PlanID != "p" || segs[1].PlanID != "t" || !segs[0].Period.End.Equal(now) || !segs[1].Period.Start.Equal(now) ||
		!segs[0].Period.Prorated() || !segs[1].Period.Prorated() || !segs[0].Period.Fraction().Add(segs[1].Period.Fraction()).Equal(dec("1")) {
		t.Errorf("split period: %+v", segs)
	}
	var nsub *NotSubscribableError
	if _, err := split.ChangePlan(mailProPlan(), "EUR", ChangeNow, now.Add(time.Hour)); !errors.As(err, &nsub) {
		t.Errorf("second change now in one period: %v", err)
	}

	// Refusals naming plan.
	var verr *ValidationError
	draft := team
	draft.Status = PlanDraft
	yearly := team
	yearly.Cadence = CadenceYearly
	for name, p := range map[string]Plan{"draft": draft, "yearly": yearly, "same": mailProPlan()} {
		if _, err := sub.ChangePlan(p, "EUR", ChangeNow, now); !errors.As(err, &verr) || verr.Errors()[0][:6] != "plan: " {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := sub.ChangePlan(team, "USD", ChangeNow, now); !errors.As(err, &verr) {
		t.Errorf("currency: %v", err)
	}
}
