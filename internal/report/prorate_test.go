package report_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// TestReportedOverageMatchesInvoiceWithProratedIncluded reports a partial
// first period split by a plan change, on plans that prorate their
// included quantities, hour by hour as time passes, and checks that what
// was reported adds up to what the invoice bills for each part: the
// planner uses the invoice's (prorated) included quantity per segment,
// and when the change shortens the first segment after hours of it were
// reported, the rest of its overage follows.
func TestReportedOverageMatchesInvoiceWithProratedIncluded(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 6, 11, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pipe := ingest.New(st, clock, log, ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	t.Cleanup(pipe.Close)
	m := meter.Meter{ID: "m-emails", Slug: "emails", EventType: "email", Aggregation: meter.Sum, ValueProperty: "$.n",
		ManagedBy: meter.ManagedByAPI, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateMeter(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := pipe.LoadMeters(ctx); err != nil {
		t.Fatal(err)
	}
	d := decimal.RequireFromString
	plans := map[string]billing.Plan{}
	for _, p := range []struct{ key, included, price string }{{"mail-pro", "1000", "0.01"}, {"mail-team", "3000", "0.005"}} {
		in := billing.PlanInput{Key: p.key, Name: p.key, Currency: "EUR", Cadence: billing.CadenceMonthly, BaseFee: d("10"), ProrateIncluded: true,
			Charges: []billing.PlanCharge{{Key: "emails", Meter: "emails", Included: billing.IncludedQuantity(d(p.included)),
				Pricing:   billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: d(p.price)},
				Reporting: []billing.Reporting{{Target: "azure", Dimension: "extra_emails"}}}}}
		if err := in.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := st.CreatePlan(ctx, in.Plan("p-"+p.key, 1, now, now)); err != nil {
			t.Fatal(err)
		}
		if plans[p.key], err = st.PublishPlan(ctx, p.key, 1, now); err != nil {
			t.Fatal(err)
		}
	}
	cin := billing.CustomerInput{Key: "contoso", Name: "Contoso", Currency: "EUR", Subjects: []string{"contoso-mail"},
		External: billing.ExternalRefs{Azure: &billing.AzureRef{ResourceID: resourceID(1), PlanID: "pro"}}}
	c := cin.Customer("c-contoso", now, now)
	if err := st.CreateCustomer(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Calendar-anchored from 11 June: the first period, 11 June – 1 July,
	// is 20 of June's 30 days.
	sub := billing.SubscriptionInput{Customer: c.ID, Plan: plans["mail-pro"].ID, BillingAnchor: billing.AnchorCalendar}.
		Subscription("s-1", c, plans["mail-pro"], now, now)
	if err := st.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	runner := &report.Runner{Store: st, Outbox: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable,
		Targets:     []report.Target{{Name: "azure", Type: report.TypeAzure, Sender: newFakeTarget(clock, report.Capabilities{MaxBatch: 25, Decimals: -1, Window: 24 * time.Hour})}},
		SettleDelay: 5 * time.Minute, Now: clock, Log: log}

	change := time.Date(2026, 6, 21, 0, 0, 0, 0, time.UTC)
	events := map[time.Time]int{
		// mail-pro, 11–21 June: 900 e-mails.
		time.Date(2026, 6, 12, 9, 10, 0, 0, time.UTC):  200,
		time.Date(2026, 6, 15, 14, 0, 0, 0, time.UTC):  400,
		time.Date(2026, 6, 20, 23, 30, 0, 0, time.UTC): 300,
		// mail-team, 21 June – 1 July: 1,300 e-mails.
		time.Date(2026, 6, 22, 8, 0, 0, 0, time.UTC):   500,
		time.Date(2026, 6, 25, 17, 45, 0, 0, time.UTC): 800,
	}
	n := 0
	for end := time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC); now.Before(end); now = now.Add(30 * time.Minute) {
		for at, count := range events {
			if !at.Before(now) && at.Before(now.Add(30*time.Minute)) {
				n++
				id := fmt.Sprintf("e%d", n)
				data := fmt.Sprintf(`{"n":%d}`, count)
				raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":"email","subject":"contoso-mail","time":%q,"data":%s}`, id, at.Format(time.RFC3339), data)
				if err := pipe.Submit(ctx, []event.Event{{ID: id, Source: "t", Type: "email", Subject: "contoso-mail", Time: at, TimeSet: true, Data: []byte(data), Raw: []byte(raw)}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if now.Equal(change) {
			cur, err := st.GetSubscription(ctx, sub.ID)
			if err != nil {
				t.Fatal(err)
			}
			changed, err := cur.ChangePlan(plans["mail-team"], "EUR", billing.ChangeNow, now)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.UpdateSubscription(ctx, changed); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := runner.Plan(ctx); err != nil {
			t.Fatal(err)
		}
	}

	reps, err := st.ListReports(ctx, report.Filter{SubscriptionID: sub.ID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	reported := decimal.Zero
	for _, r := range reps {
		if r.State == report.StateRefund {
			t.Errorf("refund report %+v", r)
		}
		reported = reported.Add(r.Quantity)
	}

	cur, err := st.GetSubscription(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	invs, err := (&invoicing.Service{Store: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable}).Invoices(ctx, cur, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) < 1 || !invs[0].PeriodStart.Equal(sub.Start) {
		t.Fatalf("invoices %+v", invs)
	}
	// mail-pro: 1,000 × 10/30 = 333 included of 900, 567 billable;
	// mail-team: 3,000 × 10/30 = 1,000 included of 1,300, 300 billable.
	// (With the full allowances nothing would be billable.)
	want := map[string][2]string{"mail-pro": {"333", "567"}, "mail-team": {"1000", "300"}}
	billable := decimal.Zero
	for _, l := range invs[0].Lines {
		if l.Kind != billing.LineUsage {
			continue
		}
		if w := want[l.PlanKey]; l.Included.String() != w[0] || l.Billable.String() != w[1] {
			t.Errorf("invoice line %s: included %s billable %s, want %s and %s", l.PlanKey, l.Included, l.Billable, w[0], w[1])
		}
		billable = billable.Add(l.Billable)
	}
	if !reported.Equal(billable) || !billable.Equal(d("867")) {
		t.Errorf("reported %s extra e-mails in %d reports, the invoice bills %s; want both 867", reported, len(reps), billable)
	}
}
