package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var billingOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b decimal.Decimal) bool { return a.Equal(b) }),
}

var bt0 = time.Date(2026, 6, 20, 10, 0, 0, 123000, time.UTC)

func testCustomers(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)

	contoso := billing.Customer{
		ID: "c-1", Key: "contoso", Name: "Contoso", Email: "billing@contoso.example", Currency: "EUR",
		Metadata: map[string]string{"tier": "gold"}, Subjects: []string{"contoso-mail", "contoso-web"},
		External: billing.ExternalRefs{
			Azure:  &billing.AzureRef{ResourceID: "res-1", PlanID: "gold"},
			AWS:    &billing.AWSRef{CustomerIdentifier: "cid", CustomerAWSAccountID: "123456789012"},
			Stripe: &billing.StripeRef{CustomerID: "cus_1"},
		},
		CreatedAt: bt0, UpdatedAt: bt0,
	}
	fabrikam := billing.Customer{ID: "c-2", Key: "fabrikam", Name: "Fabrikam", Currency: "USD", Subjects: []string{"fab"}, CreatedAt: bt0, UpdatedAt: bt0}
	for _, c := range []billing.Customer{contoso, fabrikam} {
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("CreateCustomer(%s): %v", c.Key, err)
		}
	}
	contoso.Version, fabrikam.Version = 1, 1 // whatever was given
	// Subjects nobody owned before are owned since the beginning of time.
	contoso.SubjectHistory = []billing.Ownership{{Subject: "contoso-mail"}, {Subject: "contoso-web"}}
	fabrikam.SubjectHistory = []billing.Ownership{{Subject: "fab"}}
	get := func(idOrKey string, want billing.Customer) {
		t.Helper()
		got, err := s.GetCustomer(ctx, idOrKey)
		if err != nil {
			t.Fatalf("GetCustomer(%q): %v", idOrKey, err)
		}
		if diff := cmp.Diff(want, got, billingOpts); diff != "" {
			t.Errorf("GetCustomer(%q) (-want +got):\n%s", idOrKey, diff)
		}
	}
	get("c-1", contoso)
	get("contoso", contoso)

	for _, tc := range []struct {
		name string
		c    billing.Customer
	}{
		{"same key", billing.Customer{ID: "c-3", Key: "contoso", Name: "X", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0}},
		{"same id", billing.Customer{ID: "c-1", Key: "other", Name: "X", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0}},
		{"subject of another customer", billing.Customer{ID: "c-3", Key: "other", Name: "X", Currency: "EUR", Subjects: []string{"new", "fab"}, CreatedAt: bt0, UpdatedAt: bt0}},
	} {
		err := s.CreateCustomer(ctx, tc.c)
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateCustomer (%s): got %v, want ErrConflict", tc.name, err)
		}
	}
	var taken *store.SubjectTakenError
	if err := s.CreateCustomer(ctx, billing.Customer{ID: "c-3", Key: "other", Name: "X", Currency: "EUR", Subjects: []string{"fab"}}); !errors.As(err, &taken) || taken.Owner != "fabrikam" || taken.Subject != "fab" {
		t.Errorf("CreateCustomer with a taken subject: got %v, want a SubjectTakenError naming fab and fabrikam", err)
	}
	// Nothing of a refused customer is kept: "new" is still free.
	if _, err := s.CustomerBySubject(ctx, "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CustomerBySubject(new) after a refused create: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetCustomer(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCustomer(nobody): got %v, want ErrNotFound", err)
	}

	// Update: moves a subject, keeps CreatedAt.
	upd := contoso
	upd.Name, upd.Subjects, upd.UpdatedAt, upd.CreatedAt = "Contoso Ltd", []string{"contoso-web", "contoso-api"}, bt0.Add(time.Hour), time.Time{}
	if err := s.UpdateCustomer(ctx, upd); err != nil {
		t.Fatalf("UpdateCustomer: %v", err)
	}
	upd.CreatedAt = bt0
	upd.Version = 2
	// Ownership is kept in whole minutes: a subject given up is owned to
	// the end of that minute.
	upd.SubjectHistory = []billing.Ownership{{Subject: "contoso-api"}, {Subject: "contoso-mail", To: timePtr(ceilMinute(bt0.Add(time.Hour)))}, {Subject: "contoso-web"}}
	get("contoso", upd)
	if _, err := s.CustomerBySubject(ctx, "contoso-mail"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a subject removed by UpdateCustomer is still owned: %v", err)
	}
	if c, err := s.CustomerBySubject(ctx, "contoso-api"); err != nil || c.ID != "c-1" {
		t.Errorf("CustomerBySubject(contoso-api) = %v, %v; want c-1", c.ID, err)
	}
	bad := fabrikam
	bad.Subjects = []string{"contoso-web"}
	if err := s.UpdateCustomer(ctx, bad); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateCustomer taking another's subject: got %v, want ErrConflict", err)
	}
	bad = fabrikam
	bad.Key = "contoso"
	if err := s.UpdateCustomer(ctx, bad); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateCustomer to a taken key: got %v, want ErrConflict", err)
	}
	// A write based on an older version stores nothing.
	stale := upd
	stale.Version, stale.Name = 1, "Stale"
	var se *store.StaleError
	if err := s.UpdateCustomer(ctx, stale); !errors.As(err, &se) || !errors.Is(err, store.ErrConflict) || se.Stored != 2 || se.Read != 1 {
		t.Errorf("UpdateCustomer based on version 1 of 2: got %v, want a StaleError", err)
	}
	get("contoso", upd)
	if err := s.UpdateCustomer(ctx, billing.Customer{ID: "nope", Key: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateCustomer(unknown): got %v, want ErrNotFound", err)
	}

	// Users.
	u1 := billing.User{ID: "u-1", CustomerID: "c-1", Key: "alice", Email: "alice@contoso.example", Name: "Alice", CreatedAt: bt0}
	u2 := billing.User{ID: "u-2", CustomerID: "c-1", Email: "bob@contoso.example", CreatedAt: bt0.Add(time.Second)}
	for _, u := range []billing.User{u1, u2} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser(%s): %v", u.ID, err)
		}
	}
	if err := s.CreateUser(ctx, billing.User{ID: "u-3", CustomerID: "c-1", Key: "alice", CreatedAt: bt0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser with a taken key: got %v, want ErrConflict", err)
	}
	if err := s.CreateUser(ctx, billing.User{ID: "u-3", CustomerID: "c-2", Key: "alice", CreatedAt: bt0}); err != nil {
		t.Errorf("CreateUser with a key used in another customer: %v", err)
	}
	if err := s.CreateUser(ctx, billing.User{ID: "u-4", CustomerID: "nope", Key: "x", CreatedAt: bt0}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateUser of an unknown customer: got %v, want ErrNotFound", err)
	}
	users, err := s.ListUsers(ctx, "c-1")
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if diff := cmp.Diff([]billing.User{u1, u2}, users, billingOpts); diff != "" {
		t.Errorf("ListUsers (-want +got):\n%s", diff)
	}

	// Delete keeps the customer, frees key and subjects; idempotent.
	at := bt0.Add(2 * time.Hour)
	if err := s.DeleteCustomer(ctx, "c-2", at); err != nil {
		t.Fatalf("DeleteCustomer: %v", err)
	}
	if err := s.DeleteCustomer(ctx, "c-2", at.Add(time.Hour)); err != nil {
		t.Fatalf("DeleteCustomer again: %v", err)
	}
	if err := s.DeleteCustomer(ctx, "nope", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteCustomer(unknown): got %v, want ErrNotFound", err)
	}
	deleted := fabrikam
	deleted.DeletedAt, deleted.UpdatedAt, deleted.Version = &at, at, 2
	deleted.SubjectHistory = []billing.Ownership{{Subject: "fab", To: timePtr(ceilMinute(at))}}
	get("c-2", deleted)
	get("fabrikam", deleted)
	if err := s.UpdateCustomer(ctx, fabrikam); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateCustomer of a deleted customer: got %v, want ErrNotFound", err)
	}
	if err := s.CreateUser(ctx, billing.User{ID: "u-5", CustomerID: "c-2", Key: "z", CreatedAt: bt0}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateUser of a deleted customer: got %v, want ErrNotFound", err)
	}
	reborn := billing.Customer{ID: "c-4", Key: "fabrikam", Name: "Fabrikam again", Currency: "USD", Subjects: []string{"fab"}, CreatedAt: at, UpdatedAt: at, Version: 1}
	if err := s.CreateCustomer(ctx, reborn); err != nil {
		t.Fatalf("CreateCustomer with a deleted customer's key and subjects: %v", err)
	}
	// fab had an owner before, whose it is to the end of at's minute.
	reborn.SubjectHistory = []billing.Ownership{{Subject: "fab", From: timePtr(ceilMinute(at))}}
	get("fabrikam", reborn)
	get("c-2", deleted)

	live, err := s.ListCustomers(ctx, false)
	if err != nil {
		t.Fatalf("ListCustomers: %v", err)
	}
	if diff := cmp.Diff([]billing.Customer{upd, reborn}, live, billingOpts); diff != "" {
		t.Errorf("ListCustomers(live) (-want +got):\n%s", diff)
	}
	all, err := s.ListCustomers(ctx, true)
	if err != nil {
		t.Fatalf("ListCustomers: %v", err)
	}
	if diff := cmp.Diff([]billing.Customer{upd, deleted, reborn}, all, billingOpts); diff != "" {
		t.Errorf("ListCustomers(all) (-want +got):\n%s", diff)
	}
	pageOf := func(p store.CustomerPage, want ...billing.Customer) {
		t.Helper()
		got, err := s.ListCustomerPage(ctx, p)
		if err != nil {
			t.Fatalf("ListCustomerPage(%+v): %v", p, err)
		}
		if want == nil {
			want = []billing.Customer{}
		}
		if diff := cmp.Diff(want, got, billingOpts); diff != "" {
			t.Errorf("ListCustomerPage(%+v) (-want +got):\n%s", p, diff)
		}
	}
	pageOf(store.CustomerPage{IncludeDeleted: true, Limit: 2}, upd, deleted)
	pageOf(store.CustomerPage{IncludeDeleted: true, AfterKey: deleted.Key, AfterID: deleted.ID, Limit: 2}, reborn)
	pageOf(store.CustomerPage{AfterKey: upd.Key, AfterID: upd.ID, Limit: 1}, reborn)
	// A key ties: the id decides.
	pageOf(store.CustomerPage{AfterKey: "fabrikam", AfterID: "c-3"}, reborn)
	pageOf(store.CustomerPage{AfterKey: reborn.Key, AfterID: reborn.ID})
	t.Run("SubjectHistory", func(t *testing.T) { testSubjectHistory(t, b) })
	t.Run("CreatedInThePast", func(t *testing.T) { testCreatedInThePast(t, b) })
}

func timePtr(t time.Time) *time.Time { return &t }

// ceilMinute is the first whole minute at or after t.
func ceilMinute(t time.Time) time.Time {
	m := t.Truncate(time.Minute)
	if m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}

// testSubjectHistory: moving a subject between customers keeps when each
// owned it.
func testSubjectHistory(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	t0 := bt0
	history := func(id string, want []billing.Ownership) {
		t.Helper()
		c, err := s.GetCustomer(ctx, id)
		if err != nil {
			t.Fatalf("GetCustomer(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, c.SubjectHistory, billingOpts); diff != "" {
			t.Errorf("SubjectHistory of %s (-want +got):\n%s", id, diff)
		}
	}
	owners := func(subject string, want ...string) {
		t.Helper()
		got, err := s.CustomersOfSubject(ctx, subject)
		if err != nil {
			t.Fatalf("CustomersOfSubject(%s): %v", subject, err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("CustomersOfSubject(%s) (-want +got):\n%s", subject, diff)
		}
	}
	a := billing.Customer{ID: "a", Key: "a", Name: "A", Currency: "EUR", Subjects: []string{"s1", "s2"}, CreatedAt: t0, UpdatedAt: t0}
	bc := billing.Customer{ID: "b", Key: "b", Name: "B", Currency: "EUR", Subjects: []string{"s3"}, CreatedAt: t0, UpdatedAt: t0}
	for _, c := range []billing.Customer{a, bc} {
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("CreateCustomer(%s): %v", c.ID, err)
		}
	}
	owners("s1", "a")
	owners("nobody")

	// A gives s1 up at t1, within a minute; B takes it at t2, at the start
	// of a later one. An update that keeps a subject leaves its ownership
	// as it was.
	t1, t2 := t0.Add(90*time.Minute+30*time.Second), t0.Add(2*time.Hour).Truncate(time.Minute)
	a.Subjects, a.UpdatedAt = []string{"s2"}, t1
	if err := s.UpdateCustomer(ctx, a); err != nil {
		t.Fatalf("UpdateCustomer(a): %v", err)
	}
	bc.Subjects, bc.UpdatedAt = []string{"s1", "s3"}, t2
	if err := s.UpdateCustomer(ctx, bc); err != nil {
		t.Fatalf("UpdateCustomer(b): %v", err)
	}
	ct1 := ceilMinute(t1)
	history("a", []billing.Ownership{{Subject: "s1", To: &ct1}, {Subject: "s2"}})
	history("b", []billing.Ownership{{Subject: "s3"}, {Subject: "s1", From: &t2}})
	owners("s1", "a", "b")
	if c, err := s.CustomerBySubject(ctx, "s1"); err != nil || c.ID != "b" {
		t.Errorf("CustomerBySubject(s1) = %q, %v; want b", c.ID, err)
	}
	// The customers read by ListCustomers carry the same history.
	all, err := s.ListCustomers(ctx, false)
	if err != nil || len(all) != 2 {
		t.Fatalf("ListCustomers = %d customers, %v; want 2", len(all), err)
	}
	if diff := cmp.Diff([]billing.Ownership{{Subject: "s3"}, {Subject: "s1", From: &t2}}, all[1].SubjectHistory, billingOpts); diff != "" {
		t.Errorf("ListCustomers: SubjectHistory of b (-want +got):\n%s", diff)
	}

	// A refused write records nothing: s2 is A's, so C gets nothing.
	c := billing.Customer{ID: "c", Key: "c", Name: "C", Currency: "EUR", Subjects: []string{"s4", "s2"}, CreatedAt: t2, UpdatedAt: t2}
	var taken *store.SubjectTakenError
	if err := s.CreateCustomer(ctx, c); !errors.As(err, &taken) {
		t.Fatalf("CreateCustomer(c) with A's subject: got %v, want a SubjectTakenError", err)
	}
	owners("s4")
	owners("s2", "a")

	// B gives s1 back at t3 and A takes it in the same minute: that minute
	// is still B's, so A owns it from the next. (A clock behind B's,
	// t3 > t4, changes nothing.)
	t3 := t0.Add(3 * time.Hour).Truncate(time.Minute).Add(20 * time.Second)
	t4 := t3.Add(-10 * time.Second)
	bc.Subjects, bc.UpdatedAt = []string{"s3"}, t3
	if err := s.UpdateCustomer(ctx, bc); err != nil {
		t.Fatalf("UpdateCustomer(b): %v", err)
	}
	a.Subjects, a.UpdatedAt = []string{"s1", "s2"}, t4
	if err := s.UpdateCustomer(ctx, a); err != nil {
		t.Fatalf("UpdateCustomer(a): %v", err)
	}
	ct3 := ceilMinute(t3)
	history("a", []billing.Ownership{{Subject: "s1", To: &ct1}, {Subject: "s2"}, {Subject: "s1", From: &ct3}})
	history("b", []billing.Ownership{{Subject: "s3"}, {Subject: "s1", From: &t2, To: &ct3}})

	// Deleting A ends every ownership it has, and only those.
	t5 := t0.Add(4 * time.Hour)
	if err := s.DeleteCustomer(ctx, "a", t5); err != nil {
		t.Fatalf("DeleteCustomer(a): %v", err)
	}
	if err := s.DeleteCustomer(ctx, "a", t5.Add(time.Hour)); err != nil {
		t.Fatalf("DeleteCustomer(a) again: %v", err)
	}
	ct5 := ceilMinute(t5)
	history("a", []billing.Ownership{{Subject: "s1", To: &ct1}, {Subject: "s2", To: &ct5}, {Subject: "s1", From: &ct3, To: &ct5}})
	history("b", []billing.Ownership{{Subject: "s3"}, {Subject: "s1", From: &t2, To: &ct3}})
	if _, err := s.CustomerBySubject(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CustomerBySubject(s1) after deleting its owner: got %v, want ErrNotFound", err)
	}
	owners("s2", "a")

	// So each minute of s1's usage that day is A's, B's, or, between A's
	// giving it up and B's taking it, and after A's deletion, nobody's;
	// never both.
	day := t0.Truncate(24 * time.Hour)
	ga, _ := s.GetCustomer(ctx, "a")
	gb, _ := s.GetCustomer(ctx, "b")
	_, pa := ga.UsageSubjects(day, day.Add(24*time.Hour))
	_, pb := gb.UsageSubjects(day, day.Add(24*time.Hour))
	in := func(ss []billing.Span, m time.Time) bool {
		for _, sp := range ss {
			if !m.Before(sp.From) && m.Before(sp.To) {
				return true
			}
		}
		return false
	}
	for m := day; m.Before(day.Add(24 * time.Hour)); m = m.Add(time.Minute) {
		want := "nobody"
		switch {
		case m.Before(ct1) || (!m.Before(ct3) && m.Before(ct5)):
			want = "a"
		case !m.Before(t2) && m.Before(ct3):
			want = "b"
		}
		got := "nobody"
		switch ia, ib := in(pa["s1"], m), in(pb["s1"], m); {
		case ia && ib:
			got = "both"
		case ia:
			got = "a"
		case ib:
			got = "b"
		}
		if got != want {
			t.Fatalf("minute %s of s1 is %s's, want %s's", m.Format(time.RFC3339), got, want)
		}
	}
}

// testCreatedInThePast: a customer created with a CreatedAt before the
// write (imported with its history, UpdatedAt the write's instant) owns the
// subjects it is created with from CreatedAt's minute, not from the write:
// since the beginning of time for a subject nobody owned, and from the end
// of the last ownership for one another customer gave up after CreatedAt,
// so that no minute of a subject's usage is two customers'.
func testCreatedInThePast(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	now := bt0.Add(35 * 24 * time.Hour)
	early := bt0.Add(-19 * 24 * time.Hour).Add(90 * time.Second) // within a minute
	gone := bt0.Add(-5 * 24 * time.Hour).Add(30 * time.Second)

	// "moved" was A's until gone; "old" was B's until early-ish, before
	// the import's CreatedAt minute ends.
	a := billing.Customer{ID: "a", Key: "a", Name: "A", Currency: "EUR", Subjects: []string{"moved"}, CreatedAt: bt0.Add(-60 * 24 * time.Hour), UpdatedAt: bt0.Add(-60 * 24 * time.Hour)}
	bc := billing.Customer{ID: "b", Key: "b", Name: "B", Currency: "EUR", Subjects: []string{"old"}, CreatedAt: a.CreatedAt, UpdatedAt: a.CreatedAt}
	for _, c := range []billing.Customer{a, bc} {
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("CreateCustomer(%s): %v", c.ID, err)
		}
	}
	if err := s.DeleteCustomer(ctx, "a", gone); err != nil {
		t.Fatalf("DeleteCustomer(a): %v", err)
	}
	if err := s.DeleteCustomer(ctx, "b", early.Add(-time.Hour)); err != nil {
		t.Fatalf("DeleteCustomer(b): %v", err)
	}

	imp := billing.Customer{ID: "i", Key: "imported", Name: "Imported", Currency: "EUR", Subjects: []string{"fresh", "moved", "old"}, CreatedAt: early, UpdatedAt: now}
	if err := s.CreateCustomer(ctx, imp); err != nil {
		t.Fatalf("CreateCustomer(imported): %v", err)
	}
	got, err := s.GetCustomer(ctx, "imported")
	if err != nil {
		t.Fatalf("GetCustomer(imported): %v", err)
	}
	if !got.CreatedAt.Equal(early) || !got.UpdatedAt.Equal(now) {
		t.Errorf("imported: CreatedAt %s, UpdatedAt %s; want %s, %s", got.CreatedAt, got.UpdatedAt, early, now)
	}
	fromMoved, fromOld := ceilMinute(gone), early.Truncate(time.Minute)
	want := []billing.Ownership{{Subject: "fresh"}, {Subject: "old", From: &fromOld}, {Subject: "moved", From: &fromMoved}}
	if diff := cmp.Diff(want, got.SubjectHistory, billingOpts); diff != "" {
		t.Errorf("SubjectHistory of the imported customer (-want +got):\n%s", diff)
	}
}

func testPlans(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	d := decimal.RequireFromString
	upTo := d("1000")
	v1 := billing.Plan{
		ID: "p-1", Key: "mail-pro", Version: 1, Name: "Mail Pro", Currency: "EUR", Cadence: billing.CadenceMonthly,
		BaseFee: d("10.00"), Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0,
		// A plan-level setting that must survive the store: it decides
		// how every invoice of the version and its corrections are rated.
		ProrateIncluded: true,
		Charges: []billing.PlanCharge{{
			Key: "emails", Meter: "emails", FilterGroupBy: map[string]string{"kind": "bulk"},
			Included: billing.IncludedQuantity(d("1000")),
			Pricing: billing.Pricing{Model: billing.ModelGraduated, Tiers: []billing.Tier{
				{UpTo: &upTo, UnitPrice: d("0.01")}, {UnitPrice: d("0.005"), FlatPrice: d("1")},
			}},
			Reporting: []billing.Reporting{{Target: "azure", Dimension: "emails", UnitSize: d("1000")}},
		}},
	}
	if err := s.CreatePlan(ctx, v1); err != nil {
		t.Fatalf("CreatePlan: %v", err)
	}
	other := billing.Plan{ID: "p-2", Key: "basic", Version: 1, Name: "Basic", Currency: "EUR", Cadence: billing.CadenceYearly, Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0}
	if err := s.CreatePlan(ctx, other); err != nil {
		t.Fatalf("CreatePlan: %v", err)
	}
	for _, p := range []billing.Plan{{ID: "p-3", Key: "mail-pro", Version: 1}, {ID: "p-1", Key: "x", Version: 1}} {
		if err := s.CreatePlan(ctx, p); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreatePlan(%s, %s): got %v, want ErrConflict", p.ID, p.Key, err)
		}
	}
	get := func(idOrKey string, version int, want billing.Plan) {
		t.Helper()
		got, err := s.GetPlan(ctx, idOrKey, version)
		if err != nil {
			t.Fatalf("GetPlan(%q, %d): %v", idOrKey, version, err)
		}
		if diff := cmp.Diff(want, got, billingOpts); diff != "" {
			t.Errorf("GetPlan(%q, %d) (-want +got):\n%s", idOrKey, version, diff)
		}
	}
	get("mail-pro", 0, v1)
	get("p-1", 1, v1)
	if _, err := s.GetPlan(ctx, "mail-pro", 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPlan(version 2): got %v, want ErrNotFound", err)
	}
	if _, err := s.GetPlan(ctx, "nope", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPlan(nope): got %v, want ErrNotFound", err)
	}

	// A draft can be edited in place, but not into a second draft.
	v1.Name, v1.UpdatedAt = "Mail Pro (edited)", bt0.Add(time.Minute)
	if err := s.SavePlanDraft(ctx, v1); err != nil {
		t.Fatalf("SavePlanDraft(draft): %v", err)
	}
	get("mail-pro", 0, v1)
	// SavePlanDraftIf: check sees the latest version as stored; its error
	// stores nothing.
	refused := errors.New("refused")
	cond := v1
	cond.Name = "Mail Pro (conditional)"
	var seen billing.Plan
	if err := s.SavePlanDraftIf(ctx, cond, func(latest billing.Plan) error { seen = latest; return refused }); !errors.Is(err, refused) {
		t.Errorf("SavePlanDraftIf with a refusing check: got %v, want its error", err)
	}
	if seen.Name != v1.Name || seen.Version != 1 {
		t.Errorf("SavePlanDraftIf's check saw %+v, want the stored draft", seen)
	}
	get("mail-pro", 0, v1)
	if err := s.SavePlanDraftIf(ctx, cond, func(billing.Plan) error { return nil }); err != nil {
		t.Fatalf("SavePlanDraftIf: %v", err)
	}
	get("mail-pro", 0, cond)
	if err := s.SavePlanDraft(ctx, v1); err != nil {
		t.Fatalf("SavePlanDraft(draft): %v", err)
	}
	early := v1
	early.Version = 2
	if err := s.SavePlanDraft(ctx, early); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SavePlanDraft(version 2 over a draft 1): got %v, want ErrConflict", err)
	}

	// Publishing freezes the version; it is idempotent.
	at := bt0.Add(time.Hour)
	pub, err := s.PublishPlan(ctx, "mail-pro", 0, at)
	if err != nil {
		t.Fatalf("PublishPlan: %v", err)
	}
	v1p := v1
	v1p.Status, v1p.PublishedAt, v1p.UpdatedAt = billing.PlanPublished, &at, at
	if diff := cmp.Diff(v1p, pub, billingOpts); diff != "" {
		t.Errorf("PublishPlan (-want +got):\n%s", diff)
	}
	if again, err := s.PublishPlan(ctx, "p-1", 1, at.Add(time.Hour)); err != nil || !again.PublishedAt.Equal(at) {
		t.Errorf("PublishPlan again = %v, %v; want unchanged", again.PublishedAt, err)
	}
	if err := s.SavePlanDraft(ctx, v1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SavePlanDraft(published version): got %v, want ErrConflict", err)
	}
	get("mail-pro", 1, v1p)

	// Changes make version 2.
	v2 := v1
	v2.Version, v2.BaseFee, v2.CreatedAt, v2.UpdatedAt = 2, d("12"), at, at
	if err := s.SavePlanDraft(ctx, v2); err != nil {
		t.Fatalf("SavePlanDraft(version 2): %v", err)
	}
	get("mail-pro", 0, v2)
	get("mail-pro", 1, v1p)
	skip := v2
	skip.Version = 4
	if err := s.SavePlanDraft(ctx, skip); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SavePlanDraft(version 4 after 2): got %v, want ErrConflict", err)
	}
	rekey := v2
	rekey.Key = "renamed"
	if err := s.SavePlanDraft(ctx, rekey); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SavePlanDraft with another key: got %v, want ErrConflict", err)
	}
	if err := s.SavePlanDraft(ctx, billing.Plan{ID: "nope", Key: "nope", Version: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SavePlanDraft(unknown plan): got %v, want ErrNotFound", err)
	}

	list, err := s.ListPlans(ctx)
	if err != nil {
		t.Fatalf("ListPlans: %v", err)
	}
	if diff := cmp.Diff([]billing.Plan{other, v2}, list, billingOpts); diff != "" {
		t.Errorf("ListPlans (-want +got):\n%s", diff)
	}
	versions, err := s.ListPlanVersions(ctx, "mail-pro")
	if err != nil {
		t.Fatalf("ListPlanVersions: %v", err)
	}
	if diff := cmp.Diff([]billing.Plan{v1p, v2}, versions, billingOpts); diff != "" {
		t.Errorf("ListPlanVersions (-want +got):\n%s", diff)
	}
	if _, err := s.ListPlanVersions(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ListPlanVersions(nope): got %v, want ErrNotFound", err)
	}
}

// testSaveInvoices checks the batch write and the reads FinalizeDue uses:
// SaveInvoices keeps SaveInvoice's one-invoice-per-period rule within a
// call and across calls and is all or nothing; InvoicedPeriods and
// ListInvoices by SubscriptionIDs see exactly what was stored.
func testSaveInvoices(t *testing.T, b Backend) {
	e := newEnv(t, b)
	s, ctx := e.s, ctxOf(t)
	d := decimal.RequireFromString

	if got, err := s.InvoicedPeriods(ctx); err != nil || len(got) != 0 {
		t.Fatalf("InvoicedPeriods on an empty store = %v, %v; want none", got, err)
	}
	if got, err := s.SaveInvoices(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("SaveInvoices(nil) = %v, %v; want nothing", got, err)
	}
	for _, c := range []billing.Customer{
		{ID: "c-1", Key: "contoso", Name: "Contoso", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0},
		{ID: "c-2", Key: "fabrikam", Name: "Fabrikam", Currency: "EUR", CreatedAt: bt0, UpdatedAt: bt0},
	} {
		if err := s.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("CreateCustomer(%s): %v", c.Key, err)
		}
	}
	plan := billing.Plan{
		ID: "p-1", Key: "mail-pro", Version: 1, Name: "Mail Pro", Currency: "EUR", Cadence: billing.CadenceMonthly,
		BaseFee: d("10.00"), Status: billing.PlanDraft, CreatedAt: bt0, UpdatedAt: bt0,
		Charges: []billing.PlanCharge{{
			Key: "emails", Meter: "emails", Included: billing.IncludedQuantity(d("1000")),
			Pricing: billing.Pricing{Model: billing.ModelPackage, PackageSize: d("1000"), UnitPrice: d("5.00")},
		}},
	}
	if err := s.CreatePlan(ctx, plan); err != nil {
		t.Fatalf("CreatePlan: %v", err)
	}
	plan, err := s.PublishPlan(ctx, "p-1", 1, bt0)
	if err != nil {
		t.Fatalf("PublishPlan: %v", err)
	}
	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	sub := func(id, customer string) billing.Subscription {
		return billing.Subscription{
			ID: id, CustomerID: customer, PlanID: "p-1", PlanKey: "mail-pro", PlanVersion: 1, Cadence: billing.CadenceMonthly,
			Start: start, BillingAnchor: billing.AnchorAnniversary, TimeZone: "UTC", Status: billing.SubscriptionActive,
			CreatedAt: bt0, UpdatedAt: bt0,
		}
	}
	s1, s2 := sub("s-1", "c-1"), sub("s-2", "c-2")
	for _, x := range []billing.Subscription{s1, s2} {
		if err := s.CreateSubscription(ctx, x); err != nil {
			t.Fatalf("CreateSubscription(%s): %v", x.ID, err)
		}
	}
	final := func(sb billing.Subscription, k int, emails string) billing.Invoice {
		t.Helper()
		p, err := billing.PeriodAt(sb.Start, sb.Cadence, sb.BillingAnchor, time.UTC, sb.Start.AddDate(0, k, 1))
		if err != nil || p.Index != k {
			t.Fatalf("PeriodAt(%d) = %+v, %v", k, p, err)
		}
		inv, err := billing.BuildInvoice(sb, plan, p, map[string]decimal.Decimal{"emails": d(emails)}, nil)
		if err != nil {
			t.Fatalf("BuildInvoice: %v", err)
		}
		at := p.End.Add(24 * time.Hour)
		inv.Status, inv.FinalizedAt = billing.InvoiceFinalized, &at
		return inv
	}
	type result struct {
		ID      string
		Total   string
		Created bool
	}
	results := func(saved []store.SavedInvoice) []result {
		out := []result{}
		for _, x := range saved {
			out = append(out, result{x.Invoice.ID, x.Invoice.Total.StringFixed(2), x.Created})
		}
		return out
	}

	a0, b0 := final(s1, 0, "12345"), final(s2, 0, "935")
	// The same period twice in one call: the first one wins.
	saved, err := s.SaveInvoices(ctx, []billing.Invoice{a0, b0, final(s1, 0, "935")})
	if err != nil {
		t.Fatalf("SaveInvoices: %v", err)
	}
	want := []result{{a0.ID, "70.00", true}, {b0.ID, "10.00", true}, {a0.ID, "70.00", false}}
	if diff := cmp.Diff(want, results(saved)); diff != "" {
		t.Errorf("SaveInvoices (-want +got):\n%s", diff)
	}
	if len(saved) == 3 {
		if diff := cmp.Diff(a0, saved[0].Invoice); diff != "" {
			t.Errorf("SaveInvoices returned (-want +got):\n%s", diff)
		}
	}
	// Across calls, and between SaveInvoice and SaveInvoices, too.
	if got, created, err := s.SaveInvoice(ctx, final(s2, 0, "12345")); err != nil || created || got.Total.StringFixed(2) != "10.00" {
		t.Errorf("SaveInvoice of a period SaveInvoices stored = %s, created %v, %v; want the stored 10.00", got.Total, created, err)
	}
	a1 := final(s1, 1, "2001")
	saved, err = s.SaveInvoices(ctx, []billing.Invoice{final(s2, 0, "0"), a1})
	if err != nil {
		t.Fatalf("SaveInvoices: %v", err)
	}
	if diff := cmp.Diff([]result{{b0.ID, "10.00", false}, {a1.ID, "20.00", true}}, results(saved)); diff != "" {
		t.Errorf("SaveInvoices again (-want +got):\n%s", diff)
	}

	// All or nothing: an unknown subscription stores none of the batch.
	b1 := final(s2, 1, "1")
	if _, err := s.SaveInvoices(ctx, []billing.Invoice{b1, final(sub("s-9", "c-1"), 0, "1")}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveInvoices with an unknown subscription: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetInvoice(ctx, b1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetInvoice of an invoice from a failed batch: got %v, want ErrNotFound", err)
	}

	check := func() {
		t.Helper()
		periods, err := s.InvoicedPeriods(ctx)
		if err != nil {
			t.Fatalf("InvoicedPeriods: %v", err)
		}
		wantPeriods := map[string][]time.Time{
			"s-1": {a0.PeriodStart, a1.PeriodStart},
			"s-2": {b0.PeriodStart},
		}
		if diff := cmp.Diff(wantPeriods, periods); diff != "" {
			t.Errorf("InvoicedPeriods (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			f    store.InvoiceFilter
			want []string
		}{
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-1"}}, []string{a0.ID, a1.ID}},
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-2", "s-1", "s-2"}}, []string{a0.ID, b0.ID, a1.ID}},
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-2", "s-9"}}, []string{b0.ID}},
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-1", "s-2"}, CustomerID: "c-2"}, []string{b0.ID}},
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-1", "s-2"}, SubscriptionID: "s-1"}, []string{a0.ID, a1.ID}},
			{store.InvoiceFilter{SubscriptionIDs: []string{"s-9"}}, []string{}},
		} {
			l, err := s.ListInvoices(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListInvoices(%+v): %v", tc.f, err)
			}
			got := []string{}
			for _, inv := range l {
				got = append(got, inv.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ListInvoices(%+v) (-want +got):\n%s", tc.f, diff)
			}
		}
	}
	check()
	if b.Reopen != nil {
		e.reopen(t)
		s = e.s
		check()
	}
}
