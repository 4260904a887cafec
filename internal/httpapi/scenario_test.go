package httpapi_test

// Billing scenarios: every file testdata/scenarios/*.txt is run as its own
// subtest on a fresh API harness (an empty store and the injected clock at
// apiStart). A scenario is a list of directives, one per line; blank lines
// are ignored and '#' starts a comment (at the start of a line or after
// white space). Every directive talks to the HTTP API (or, for finalize,
// finalizer and settle, to the invoicing job the server runs), and every
// expectation is checked against a real API response. A failure names the
// file and line.
//
// Words are separated by white space; NAME=VALUE words are options, the
// others are positional. Times are RFC 3339.
//
// Setup
//
//	clock TIME
//	    Set the server clock to TIME. The clock only moves forward.
//	meter SLUG COUNT type=EVENTTYPE
//	meter SLUG SUM type=EVENTTYPE value=$.JSONPATH
//	    POST /api/v1/meters (also MAX, MIN, …: any aggregation).
//	customer KEY CURRENCY [subjects=A,B,…] [created=TIME]
//	    POST /api/v1/customers; created= is its createdAt (a customer
//	    imported with its history).
//	subjects CUSTOMER [A,B,…]
//	    PUT /api/v1/customers/CUSTOMER with its fields as they are and
//	    these subjects (none when omitted): moves subjects in or out.
//	plan KEY CURRENCY CADENCE [base=FEE] [prorateIncluded=true]
//	  charge KEY meter=SLUG [included=N|unlimited] PRICING
//	    POST /api/v1/plans with the charges on the following (indented)
//	    charge lines (prorateIncluded=true: the plan prorates included
//	    quantities for short periods). PRICING is one of
//	        per_unit=PRICE
//	        package=SIZE@PRICE
//	        graduated=TIER,TIER,…   volume=TIER,TIER,…
//	    where TIER is UPTO@UNITPRICE[+FLATPRICE] and the last UPTO is inf.
//	publish PLAN
//	    POST /api/v1/plans/PLAN/publish.
//	subscribe NAME CUSTOMER PLAN [start=TIME] [anchor=anniversary|calendar] [tz=ZONE]
//	    POST /api/v1/subscriptions; NAME refers to the subscription later.
//	cancel NAME now|period_end
//	    POST /api/v1/subscriptions/{id}/cancel.
//	change NAME PLAN now|period_end [version=N] [status=CODE]
//	    POST /api/v1/subscriptions/{id}/change to PLAN (its latest
//	    published version, or version N); expect status CODE (default 200).
//	event SUBJECT TYPE TIME [FIELD=VALUE …]
//	    Ingest one CloudEvent; the fields form its data (numbers, true,
//	    false and null are JSON literals, anything else a string).
//	finalize [count=N]
//	    Run the invoicing job (FinalizeDue, default 24 h grace) at the
//	    clock; with count=N, expect N periods finalized.
//	finalizer [every=DURATION]
//	    Start the finalizer as tally serve runs it (the invoicing job's Run
//	    loop, default every 10ms of real time) with the server clock: from
//	    then on, periods are finalized by the server itself as the clock
//	    passes their end plus the grace period.
//	settle
//	    Wait until the running finalizer has made a whole run that began
//	    after this line (so it has seen every earlier line and the clock).
//
// Corrections (an event named with the option event-id=ID, which is its
// CloudEvent id rather than a data field)
//
//	void SUBJECT ID [status=CODE]
//	    POST /api/v1/events/void; expect status CODE (default 200).
//	amend SUBJECT ID FIELD=VALUE …
//	    POST /api/v1/events/amend with these fields as the new data.
//	rule NAME [meter=SLUG] [customer=KEY] [subjects=A,B] [eventFrom=TIME]
//	     [eventTo=TIME] [ingestedFrom=TIME] [ingestedTo=TIME] [group.KEY=VALUE …]
//	    POST /api/v1/cancellation-rules (expects 201); NAME refers to it.
//	preview NAME [rule options] [matched=N] [credit=AMOUNT] [adjustment=AMOUNT]
//	    POST /api/v1/cancellation-rules with dryRun (expects 200, stores
//	    nothing); expect the events matched, the change of the credit the
//	    finalizer would issue and of the drafts' totals.
//	delete-rule NAME
//	    DELETE /api/v1/cancellation-rules/{id} (expects 200).
//	verify
//	    Recompute every meter from the raw events, as tally verify does,
//	    and require the stored rollups to match.
//
// Expectations (FIELD is a JSON field name of the response; VALUE is
// compared as text, times as instants, null matches a null or missing field)
//
//	expect invoices NAME [START …]
//	    GET /api/v1/invoices?subscription=: the period starts, in order.
//	expect invoice NAME START [lines=N] [FIELD=VALUE …]
//	    The invoice of NAME's period starting at START.
//	expect line NAME START KIND/KEY[@PLAN] [FIELD=VALUE …]
//	    That invoice's first line of that kind and key (e.g. usage/emails,
//	    base_fee/base_fee, adjustment/emails); with @PLAN, the first one
//	    whose planKey is PLAN (the lines of a period split by a plan change).
//	expect creditnotes NAME [count=N]
//	    GET /api/v1/credit-notes?subscription=: NAME has N credit notes
//	    (and, with count=0, none).
//	expect creditnote NAME N [lines=N] [FIELD=VALUE …]
//	    NAME's N-th credit note (from 1, in the order of issue).
//	expect creditline NAME N KEY [FIELD=VALUE …]
//	    That credit note's first line for charge KEY.
//	expect subscription NAME [FIELD=VALUE …]
//	    GET /api/v1/subscriptions/{id}; currentPeriod.start and
//	    currentPeriod.end reach into the current period.
//	expect total METER [subject=S] [from=TIME] [to=TIME] value=V
//	    GET /api/v1/meters/METER/query: the sum of its rows' values.
//	expect usage CUSTOMER NAME absent
//	expect usage CUSTOMER NAME [charge=KEY] [FIELD=VALUE …]
//	    GET /api/v1/customers/CUSTOMER/usage: NAME's entry, or its charge.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/usage"
)

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

type scenarioLine struct {
	no   int
	pos  []string
	opts map[string]string
	keys []string // option names in order
}

type scenario struct {
	t     *testing.T
	h     *apiHarness
	fin   *invoicing.Service
	file  string
	line  int
	subs  map[string]string // name → subscription id
	rules map[string]string // name → cancellation rule id
	plan  map[string]any    // plan being collected, posted before the next directive
	seq   int
	// runs counts the running finalizer's runs begun (its clock reads);
	// nil until the finalizer directive.
	runs *atomic.Int64
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	s := &scenario{
		t: t, h: h, file: filepath.Base(file), subs: map[string]string{}, rules: map[string]string{},
		fin: &invoicing.Service{Store: h.st, Usage: &usage.Service{Store: h.st}, Stable: h.pipe.MetersStable, Grace: invoicing.DefaultGrace, Late: h.st},
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	no := 0
	for sc.Scan() {
		no++
		l, ok := parseScenarioLine(sc.Text())
		if !ok {
			continue
		}
		l.no = no
		s.line = no
		if l.pos[0] != "charge" {
			s.flushPlan()
		}
		s.exec(l)
	}
	s.flushPlan()
}

func parseScenarioLine(text string) (scenarioLine, bool) {
	if i := strings.Index(text, "#"); i == 0 {
		text = ""
	} else if i > 0 {
		for j := 0; j < len(text); j++ {
			if text[j] == '#' && (text[j-1] == ' ' || text[j-1] == '\t') {
				text = text[:j]
				break
			}
		}
	}
	words := strings.Fields(text)
	if len(words) == 0 {
		return scenarioLine{}, false
	}
	l := scenarioLine{opts: map[string]string{}}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok && k != "" {
			l.opts[k] = v
			l.keys = append(l.keys, k)
		} else {
			l.pos = append(l.pos, w)
		}
	}
	if len(l.pos) == 0 {
		l.pos = []string{""}
	}
	return l, true
}

func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func (s *scenario) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

// call sends a JSON request, requires status and decodes the body into a
// generic value (numbers kept as json.Number).
func (s *scenario) call(method, path string, body any, status int) any {
	s.t.Helper()
	var in string
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.fatalf("encode request: %v", err)
		}
		in = string(b)
	}
	r := s.h.do(method, path, "application/json", in)
	if r.Status != status {
		s.fatalf("%s %s: got %s, want status %d", method, path, r, status)
	}
	if len(r.Body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		s.fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
	}
	return v
}

func (s *scenario) need(l scenarioLine, n int, usage string) {
	s.t.Helper()
	if len(l.pos) < n {
		s.fatalf("usage: %s", usage)
	}
}

func (s *scenario) time(v string) time.Time {
	s.t.Helper()
	ts, err := time.Parse(time.RFC3339, v)
	if err != nil {
		s.fatalf("bad time %q: %v", v, err)
	}
	return ts
}

func (s *scenario) sub(name string) string {
	s.t.Helper()
	id, ok := s.subs[name]
	if !ok {
		s.fatalf("unknown subscription %q", name)
	}
	return id
}

func (s *scenario) exec(l scenarioLine) {
	s.t.Helper()
	switch l.pos[0] {
	case "clock":
		s.need(l, 2, "clock TIME")
		to := s.time(l.pos[1])
		if d := to.Sub(s.h.clock.Now()); d < 0 {
			s.fatalf("clock %s is before the current clock %s", l.pos[1], s.h.clock.Now().Format(time.RFC3339))
		} else {
			s.h.clock.Advance(d)
		}
	case "meter":
		s.need(l, 3, "meter SLUG AGGREGATION type=EVENTTYPE [value=JSONPATH]")
		m := map[string]any{"slug": l.pos[1], "aggregation": l.pos[2], "eventType": l.opts["type"]}
		if v, ok := l.opts["value"]; ok {
			m["valueProperty"] = v
		}
		s.call("POST", "/api/v1/meters", m, http.StatusCreated)
	case "customer":
		s.need(l, 3, "customer KEY CURRENCY [subjects=A,B] [created=TIME]")
		c := map[string]any{"key": l.pos[1], "name": l.pos[1], "currency": l.pos[2]}
		if v, ok := l.opts["subjects"]; ok {
			c["subjects"] = strings.Split(v, ",")
		}
		if v, ok := l.opts["created"]; ok {
			c["createdAt"] = v
		}
		s.call("POST", "/api/v1/customers", c, http.StatusCreated)
	case "subjects":
		s.need(l, 2, "subjects CUSTOMER [A,B,…]")
		c, _ := s.call("GET", "/api/v1/customers/"+l.pos[1], nil, http.StatusOK).(map[string]any)
		in := map[string]any{"subjects": []string{}}
		for _, k := range []string{"key", "name", "email", "currency", "metadata", "external"} {
			in[k] = c[k]
		}
		if len(l.pos) > 2 {
			in["subjects"] = strings.Split(l.pos[2], ",")
		}
		s.call("PUT", "/api/v1/customers/"+l.pos[1], in, http.StatusOK)
	case "plan":
		s.need(l, 4, "plan KEY CURRENCY CADENCE [base=FEE] [prorateIncluded=true]")
		s.plan = map[string]any{"key": l.pos[1], "name": l.pos[1], "currency": l.pos[2], "cadence": l.pos[3], "charges": []any{}}
		if v, ok := l.opts["base"]; ok {
			s.plan["baseFee"] = v
		}
		if v, ok := l.opts["prorateIncluded"]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				s.fatalf("prorateIncluded=%q: want true or false", v)
			}
			s.plan["prorateIncluded"] = b
		}
	case "charge":
		s.need(l, 2, "charge KEY meter=SLUG [included=N] PRICING")
		if s.plan == nil {
			s.fatalf("charge outside a plan")
		}
		c := map[string]any{"key": l.pos[1], "meter": l.opts["meter"]}
		if v, ok := l.opts["included"]; ok {
			c["included"] = v
		}
		c["pricing"] = s.pricing(l)
		s.plan["charges"] = append(s.plan["charges"].([]any), c)
	case "publish":
		s.need(l, 2, "publish PLAN")
		s.call("POST", "/api/v1/plans/"+l.pos[1]+"/publish", nil, http.StatusOK)
	case "subscribe":
		s.need(l, 4, "subscribe NAME CUSTOMER PLAN [start=TIME] [anchor=…] [tz=…]")
		if _, dup := s.subs[l.pos[1]]; dup {
			s.fatalf("subscription %q already exists", l.pos[1])
		}
		b := map[string]any{"customer": l.pos[2], "plan": l.pos[3]}
		for opt, field := range map[string]string{"start": "start", "anchor": "billingAnchor", "tz": "timeZone"} {
			if v, ok := l.opts[opt]; ok {
				b[field] = v
			}
		}
		v := s.call("POST", "/api/v1/subscriptions", b, http.StatusCreated)
		id, _ := lookup(v, "id").(string)
		if id == "" {
			s.fatalf("created subscription has no id: %v", v)
		}
		s.subs[l.pos[1]] = id
	case "cancel":
		s.need(l, 3, "cancel NAME now|period_end")
		s.call("POST", "/api/v1/subscriptions/"+s.sub(l.pos[1])+"/cancel", map[string]any{"at": l.pos[2]}, http.StatusOK)
	case "change":
		s.need(l, 4, "change NAME PLAN now|period_end [version=N] [status=CODE]")
		b := map[string]any{"plan": l.pos[2], "at": l.pos[3]}
		if v, ok := l.opts["version"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				s.fatalf("version=%q: want a number", v)
			}
			b["planVersion"] = n
		}
		status := http.StatusOK
		if v, ok := l.opts["status"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				s.fatalf("status=%q: want an HTTP status code", v)
			}
			status = n
		}
		s.call("POST", "/api/v1/subscriptions/"+s.sub(l.pos[1])+"/change", b, status)
	case "event":
		s.need(l, 4, "event SUBJECT TYPE TIME [FIELD=VALUE …]")
		s.seq++
		fields := make([]string, 0, len(l.keys))
		id := fmt.Sprintf("%s-%d-%d", s.file, s.line, s.seq)
		for _, k := range l.keys {
			if k == "event-id" {
				id = l.opts[k]
				continue
			}
			v := l.opts[k]
			if !json.Valid([]byte(v)) || strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[") {
				v = strconv.Quote(v)
			}
			fields = append(fields, strconv.Quote(k)+":"+v)
		}
		data := ""
		if len(fields) > 0 {
			data = "{" + strings.Join(fields, ",") + "}"
		}
		body := jsonArray(ce(id, l.pos[2], l.pos[1], l.pos[3], data))
		if r := s.h.do("POST", "/api/v1/events", batchCT, body); r.Status != http.StatusNoContent {
			s.fatalf("ingest: got %s, want status 204", r)
		}
	case "finalize":
		n, err := s.fin.FinalizeDue(context.Background(), s.h.clock.Now())
		if err != nil {
			s.fatalf("FinalizeDue: %v", err)
		}
		if want, ok := l.opts["count"]; ok && strconv.Itoa(n) != want {
			s.errorf("finalize: %d periods finalized, want %s", n, want)
		}
	case "finalizer":
		s.startFinalizer(l)
	case "settle":
		s.settle()
	case "void":
		s.need(l, 3, "void SUBJECT ID [status=CODE]")
		status := http.StatusOK
		if v, ok := l.opts["status"]; ok {
			status, _ = strconv.Atoi(v)
		}
		s.call("POST", "/api/v1/events/void", map[string]any{"source": "test", "id": l.pos[2], "subject": l.pos[1], "reason": "scenario line " + strconv.Itoa(l.no)}, status)
	case "amend":
		s.need(l, 3, "amend SUBJECT ID FIELD=VALUE …")
		data := map[string]any{}
		for _, k := range l.keys {
			var v any
			if err := json.Unmarshal([]byte(l.opts[k]), &v); err != nil {
				v = l.opts[k]
			}
			data[k] = v
		}
		s.call("POST", "/api/v1/events/amend", map[string]any{"source": "test", "id": l.pos[2], "subject": l.pos[1], "data": data, "reason": "scenario line " + strconv.Itoa(l.no)}, http.StatusOK)
	case "rule":
		s.need(l, 2, "rule NAME [meter=SLUG] [customer=KEY] [subjects=A,B] [eventFrom=…] …")
		v := s.call("POST", "/api/v1/cancellation-rules", ruleBody(l, false), http.StatusCreated)
		if got := lookup(v, "state"); got != "active" {
			s.fatalf("rule %s: state %v, want active", l.pos[1], got)
		}
		s.rules[l.pos[1]], _ = lookup(v, "id").(string)
	case "preview":
		s.need(l, 2, "preview NAME [rule options …] [matched=N] [credit=AMOUNT] [adjustment=AMOUNT]")
		v := s.call("POST", "/api/v1/cancellation-rules", ruleBody(l, true), http.StatusOK)
		if want, ok := l.opts["matched"]; ok && fmt.Sprint(lookup(v, "eventsMatched")) != want {
			s.errorf("preview %s: eventsMatched %v, want %s", l.pos[1], lookup(v, "eventsMatched"), want)
		}
		sum := func(list any, field string) string {
			total := decimal.Zero
			items, _ := list.([]any)
			for _, it := range items {
				if d, err := decimal.NewFromString(fmt.Sprint(lookup(it, field))); err == nil {
					total = total.Add(d)
				}
			}
			return total.StringFixed(2)
		}
		if want, ok := l.opts["credit"]; ok {
			if got := sum(lookup(v, "credits"), "change"); got != want {
				s.errorf("preview %s: credit change %s, want %s: %s", l.pos[1], got, want, showValue(lookup(v, "credits")))
			}
		}
		if want, ok := l.opts["adjustment"]; ok {
			if got := sum(lookup(v, "invoices"), "change"); got != want {
				s.errorf("preview %s: draft change %s, want %s: %s", l.pos[1], got, want, showValue(lookup(v, "invoices")))
			}
		}
	case "delete-rule":
		s.need(l, 2, "delete-rule NAME")
		id, ok := s.rules[l.pos[1]]
		if !ok {
			s.fatalf("unknown rule %q", l.pos[1])
		}
		v := s.call("DELETE", "/api/v1/cancellation-rules/"+id, nil, http.StatusOK)
		if got := lookup(v, "state"); got != "deleted" {
			s.fatalf("deleted rule %s: state %v, want deleted", l.pos[1], got)
		}
	case "verify":
		s.h.verify()
	case "expect":
		s.need(l, 2, "expect invoices|invoice|line|subscription|usage|total …")
		s.expect(l)
	default:
		s.fatalf("unknown directive %q", l.pos[0])
	}
}

// startFinalizer runs the invoicing job's Run loop, as tally serve does,
// with the server clock, until the test ends.
func (s *scenario) startFinalizer(l scenarioLine) {
	s.t.Helper()
	if s.runs != nil {
		s.fatalf("the finalizer is running already")
	}
	every := 10 * time.Millisecond
	if v, ok := l.opts["every"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			s.fatalf("every=%q: want a positive duration", v)
		}
		every = d
	}
	s.runs = new(atomic.Int64)
	runs, clock := s.runs, s.h.clock
	now := func() time.Time {
		runs.Add(1)
		return clock.Now()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.fin.Run(ctx, every, now) }()
	s.t.Cleanup(func() { cancel(); <-done })
}

// settle waits until the finalizer has begun a run after this call and
// finished it: Run reads the clock once at the start of each run, so the
// second read from now on comes after a whole run that saw everything
// before.
func (s *scenario) settle() {
	s.t.Helper()
	if s.runs == nil {
		s.fatalf("settle: no finalizer is running (add a finalizer line)")
	}
	want := s.runs.Load() + 2
	deadline := time.Now().Add(30 * time.Second)
	for s.runs.Load() < want {
		if time.Now().After(deadline) {
			s.fatalf("settle: the finalizer made no whole run in 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *scenario) flushPlan() {
	if s.plan == nil {
		return
	}
	p := s.plan
	s.plan = nil
	s.call("POST", "/api/v1/plans", p, http.StatusCreated)
}

func (s *scenario) pricing(l scenarioLine) map[string]any {
	s.t.Helper()
	if v, ok := l.opts["per_unit"]; ok {
		return map[string]any{"model": "per_unit", "unitPrice": v}
	}
	if v, ok := l.opts["package"]; ok {
		size, price, ok := strings.Cut(v, "@")
		if !ok {
			s.fatalf("package=SIZE@PRICE, got %q", v)
		}
		return map[string]any{"model": "package", "packageSize": size, "unitPrice": price}
	}
	for _, model := range []string{"graduated", "volume"} {
		v, ok := l.opts[model]
		if !ok {
			continue
		}
		var tiers []any
		for _, tier := range strings.Split(v, ",") {
			upTo, price, ok := strings.Cut(tier, "@")
			if !ok {
				s.fatalf("tier UPTO@PRICE[+FLAT], got %q", tier)
			}
			tr := map[string]any{"upTo": upTo}
			if upTo == "inf" {
				tr["upTo"] = nil
			}
			if unit, flat, ok := strings.Cut(price, "+"); ok {
				tr["unitPrice"], tr["flatPrice"] = unit, flat
			} else {
				tr["unitPrice"] = price
			}
			tiers = append(tiers, tr)
		}
		return map[string]any{"model": model, "tiers": tiers}
	}
	s.fatalf("charge needs per_unit=, package=, graduated= or volume=")
	return nil
}

// lookup follows a dotted path of object keys.
func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any { l, _ := v.([]any); return l }

func showValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func sameValue(got any, want string) bool {
	g := showValue(got)
	if g == want {
		return true
	}
	if wt, err := time.Parse(time.RFC3339, want); err == nil {
		if gt, err := time.Parse(time.RFC3339, g); err == nil {
			return gt.Equal(wt)
		}
	}
	return false
}

// check compares every option of l except skip against obj's fields.
func (s *scenario) check(what string, obj any, l scenarioLine, skip ...string) {
	s.t.Helper()
	for _, k := range l.keys {
		if contains(skip, k) {
			continue
		}
		if got := lookup(obj, k); !sameValue(got, l.opts[k]) {
			s.errorf("%s: %s = %s, want %s", what, k, showValue(got), l.opts[k])
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (s *scenario) invoices(name string) []any {
	s.t.Helper()
	return asList(lookup(s.call("GET", "/api/v1/invoices?subscription="+s.sub(name), nil, http.StatusOK), "items"))
}

func (s *scenario) creditNotes(name string) []any {
	s.t.Helper()
	return asList(lookup(s.call("GET", "/api/v1/credit-notes?subscription="+s.sub(name), nil, http.StatusOK), "items"))
}

func (s *scenario) invoice(name, start string) any {
	s.t.Helper()
	items := s.invoices(name)
	var starts []string
	for _, inv := range items {
		if sameValue(lookup(inv, "periodStart"), start) {
			return inv
		}
		starts = append(starts, showValue(lookup(inv, "periodStart")))
	}
	s.fatalf("%s has no invoice for the period starting %s; periods start %v", name, start, starts)
	return nil
}

func (s *scenario) expect(l scenarioLine) {
	s.t.Helper()
	switch l.pos[1] {
	case "invoices":
		s.need(l, 3, "expect invoices NAME [START …]")
		var got []string
		for _, inv := range s.invoices(l.pos[2]) {
			got = append(got, showValue(lookup(inv, "periodStart")))
		}
		want := l.pos[3:]
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = sameValue(got[i], want[i])
		}
		if !ok {
			s.errorf("invoices of %s: period starts %v, want %v", l.pos[2], got, want)
		}
	case "invoice":
		s.need(l, 4, "expect invoice NAME START [lines=N] [FIELD=VALUE …]")
		inv := s.invoice(l.pos[2], l.pos[3])
		what := fmt.Sprintf("invoice %s %s", l.pos[2], l.pos[3])
		if want, ok := l.opts["lines"]; ok {
			if n := len(asList(lookup(inv, "lines"))); strconv.Itoa(n) != want {
				s.errorf("%s: %d lines, want %s: %s", what, n, want, showValue(lookup(inv, "lines")))
			}
		}
		s.check(what, inv, l, "lines")
	case "line":
		s.need(l, 5, "expect line NAME START KIND/KEY[@PLAN] [FIELD=VALUE …]")
		sel, plan, byPlan := strings.Cut(l.pos[4], "@")
		kind, key, _ := strings.Cut(sel, "/")
		inv := s.invoice(l.pos[2], l.pos[3])
		what := fmt.Sprintf("invoice %s %s line %s", l.pos[2], l.pos[3], l.pos[4])
		for _, line := range asList(lookup(inv, "lines")) {
			if showValue(lookup(line, "kind")) == kind && showValue(lookup(line, "key")) == key &&
				(!byPlan || showValue(lookup(line, "planKey")) == plan) {
				s.check(what, line, l)
				return
			}
		}
		s.errorf("%s: no such line in %s", what, showValue(lookup(inv, "lines")))
	case "creditnotes":
		s.need(l, 3, "expect creditnotes NAME [count=N]")
		cns := s.creditNotes(l.pos[2])
		if want, ok := l.opts["count"]; ok && strconv.Itoa(len(cns)) != want {
			s.errorf("credit notes of %s: %d, want %s: %s", l.pos[2], len(cns), want, showValue(cns))
		}
	case "creditnote", "creditline":
		s.need(l, 4, "expect creditnote NAME N [lines=N] [FIELD=VALUE …] | expect creditline NAME N KEY [FIELD=VALUE …]")
		cns := s.creditNotes(l.pos[2])
		n, err := strconv.Atoi(l.pos[3])
		if err != nil || n < 1 || n > len(cns) {
			s.fatalf("%s has no credit note %s: %s", l.pos[2], l.pos[3], showValue(cns))
		}
		cn := cns[n-1]
		what := fmt.Sprintf("credit note %d of %s", n, l.pos[2])
		if l.pos[1] == "creditnote" {
			if want, ok := l.opts["lines"]; ok {
				if got := len(asList(lookup(cn, "lines"))); strconv.Itoa(got) != want {
					s.errorf("%s: %d lines, want %s: %s", what, got, want, showValue(lookup(cn, "lines")))
				}
			}
			s.check(what, cn, l, "lines")
			return
		}
		s.need(l, 5, "expect creditline NAME N KEY [FIELD=VALUE …]")
		for _, line := range asList(lookup(cn, "lines")) {
			if showValue(lookup(line, "key")) == l.pos[4] {
				s.check(what+" line "+l.pos[4], line, l)
				return
			}
		}
		s.errorf("%s: no line for %s in %s", what, l.pos[4], showValue(lookup(cn, "lines")))
	case "total":
		s.need(l, 3, "expect total METER [subject=S] [from=TIME] [to=TIME] value=V")
		q := url.Values{}
		for _, k := range []string{"subject", "from", "to"} {
			if v, ok := l.opts[k]; ok {
				q.Set(k, v)
			}
		}
		v := s.call("GET", "/api/v1/meters/"+l.pos[2]+"/query?"+q.Encode(), nil, http.StatusOK)
		total := decimal.Zero
		for _, row := range asList(lookup(v, "data")) {
			d, err := decimal.NewFromString(showValue(lookup(row, "value")))
			if err != nil {
				s.fatalf("total of %s: row value %v: %v", l.pos[2], lookup(row, "value"), err)
			}
			total = total.Add(d)
		}
		if want := decimal.RequireFromString(l.opts["value"]); !total.Equal(want) {
			s.errorf("total of %s %v: %s, want %s", l.pos[2], q, total, want)
		}
	case "subscription":
		s.need(l, 3, "expect subscription NAME [FIELD=VALUE …]")
		v := s.call("GET", "/api/v1/subscriptions/"+s.sub(l.pos[2]), nil, http.StatusOK)
		s.check("subscription "+l.pos[2], v, l)
	case "usage":
		s.need(l, 4, "expect usage CUSTOMER NAME [absent] [charge=KEY] [FIELD=VALUE …]")
		v := s.call("GET", "/api/v1/customers/"+l.pos[2]+"/usage", nil, http.StatusOK)
		id := s.sub(l.pos[3])
		var entry any
		for _, e := range asList(lookup(v, "subscriptions")) {
			if lookup(e, "subscription") == id {
				entry = e
			}
		}
		absent := len(l.pos) > 4 && l.pos[4] == "absent"
		what := fmt.Sprintf("usage of %s %s", l.pos[2], l.pos[3])
		switch {
		case absent && entry != nil:
			s.errorf("%s: present, want absent: %s", what, showValue(entry))
			return
		case absent:
			return
		case entry == nil:
			s.errorf("%s: absent from %s", what, showValue(v))
			return
		}
		key, ok := l.opts["charge"]
		if !ok {
			s.check(what, entry, l)
			return
		}
		for _, c := range asList(lookup(entry, "charges")) {
			if lookup(c, "key") == key {
				s.check(what+" charge "+key, c, l, "charge")
				return
			}
		}
		s.errorf("%s: no charge %q in %s", what, key, showValue(entry))
	default:
		s.fatalf("unknown expectation %q", l.pos[1])
	}
}

// ruleBody is the cancellation rule a rule or preview line describes (a
// dry run for a preview, whose expectations are not rule fields).
func ruleBody(l scenarioLine, dryRun bool) map[string]any {
	b := map[string]any{"reason": "scenario line " + strconv.Itoa(l.no)}
	if dryRun {
		b["dryRun"] = true
	}
	group := map[string]string{}
	for _, k := range l.keys {
		switch {
		case dryRun && (k == "matched" || k == "credit" || k == "adjustment"):
		case k == "subjects":
			b[k] = strings.Split(l.opts[k], ",")
		case strings.HasPrefix(k, "group."):
			group[strings.TrimPrefix(k, "group.")] = l.opts[k]
		default:
			b[k] = l.opts[k]
		}
	}
	if len(group) > 0 {
		b["groupBy"] = group
	}
	return b
}
