package report_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	"github.com/tally-metering/tally/internal/report/webhook"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// TestScenarios runs every testdata/scenarios/*.txt file. The language, one
// command per line (# starts a comment):
//
//	clock <RFC 3339>                      set the clock (ingest and reporting)
//	meter <slug> SUM|COUNT type=<type> [value=<JSONPath>]
//	meter-update <slug> value=<JSONPath>  change how a meter counts (rebuilt)
//	customer <key> <currency> subjects=<a,b> [azure=<resourceId>] [deploy=<subject:uri,…>] [aws=<customerId>] [stripe=<customerId>]
//	plan <key> <currency> <cadence> [base=<fee>]
//	  charge <key> meter=<slug> [included=<n>] per_unit=<price> | graduated=<upTo:price,…,-:price>
//	  report <target> <dimension> [unit=<n>] [tier=<k>]
//	subjects <customer> [a,b]             give the customer these subjects (none
//	                                      when omitted) at the clock
//	subscribe <name> <customer> <plan> start=<RFC 3339>
//	cancel <name> now|period_end
//	event <subject> <RFC 3339> [value]     ingest one event (of the only meter's type)
//	fault <target> expire|reject|5xx|drop|slow <n>   the target's next n calls misbehave
//	                                      (slow: the call takes a minute of the
//	                                      clock, then fails with a 5xx)
//	fault stripe refuse-cancel <n>        the next n cancellations are refused
//	fault outbox record <n>               the next n RecordDeliveries fail, as
//	                                      if tally crashed after sending
//	fault store customer <n>              the next n GetCustomer calls of the
//	                                      runner fail (a transient store error)
//	run [crash]                           plan, then send (crash: expect the
//	                                      injected failure)
//	restart                               a new runner over the same store
//	expect report <target> <dimension> <hour> qty=<q> state=<state> [late=<q>] [late-from=<a,b>] [rounding=<q>] [resource=<id>]
//	expect reports <n>                    number of reports stored
//	expect held <target> <resource> <dimension> <hour> <qty>   what the target accepted
//	expect held-count <target> <n>        how many hours the target holds
//	expect attempts <target> <dimension> <hour> <n>   attempts in a report's log
//	expect alerts <kind> <n>              alerts raised so far (failed, expired, deadline, refund)
//	expect alert <kind> <word>…           an alert of that kind says every word
//	expect posts hooks <type> <n>         signed webhook deliveries of that type
//	                                      (usage, correction) the receiver took
//
// The target hooks is a real webhook sender posting to a receiver that
// verifies every signature; its resource is the customer's key.
//
//	expect at-risk <target> <n>           reports the deadline watch sees at risk
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScenario(t, f)
		})
	}
}

type scenario struct {
	t       *testing.T
	ctx     context.Context
	now     time.Time
	mu      sync.Mutex
	st      *sqlite.DB
	pipe    *ingest.Pipeline
	runner  *report.Runner
	targets map[string]*fakeTarget
	outbox  *crashingOutbox
	store   *failingStore
	meters  []meter.Meter
	subs    map[string]string // name → id
	plan    *billing.PlanInput
	alerts  map[string]int // kind → count
	alertMs map[string][]string
	hooks   *hookReceiver
	evN     int
	file    string
	line    int
}

func (s *scenario) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func (s *scenario) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func runScenario(t *testing.T, path string) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &scenario{t: t, ctx: ctx, st: st, subs: map[string]string{}, file: filepath.Base(path), targets: map[string]*fakeTarget{}}
	s.now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s.pipe = ingest.New(st, s.clock, log, ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	t.Cleanup(s.pipe.Close)
	s.targets["azure"] = newFakeTarget(s.clock, report.Capabilities{MaxBatch: 25, Decimals: -1, Window: 24 * time.Hour})
	s.targets["aws"] = newFakeTarget(s.clock, report.Capabilities{MaxBatch: 25, Decimals: 0, Window: 6 * time.Hour})
	s.targets["stripe"] = newFakeTarget(s.clock, report.Capabilities{MaxBatch: 1, Decimals: 0, Window: 35 * 24 * time.Hour, DedupeWindow: 24 * time.Hour})
	for _, ft := range s.targets {
		ft.advance = func(d time.Duration) {
			s.mu.Lock()
			s.now = s.now.Add(d)
			s.mu.Unlock()
		}
	}
	s.hooks = newHookReceiver(t)
	hooks, err := webhook.New(webhook.Config{URL: s.hooks.url, Secret: hookSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.outbox = &crashingOutbox{Outbox: st}
	s.store = &failingStore{Store: st}
	s.runner = &report.Runner{
		Store: s.store, Outbox: s.outbox, Usage: &usage.Service{Store: st}, Stable: s.pipe.MetersStable,
		Targets: []report.Target{
			{Name: "azure", Type: report.TypeAzure, Sender: s.targets["azure"]},
			{Name: "aws", Type: report.TypeAWS, Sender: s.targets["aws"]},
			{Name: "stripe", Type: report.TypeStripe, Sender: cancelingTarget{s.targets["stripe"]}},
			{Name: "hooks", Type: report.TypeWebhook, Sender: hooks},
		},
		SettleDelay: 5 * time.Minute, Backoff: time.Second, MaxBackoff: time.Second, Now: s.clock, Log: log,
		Alert: s.collectAlert,
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s.line++
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		s.exec(fields)
	}
	s.flushPlan()
}

// kv splits key=value arguments.
func kv(args []string) (pos []string, opts map[string]string) {
	opts = map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			opts[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	return pos, opts
}

func (s *scenario) time(v string) time.Time {
	s.t.Helper()
	tm, err := time.Parse(time.RFC3339, v)
	if err != nil {
		s.fatalf("time %q: %v", v, err)
	}
	return tm
}

func (s *scenario) dec(v string) decimal.Decimal {
	s.t.Helper()
	d, err := decimal.NewFromString(v)
	if err != nil {
		s.fatalf("decimal %q: %v", v, err)
	}
	return d
}

func (s *scenario) exec(f []string) {
	s.t.Helper()
	ctx := s.ctx
	pos, opts := kv(f[1:])
	if f[0] != "charge" && f[0] != "report" {
		s.flushPlan()
	}
	switch f[0] {
	case "clock":
		s.mu.Lock()
		s.now = s.time(pos[0])
		s.mu.Unlock()
	case "meter":
		m := meter.Meter{ID: "m-" + pos[0], Slug: pos[0], Aggregation: meter.Aggregation(pos[1]), EventType: opts["type"], ValueProperty: opts["value"],
			ManagedBy: meter.ManagedByAPI, CreatedAt: s.clock(), UpdatedAt: s.clock()}
		if err := s.st.CreateMeter(ctx, m); err != nil {
			s.fatalf("meter: %v", err)
		}
		if err := s.pipe.LoadMeters(ctx); err != nil {
			s.fatalf("load meters: %v", err)
		}
		s.meters = append(s.meters, m)
	case "meter-update":
		// Change how a meter counts; it is rebuilt from the raw events.
		var m meter.Meter
		for _, old := range s.meters {
			if old.Slug == pos[0] {
				m = old
			}
		}
		if v := opts["value"]; v != "" {
			m.ValueProperty = v
		}
		if _, err := s.pipe.UpdateMeter(ctx, pos[0], m); err != nil {
			s.fatalf("meter-update: %v", err)
		}
	case "customer":
		in := billing.CustomerInput{Key: pos[0], Name: pos[0], Currency: pos[1], Subjects: strings.Split(opts["subjects"], ",")}
		if v := opts["azure"]; v != "" {
			in.External.Azure = &billing.AzureRef{ResourceID: v, PlanID: "plan"}
		}
		if v := opts["deploy"]; v != "" {
			if in.External.Azure == nil {
				in.External.Azure = &billing.AzureRef{PlanID: "plan"}
			}
			for _, d := range strings.Split(v, ",") {
				subj, uri, _ := strings.Cut(d, ":")
				in.External.Azure.Deployments = append(in.External.Azure.Deployments, billing.AzureDeployment{Subject: subj, ResourceURI: uri})
			}
		}
		if v := opts["stripe"]; v != "" {
			in.External.Stripe = &billing.StripeRef{CustomerID: v}
		}
		if v := opts["aws"]; v != "" {
			in.External.AWS = &billing.AWSRef{CustomerIdentifier: v}
		}
		if err := in.Validate(); err != nil {
			s.fatalf("customer: %v", err)
		}
		if err := s.st.CreateCustomer(ctx, in.Customer("c-"+pos[0], s.clock(), s.clock())); err != nil {
			s.fatalf("customer: %v", err)
		}
	case "subjects":
		c, err := s.st.GetCustomer(ctx, "c-"+pos[0])
		if err != nil {
			s.fatalf("subjects: %v", err)
		}
		in := billing.CustomerInput{Key: c.Key, Name: c.Name, Email: c.Email, Currency: c.Currency, Metadata: c.Metadata, External: c.External}
		if len(pos) > 1 {
			in.Subjects = strings.Split(pos[1], ",")
		}
		if err := in.Validate(); err != nil {
			s.fatalf("subjects: %v", err)
		}
		if err := s.st.UpdateCustomer(ctx, in.Customer(c.ID, c.CreatedAt, s.clock())); err != nil {
			s.fatalf("subjects: %v", err)
		}
	case "plan":
		in := billing.PlanInput{Key: pos[0], Name: pos[0], Currency: pos[1], Cadence: billing.Cadence(pos[2]), BaseFee: decimal.Zero}
		if v := opts["base"]; v != "" {
			in.BaseFee = s.dec(v)
		}
		s.plan = &in
	case "charge":
		pc := billing.PlanCharge{Key: pos[0], Meter: opts["meter"]}
		if v := opts["included"]; v != "" {
			pc.Included = billing.IncludedQuantity(s.dec(v))
		}
		switch {
		case opts["per_unit"] != "":
			pc.Pricing = billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: s.dec(opts["per_unit"])}
		case opts["graduated"] != "":
			pc.Pricing = billing.Pricing{Model: billing.ModelGraduated}
			for _, tier := range strings.Split(opts["graduated"], ",") {
				up, price, _ := strings.Cut(tier, ":")
				tr := billing.Tier{UnitPrice: s.dec(price)}
				if up != "-" {
					u := s.dec(up)
					tr.UpTo = &u
				}
				pc.Pricing.Tiers = append(pc.Pricing.Tiers, tr)
			}
		}
		s.plan.Charges = append(s.plan.Charges, pc)
	case "report":
		r := billing.Reporting{Target: pos[0], Dimension: pos[1]}
		if v := opts["unit"]; v != "" {
			r.UnitSize = s.dec(v)
		}
		if v := opts["tier"]; v != "" {
			r.Tier, _ = strconv.Atoi(v)
		}
		ch := &s.plan.Charges[len(s.plan.Charges)-1]
		ch.Reporting = append(ch.Reporting, r)
	case "subscribe":
		c, err := s.st.GetCustomer(ctx, pos[1])
		if err != nil {
			s.fatalf("subscribe: %v", err)
		}
		p, err := s.st.GetPlan(ctx, pos[2], 0)
		if err != nil {
			s.fatalf("subscribe: %v", err)
		}
		start := s.time(opts["start"])
		id := "s-" + pos[0]
		sub := billing.SubscriptionInput{Customer: c.ID, Plan: p.ID}.Subscription(id, c, p, start, s.clock())
		if err := s.st.CreateSubscription(ctx, sub); err != nil {
			s.fatalf("subscribe: %v", err)
		}
		s.subs[pos[0]] = id
	case "cancel":
		sub, err := s.st.GetSubscription(ctx, s.subs[pos[0]])
		if err != nil {
			s.fatalf("cancel: %v", err)
		}
		sub, err = sub.Cancel(billing.CancelMode(pos[1]), s.clock())
		if err != nil {
			s.fatalf("cancel: %v", err)
		}
		if err := s.st.UpdateSubscription(ctx, sub); err != nil {
			s.fatalf("cancel: %v", err)
		}
	case "event":
		if len(s.meters) == 0 {
			s.fatalf("event before any meter")
		}
		m := s.meters[0]
		ts := s.time(pos[1])
		value := "1"
		if len(pos) > 2 {
			value = pos[2]
		}
		s.evN++
		data := fmt.Sprintf(`{"value":%s}`, value)
		id := fmt.Sprintf("ev-%d", s.evN)
		raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"scenario","type":%q,"subject":%q,"time":%q,"data":%s}`, id, m.EventType, pos[0], pos[1], data)
		ev := event.Event{ID: id, Source: "scenario", Type: m.EventType, Subject: pos[0], Time: ts, TimeSet: true, Data: []byte(data), Raw: []byte(raw)}
		if err := s.pipe.Submit(ctx, []event.Event{ev}); err != nil {
			s.fatalf("event: %v", err)
		}
	case "void", "amend":
		// void SUBJECT N / amend SUBJECT N VALUE: correct the Nth event
		// (ev-N) of the scenario, as an admin does through the API.
		in := ingest.CorrectInput{Source: "scenario", ID: "ev-" + pos[1], Subject: pos[0], Reason: "scenario", Actor: "scenario"}
		var err error
		if f[0] == "void" {
			_, err = s.pipe.VoidEvent(ctx, in)
		} else {
			in.Data = []byte(fmt.Sprintf(`{"value":%s}`, pos[2]))
			_, err = s.pipe.AmendEvent(ctx, in)
		}
		if err != nil {
			s.fatalf("%s: %v", f[0], err)
		}
	case "fault":
		n, _ := strconv.Atoi(pos[2])
		if pos[0] == "outbox" {
			s.outbox.failRecord += n
			break
		}
		if pos[0] == "store" {
			s.store.failCustomer += n
			break
		}
		s.targets[pos[0]].inject(pos[1], n)
	case "run":
		if _, err := s.runner.Plan(ctx); err != nil {
			s.fatalf("plan: %v", err)
		}
		// A run that keeps sending (a Send that never ends) is cut off.
		sctx, cancel := context.WithCancel(ctx)
		for _, ft := range s.targets {
			ft.mu.Lock()
			ft.calls, ft.stop = 0, cancel
			ft.mu.Unlock()
		}
		_, err := s.runner.Send(sctx)
		runaway := sctx.Err() != nil
		cancel()
		if runaway {
			s.fatalf("send: a target was called more than %d times in one run: %v", maxCallsPerRun, err)
		}
		switch {
		case len(pos) > 0 && pos[0] == "crash" && err == nil:
			s.fatalf("send: no error, want the injected crash")
		case (len(pos) == 0 || pos[0] != "crash") && err != nil:
			s.fatalf("send: %v", err)
		}
	case "restart":
		// A new process: the runner's memory is gone, the store remains.
		r := s.runner
		s.runner = &report.Runner{Store: r.Store, Outbox: r.Outbox, Usage: r.Usage, Stable: r.Stable, Targets: r.Targets,
			SettleDelay: r.SettleDelay, Backoff: r.Backoff, MaxBackoff: r.MaxBackoff, Now: r.Now, Log: r.Log, Alert: s.collectAlert}
	case "expect":
		s.expect(pos, opts)
	default:
		s.fatalf("unknown command %q", f[0])
	}
}

func (s *scenario) collectAlert(_ context.Context, a report.Alert) {
	if s.alerts == nil {
		s.alerts = map[string]int{}
	}
	s.alerts[a.Kind]++
	if s.alertMs == nil {
		s.alertMs = map[string][]string{}
	}
	s.alertMs[a.Kind] = append(s.alertMs[a.Kind], a.Message)
}

// flushPlan stores and publishes the plan being declared, if any.
func (s *scenario) flushPlan() {
	if s.plan == nil {
		return
	}
	in := *s.plan
	s.plan = nil
	if err := in.Validate(); err != nil {
		s.fatalf("plan: %v", err)
	}
	if err := s.st.CreatePlan(s.ctx, in.Plan("p-"+in.Key, 1, s.clock(), s.clock())); err != nil {
		s.fatalf("plan: %v", err)
	}
	if _, err := s.st.PublishPlan(s.ctx, in.Key, 1, s.clock()); err != nil {
		s.fatalf("publish: %v", err)
	}
}

func (s *scenario) expect(pos []string, opts map[string]string) {
	s.t.Helper()
	all, err := s.st.ListReports(s.ctx, report.Filter{})
	if err != nil {
		s.fatalf("list reports: %v", err)
	}
	switch pos[0] {
	case "reports":
		n, _ := strconv.Atoi(pos[1])
		if len(all) != n {
			b, _ := json.MarshalIndent(all, "", " ")
			s.errorf("%d reports, want %d:\n%s", len(all), n, b)
		}
	case "report":
		hour := s.time(pos[3])
		for _, r := range all {
			if r.Target != pos[1] || r.Dimension != pos[2] || !r.Hour.Equal(hour) {
				continue
			}
			if res := opts["resource"]; res != "" && resourceOf(r.Resource) != res {
				continue
			}
			if q := opts["qty"]; q != "" && !r.Quantity.Equal(s.dec(q)) {
				s.errorf("report %s %s %s: quantity %s, want %s", pos[1], pos[2], pos[3], r.Quantity, q)
			}
			if st := opts["state"]; st != "" && string(r.State) != st {
				s.errorf("report %s %s %s: state %s (%s), want %s", pos[1], pos[2], pos[3], r.State, r.LastError, st)
			}
			if l := opts["late"]; l != "" && !r.Late.Equal(s.dec(l)) {
				s.errorf("report %s %s %s: late %s, want %s", pos[1], pos[2], pos[3], r.Late, l)
			}
			if l, ok := opts["late-from"]; ok && strings.Join(r.LateFrom, ",") != l {
				s.errorf("report %s %s %s: late from %q, want %q", pos[1], pos[2], pos[3], strings.Join(r.LateFrom, ","), l)
			}
			if l := opts["rounding"]; l != "" && !r.Rounding.Equal(s.dec(l)) {
				s.errorf("report %s %s %s: rounding %s, want %s", pos[1], pos[2], pos[3], r.Rounding, l)
			}
			return
		}
		s.errorf("no report %s %s at %s", pos[1], pos[2], pos[3])
	case "held":
		var ft holder = s.hooks
		if pos[1] != "hooks" {
			ft = s.targets[pos[1]]
		}
		got, ok := ft.held(pos[2], pos[3], s.time(pos[4]))
		if !ok || !got.Equal(s.dec(pos[5])) {
			s.errorf("%s holds %s (present %v) for %s %s %s, want %s", pos[1], got, ok, pos[2], pos[3], pos[4], pos[5])
		}
	case "alerts":
		n, _ := strconv.Atoi(pos[2])
		if got := s.alerts[pos[1]]; got != n {
			s.errorf("%d %s alerts, want %d", got, pos[1], n)
		}
	case "alert":
		for _, m := range s.alertMs[pos[1]] {
			all := true
			for _, w := range pos[2:] {
				all = all && strings.Contains(m, w)
			}
			if all {
				return
			}
		}
		s.errorf("no %s alert says %q: %q", pos[1], pos[2:], s.alertMs[pos[1]])
	case "posts":
		n, _ := strconv.Atoi(pos[3])
		if got := s.hooks.posts(pos[2]); got != n {
			s.errorf("the webhook receiver took %d signed %s deliveries, want %d", got, pos[2], n)
		}
	case "at-risk":
		n, _ := strconv.Atoi(pos[2])
		if got := s.runner.Status().AtRisk[pos[1]]; got != n {
			s.errorf("%d reports of %s at risk, want %d", got, pos[1], n)
		}
	case "attempts":
		n, _ := strconv.Atoi(pos[4])
		hour := s.time(pos[3])
		for _, r := range all {
			if r.Target == pos[1] && r.Dimension == pos[2] && r.Hour.Equal(hour) {
				_, as, err := s.st.GetReport(s.ctx, r.ID)
				if err != nil {
					s.fatalf("get report: %v", err)
				}
				if len(as) != n {
					b, _ := json.MarshalIndent(as, "", " ")
					s.errorf("report %s %s %s: %d attempts, want %d:\n%s", pos[1], pos[2], pos[3], len(as), n, b)
				}
				return
			}
		}
		s.errorf("no report %s %s at %s", pos[1], pos[2], pos[3])
	case "held-count":
		n, _ := strconv.Atoi(pos[2])
		var ft holder = s.hooks
		if pos[1] != "hooks" {
			ft = s.targets[pos[1]]
		}
		if got := ft.count(); got != n {
			s.errorf("%s holds %d hours, want %d", pos[1], got, n)
		}
	default:
		s.fatalf("unknown expectation %q", pos[0])
	}
}
