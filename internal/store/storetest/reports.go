package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store"
)

// outboxOf returns the store's report outbox; every backend keeps one.
func outboxOf(t *testing.T, s store.Store) report.Outbox {
	t.Helper()
	o, ok := s.(report.Outbox)
	if !ok {
		t.Fatalf("%T does not implement report.Outbox", s)
	}
	return o
}

func testOutbox(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	h0 := bt0.Truncate(time.Hour)
	mk := func(target, sub, cust string, hour time.Time, qty string) report.Report {
		return report.Report{
			ID: report.ReportID(target, sub, "", "emails", hour), StreamID: report.StreamID(target, sub, "", "emails"), Target: target,
			SubscriptionID: sub, CustomerID: cust, Dimension: "emails", Hour: hour, Quantity: dec(qty), Usage: dec(qty), Late: dec("0"),
			State: report.StatePending, NextAttemptAt: bt0, CreatedAt: bt0, UpdatedAt: bt0,
			Resource: report.Resource{CustomerID: cust, SubscriptionID: sub, AzureResourceID: "res-" + cust},
		}
	}
	r1 := mk("azure", "s-1", "c-1", h0, "2.5")
	r2 := mk("azure", "s-2", "c-2", h0, "1")
	r3 := mk("azure", "s-1", "c-1", h0.Add(time.Hour), "4")
	r4 := mk("aws", "s-1", "c-1", h0, "3")
	st1 := report.Stream{ID: r1.StreamID, Target: "azure", SubscriptionID: "s-1", CustomerID: "c-1", Dimension: "emails",
		LastHour: h0.Add(time.Hour), Reported: dec("6.5"), Settled: dec("0"),
		Segments: []report.SegmentState{{Start: bt0, End: bt0.AddDate(0, 1, 0), Usage: dec("1650")}}}
	o := outboxOf(t, e.s)
	if err := o.CommitPlan(ctx, []report.Stream{st1}, []report.Report{r1, r2, r3, r4}, 7); err != nil {
		t.Fatalf("CommitPlan: %v", err)
	}
	// Planning the same reports again stores nothing new.
	again := r1
	again.Quantity = dec("99")
	if err := o.CommitPlan(ctx, nil, []report.Report{again}, 5); err != nil {
		t.Fatalf("CommitPlan again: %v", err)
	}
	opts := gocmp.Options{cmpopts.EquateEmpty(), gocmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
		gocmp.Comparer(func(a, b json.RawMessage) bool { return string(a) == string(b) })}
	e.stages(t, func(t *testing.T) {
		o := outboxOf(t, e.s)
		got, err := o.ListReports(ctx, report.Filter{})
		if err != nil {
			t.Fatalf("ListReports: %v", err)
		}
		want := []report.Report{r1, r2, r4, r3}
		sortReports(want)
		if diff := gocmp.Diff(want, got, opts); diff != "" {
			t.Errorf("ListReports (-want +got):\n%s", diff)
		}
		streams, err := o.LoadStreams(ctx, nil)
		if err != nil {
			t.Fatalf("LoadStreams: %v", err)
		}
		if diff := gocmp.Diff([]report.Stream{st1}, streams, opts); diff != "" {
			t.Errorf("LoadStreams (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			subs []string
			want []report.Stream
		}{{[]string{"s-1", "s-9"}, []report.Stream{st1}}, {[]string{"s-9"}, nil}, {[]string{}, nil}} {
			got, err := o.LoadStreams(ctx, tc.subs)
			if err != nil {
				t.Fatalf("LoadStreams(%v): %v", tc.subs, err)
			}
			if diff := gocmp.Diff(tc.want, got, opts); diff != "" {
				t.Errorf("LoadStreams(%v) (-want +got):\n%s", tc.subs, diff)
			}
		}
		if seq, err := o.LateCursor(ctx); err != nil || seq != 7 {
			t.Errorf("LateCursor = %d, %v; want 7 (a lower one never moves it back)", seq, err)
		}
	})
	o = outboxOf(t, e.s)

	// Filters.
	for _, tc := range []struct {
		name string
		f    report.Filter
		want []report.Report
	}{
		{"customer", report.Filter{CustomerID: "c-2"}, []report.Report{r2}},
		{"subscription and target", report.Filter{SubscriptionID: "s-1", Target: "azure"}, []report.Report{r1, r3}},
		{"hours", report.Filter{HourFrom: h0.Add(time.Hour), HourTo: h0.Add(2 * time.Hour)}, []report.Report{r3}},
		{"state", report.Filter{State: report.StateAccepted}, nil},
	} {
		got, err := o.ListReports(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sortReports(tc.want)
		if diff := gocmp.Diff(tc.want, got, opts); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	all, _ := o.ListReports(ctx, report.Filter{})
	page, err := o.ListReports(ctx, report.Filter{After: all[1].ID, Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != all[2].ID {
		t.Errorf("page after %s: %v, %v; want %s", all[1].ID, page, err, all[2].ID)
	}

	// Due, sending, and due again after a crash.
	due, err := o.DueReports(ctx, "azure", bt0, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("DueReports: %d, %v; want 3", len(due), err)
	}
	if due, _ := o.DueReports(ctx, "azure", bt0.Add(-time.Second), 10); len(due) != 0 {
		t.Errorf("DueReports before they are due: %d", len(due))
	}
	if due, _ := o.DueReports(ctx, "azure", bt0, 2); len(due) != 2 {
		t.Errorf("DueReports with limit 2: %d", len(due))
	}
	sendAt, retryAt := bt0.Add(time.Minute), bt0.Add(3*time.Minute)
	if err := o.MarkSending(ctx, []string{r1.ID, r2.ID}, sendAt, retryAt); err != nil {
		t.Fatalf("MarkSending: %v", err)
	}
	if due, _ := o.DueReports(ctx, "azure", sendAt, 10); len(due) != 1 || due[0].ID != r3.ID {
		t.Errorf("DueReports while two are sending: %v", due)
	}
	if due, _ := o.DueReports(ctx, "azure", retryAt, 10); len(due) != 3 {
		t.Errorf("DueReports after the send timeout: %d, want 3 (sending again after a crash)", len(due))
	}
	if err := o.MarkSending(ctx, []string{"rpt_unknown"}, sendAt, retryAt); !errors.Is(err, report.ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkSending unknown: %v, want ErrNotFound", err)
	}
	got, attempts, err := o.GetReport(ctx, r1.ID)
	if err != nil || got.State != report.StateSending || got.Attempts != 1 || got.FirstAttemptAt == nil || !got.FirstAttemptAt.Equal(sendAt) || len(attempts) != 0 {
		t.Errorf("after MarkSending: %+v, %v, %v", got, attempts, err)
	}
	if unsettled, err := o.Unsettled(ctx, "azure", h0.Add(time.Hour), 10); err != nil || len(unsettled) != 2 {
		t.Errorf("Unsettled: %d, %v; want 2 (the pending and sending reports of hour 0)", len(unsettled), err)
	}

	// Answers: r1 accepted, r2 expired (its stream gives the quantity back),
	// r3 back to pending.
	done := bt0.Add(2 * time.Minute)
	ds := []report.Delivery{
		{ReportID: r1.ID, State: report.StateAccepted, Attempt: report.Attempt{Attempt: 1, At: done, Outcome: "accepted", Code: "Accepted", Response: json.RawMessage(`{"status":"Accepted"}`)}},
		{ReportID: r2.ID, State: report.StateExpired, LastError: "Expired", Attempt: report.Attempt{Attempt: 1, At: done, Outcome: "expired", Code: "Expired"}},
		{ReportID: r3.ID, State: report.StatePending, NextAttemptAt: done.Add(time.Minute), LastError: "503", Attempt: report.Attempt{Attempt: 1, At: done, Outcome: "error", Message: "503"}},
	}
	st2 := report.Stream{ID: r2.StreamID, Target: "azure", SubscriptionID: "s-2", CustomerID: "c-2", Dimension: "emails", Reported: dec("1")}
	if err := o.CommitPlan(ctx, []report.Stream{st2}, nil, 7); err != nil {
		t.Fatal(err)
	}
	if err := o.RecordDeliveries(ctx, ds, done); err != nil {
		t.Fatalf("RecordDeliveries: %v", err)
	}
	e.stages(t, func(t *testing.T) {
		o := outboxOf(t, e.s)
		got, attempts, err := o.GetReport(ctx, r1.ID)
		if err != nil || got.State != report.StateAccepted || len(attempts) != 1 || string(attempts[0].Response) != `{"status":"Accepted"}` || attempts[0].Code != "Accepted" {
			t.Errorf("r1: %+v %+v %v", got, attempts, err)
		}
		got, _, _ = o.GetReport(ctx, r3.ID)
		if got.State != report.StatePending || !got.NextAttemptAt.Equal(done.Add(time.Minute)) || got.LastError != "503" {
			t.Errorf("r3: %+v", got)
		}
		streams, _ := o.LoadStreams(ctx, nil)
		for _, s := range streams {
			if s.ID == st2.ID && !s.Reported.IsZero() {
				t.Errorf("stream of the expired report: reported %s, want 0", s.Reported)
			}
		}
		if _, _, err := o.GetReport(ctx, "rpt_unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetReport unknown: %v", err)
		}
	})
	o = outboxOf(t, e.s)

	// Requeue: only failed reports, with a new resource.
	if err := o.Requeue(ctx, r1.ID, report.Resource{}, done); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Requeue of an accepted report: %v, want a refusal", err)
	}
	if err := o.RecordDeliveries(ctx, []report.Delivery{{ReportID: r4.ID, State: report.StateFailed, LastError: "ResourceNotFound", Attempt: report.Attempt{Attempt: 1, At: done, Outcome: "rejected"}}}, done); err != nil {
		t.Fatal(err)
	}
	fixed := report.Resource{CustomerID: "c-1", SubscriptionID: "s-1", AWSCustomerIdentifier: "cust-fixed"}
	if err := o.Requeue(ctx, r4.ID, fixed, done.Add(time.Hour)); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	got, _, _ = o.GetReport(ctx, r4.ID)
	if got.State != report.StatePending || got.Resource != fixed || !got.NextAttemptAt.Equal(done.Add(time.Hour)) || got.LastError != "" {
		t.Errorf("requeued: %+v", got)
	}
	if err := o.Requeue(ctx, "rpt_unknown", fixed, done); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Requeue unknown: %v", err)
	}
}

// sortReports orders reports as ListReports does: by hour, then id.
func sortReports(rs []report.Report) {
	slices.SortFunc(rs, func(a, b report.Report) int {
		return cmp.Or(a.Hour.Compare(b.Hour), strings.Compare(a.ID, b.ID))
	})
}

func testLateEvents(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	// Ingested at 11:02: events of 10:59 (hour over) and 11:01 (not).
	e.append(t, hour.Add(62*time.Minute),
		evFull("s", "late", "t", "a", hour.Add(59*time.Minute)),
		evFull("s", "timely", "t", "b", hour.Add(61*time.Minute)),
	)
	// Ingested at 12:30: an event of the day before.
	e.append(t, hour.Add(150*time.Minute), evFull("s", "older", "t", "c", hour.Add(-24*time.Hour)))
	o := outboxOf(t, e.s)
	got, err := o.LateEvents(ctx, 0, 10)
	if err != nil {
		t.Fatalf("LateEvents: %v", err)
	}
	if len(got) != 2 || got[0].Subject != "a" || !got[0].Time.Equal(hour.Add(59*time.Minute)) || got[1].Subject != "c" {
		t.Fatalf("LateEvents = %+v, want the events of a and c", got)
	}
	if more, _ := o.LateEvents(ctx, got[0].Seq, 10); len(more) != 1 || more[0].Subject != "c" {
		t.Errorf("LateEvents after %d = %+v", got[0].Seq, more)
	}
	if one, _ := o.LateEvents(ctx, 0, 1); len(one) != 1 {
		t.Errorf("LateEvents limit 1 = %+v", one)
	}
}
