package report_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/azure"
	"github.com/tally-metering/tally/internal/report/azure/azuretest"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// azureFixture is a store with n customers, each with one subject, an
// Azure SaaS resource and a subscription to a plan whose "emails" charge
// includes 100 e-mails and reports the rest to Azure per 10 e-mails; the
// runner sends to the real Azure sender, which talks to the emulator.
type azureFixture struct {
	tb     testing.TB
	mu     sync.Mutex
	now    time.Time
	st     *sqlite.DB
	pipe   *ingest.Pipeline
	emu    *azuretest.Emulator
	runner *report.Runner
	n      int
	evN    int
}

var e2eStart = time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)

func (f *azureFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *azureFixture) set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

func resourceID(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }

func newAzureFixture(tb testing.TB, n int) *azureFixture {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, tb.TempDir(), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	f := &azureFixture{tb: tb, now: e2eStart, st: st, n: n}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.pipe = ingest.New(st, f.clock, log, ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	tb.Cleanup(f.pipe.Close)
	m := meter.Meter{ID: "m-emails", Slug: "emails", EventType: "email", Aggregation: meter.Sum, ValueProperty: "$.n", ManagedBy: meter.ManagedByAPI, CreatedAt: e2eStart, UpdatedAt: e2eStart}
	if err := st.CreateMeter(ctx, m); err != nil {
		tb.Fatal(err)
	}
	if err := f.pipe.LoadMeters(ctx); err != nil {
		tb.Fatal(err)
	}
	d := decimal.RequireFromString
	in := billing.PlanInput{Key: "mail", Name: "Mail", Currency: "EUR", Cadence: billing.CadenceMonthly, BaseFee: d("10"),
		Charges: []billing.PlanCharge{{Key: "emails", Meter: "emails", Included: billing.IncludedQuantity(d("100")),
			Pricing:   billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: d("0.01")},
			Reporting: []billing.Reporting{{Target: "azure", Dimension: "extra_emails", UnitSize: d("10")}}}}}
	if err := in.Validate(); err != nil {
		tb.Fatal(err)
	}
	if err := st.CreatePlan(ctx, in.Plan("p-mail", 1, e2eStart, e2eStart)); err != nil {
		tb.Fatal(err)
	}
	plan, err := st.PublishPlan(ctx, "mail", 1, e2eStart)
	if err != nil {
		tb.Fatal(err)
	}

	f.emu = azuretest.New(f.clock)
	f.emu.AddClient("tenant", "client", "s3cret")
	srv := httptest.NewServer(f.emu)
	tb.Cleanup(srv.Close)
	for i := range n {
		key := fmt.Sprintf("cust-%d", i)
		cin := billing.CustomerInput{Key: key, Name: key, Currency: "EUR", Subjects: []string{"subj-" + strconv.Itoa(i)},
			External: billing.ExternalRefs{Azure: &billing.AzureRef{ResourceID: resourceID(i), PlanID: "pro"}}}
		c := cin.Customer("c-"+strconv.Itoa(i), e2eStart, e2eStart)
		if err := st.CreateCustomer(ctx, c); err != nil {
			tb.Fatal(err)
		}
		sub := billing.SubscriptionInput{Customer: c.ID, Plan: plan.ID}.Subscription("s-"+strconv.Itoa(i), c, plan, e2eStart, e2eStart)
		if err := st.CreateSubscription(ctx, sub); err != nil {
			tb.Fatal(err)
		}
		f.emu.AddResource(azuretest.Resource{ID: resourceID(i), PlanID: "pro", Dimensions: []string{"extra_emails"}})
	}
	sender, err := azure.New(azure.Config{BaseURL: srv.URL, AuthorityURL: srv.URL, TenantID: "tenant", ClientID: "client", ClientSecret: "s3cret", Timeout: 5 * time.Second}, srv.Client())
	if err != nil {
		tb.Fatal(err)
	}
	f.runner = &report.Runner{Store: st, Outbox: st, Usage: &usage.Service{Store: st}, Stable: f.pipe.MetersStable,
		Targets:     []report.Target{{Name: "azure", Type: report.TypeAzure, Sender: sender}},
		SettleDelay: 5 * time.Minute, Backoff: time.Second, MaxBackoff: time.Second, SendTimeout: time.Second, Now: f.clock, Log: log}
	return f
}

// emails ingests, for every customer, one event of n e-mails at t.
func (f *azureFixture) emails(t time.Time, n int) {
	f.tb.Helper()
	var batch []event.Event
	for i := range f.n {
		f.evN++
		id := "e" + strconv.Itoa(f.evN)
		subject := "subj-" + strconv.Itoa(i)
		data := `{"n":` + strconv.Itoa(n) + `}`
		raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":"email","subject":%q,"time":%q,"data":%s}`, id, subject, t.Format(time.RFC3339), data)
		batch = append(batch, event.Event{ID: id, Source: "t", Type: "email", Subject: subject, Time: t, TimeSet: true, Data: []byte(data), Raw: []byte(raw)})
		if len(batch) == 5000 {
			if err := f.pipe.Submit(context.Background(), batch); err != nil {
				f.tb.Fatal(err)
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		if err := f.pipe.Submit(context.Background(), batch); err != nil {
			f.tb.Fatal(err)
		}
	}
}

// run plans and sends, and fails on a store error.
func (f *azureFixture) run() (report.PlanStats, report.SendStats) {
	f.tb.Helper()
	ps, err := f.runner.Plan(context.Background())
	if err != nil {
		f.tb.Fatal(err)
	}
	ss, err := f.runner.Send(context.Background())
	if err != nil {
		f.tb.Fatal(err)
	}
	return ps, ss
}

// TestAzureExactlyOnceUnderFaults sends through the real Azure sender to
// the emulator while it fails in every way it can; in the end the emulator
// holds exactly the expected quantity for every resource and hour, once.
func TestAzureExactlyOnceUnderFaults(t *testing.T) {
	f := newAzureFixture(t, 60)
	f.emails(e2eStart.Add(10*time.Minute), 130) // 30 over → 3 per 10
	f.emails(e2eStart.Add(70*time.Minute), 25)  // 2.5 more
	f.set(e2eStart.Add(2*time.Hour + 5*time.Minute))
	// 60 reports per hour in batches of 25: 3 calls per hour. Fail many.
	f.emu.Inject(
		azuretest.Fault{Status: 503},
		azuretest.Fault{Drop: true},
		azuretest.Fault{Status: 429, RetryAfter: time.Second},
		azuretest.Fault{Status: 500},
		azuretest.Fault{Drop: true},
		azuretest.Fault{DelayAfterAccept: 1500 * time.Millisecond}, // the runner gives up after 1 s
	)
	for i := 0; i < 20; i++ {
		f.run()
		f.set(f.clock().Add(3 * time.Minute))
	}
	usage := f.emu.Usage()
	if len(usage) != 2*60 {
		t.Fatalf("emulator holds %d hours, want %d", len(usage), 2*60)
	}
	for i := range 60 {
		for h, want := range map[time.Time]string{e2eStart: "3", e2eStart.Add(time.Hour): "2.5"} {
			k := azuretest.Key{Resource: resourceID(i), Dimension: "extra_emails", Hour: h}
			if got, ok := usage[k]; !ok || !got.Equal(decimal.RequireFromString(want)) {
				t.Errorf("%v: got %s (present %v), want %s", k, got, ok, want)
			}
		}
	}
	reps, err := f.st.ListReports(context.Background(), report.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r.State != report.StateAccepted && r.State != report.StateDuplicate {
			t.Errorf("report %s %s: %s (%s)", r.Resource.AzureResourceID, r.Hour, r.State, r.LastError)
		}
	}
	if len(reps) != 120 {
		t.Fatalf("%d reports, want 120", len(reps))
	}
}

// BenchmarkReportHour plans and sends one hour of reports for
// TALLY_BENCH_SUBSCRIPTIONS subscriptions (default 100,000) to the Azure
// emulator. Run: go test -run '^$' -bench ReportHour -benchtime 1x ./internal/report/
func BenchmarkReportHour(b *testing.B) {
	n := 100000
	if v := os.Getenv("TALLY_BENCH_SUBSCRIPTIONS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	setup := time.Now()
	f := newAzureFixture(b, n)
	f.emails(e2eStart.Add(10*time.Minute), 250)
	b.Logf("setup of %d subscriptions: %s", n, time.Since(setup).Round(time.Millisecond))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.set(e2eStart.Add(time.Duration(i+1)*time.Hour + 5*time.Minute))
		start := time.Now()
		ps, err := f.runner.Plan(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		planned := time.Since(start)
		ss, err := f.runner.Send(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		b.ReportMetric(planned.Seconds(), "plan-s")
		b.ReportMetric((total - planned).Seconds(), "send-s")
		b.ReportMetric(total.Seconds(), "total-s")
		if i == 0 && (ps.Reports != n || ss.Accepted != n) {
			b.Fatalf("planned %d, accepted %d, want %d each", ps.Reports, ss.Accepted, n)
		}
	}
}
