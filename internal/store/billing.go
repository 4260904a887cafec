package store

import (
	"context"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/billing"
)

// SubjectTakenError is the ErrConflict of a customer write naming a subject
// that another live customer owns.
type SubjectTakenError struct {
	Subject string
	// Owner is the key of the customer that owns Subject.
	Owner string
}

func (e *SubjectTakenError) Error() string {
	return fmt.Sprintf("subject %q belongs to customer %q; remove it there first", e.Subject, e.Owner)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *SubjectTakenError) Unwrap() error { return ErrConflict }

// Customers keeps customers and their users.
//
// A customer is live until DeleteCustomer, which keeps it (its history is
// still readable by id) but frees its key and subjects for other customers.
//
// The store keeps each customer's subject history (billing.Ownership):
// a subject given to a customer is owned from the write's instant (since
// the beginning of time when no customer ever owned it before), a subject
// removed or freed by a deletion until the write's instant. The history
// is read with the customer (Customer.SubjectHistory, ordered by From,
// nil first, then subject); Customer.SubjectHistory given to a write is
// ignored.
type Customers interface {
	// CreateCustomer stores a new customer, as version 1 (whatever
	// c.Version says), and its subjects, owned from
	// c.CreatedAt, in one transaction. c.CreatedAt may be before the write
	// (a customer imported with its history, whose UpdatedAt is the write):
	// a subject is then its own from that minute, or since the beginning of
	// time when no customer owned it before, but never before another
	// customer's ownership of it ended. ErrConflict if the id or key is
	// taken by a live customer, a *SubjectTakenError if a subject belongs
	// to another live customer.
	CreateCustomer(ctx context.Context, c billing.Customer) error
	// UpdateCustomer replaces the live customer with c's ID, its subject
	// list included, keeping CreatedAt: subjects it adds are owned from
	// c.UpdatedAt, those it drops until then. The stored customer's
	// Version goes up by one. When c.Version is above 0 the write is a
	// compare-and-swap: c.Version is the version c was derived from, and
	// unless that is the stored version it stores nothing and returns a
	// *StaleError. ErrNotFound if there is none (or it is deleted);
	// ErrConflict and *SubjectTakenError as CreateCustomer.
	UpdateCustomer(ctx context.Context, c billing.Customer) error
	// GetCustomer finds a customer by id, or by key (the live one with that
	// key, else the most recently deleted); ErrNotFound if there is none.
	GetCustomer(ctx context.Context, idOrKey string) (billing.Customer, error)
	// ListCustomers returns the live customers (and the deleted ones too
	// when includeDeleted), ordered by key then id.
	ListCustomers(ctx context.Context, includeDeleted bool) ([]billing.Customer, error)
	// ListCustomerPage returns the page of customers p selects, in the
	// order of ListCustomers (key, then id).
	ListCustomerPage(ctx context.Context, p CustomerPage) ([]billing.Customer, error)
	// DeleteCustomer marks the customer with the given id deleted at at and
	// frees its key and subjects (their ownership ends at at). It is
	// idempotent: deleting a deleted customer changes nothing. ErrNotFound
	// if there is no such customer.
	DeleteCustomer(ctx context.Context, id string, at time.Time) error
	// CustomerBySubject returns the live customer owning subject;
	// ErrNotFound if none does.
	CustomerBySubject(ctx context.Context, subject string) (billing.Customer, error)
	// CustomersOfSubject returns the ids of every customer, live or
	// deleted, that has ever owned subject, ordered; none if no customer
	// has.
	CustomersOfSubject(ctx context.Context, subject string) ([]string, error)

	// CreateUser adds a user to its customer; ErrNotFound if the customer
	// is not live, ErrConflict if another user has the same key or e-mail
	// address in that customer.
	CreateUser(ctx context.Context, u billing.User) error
	// ListUsers returns a customer's users ordered by creation.
	ListUsers(ctx context.Context, customerID string) ([]billing.User, error)
}

// CustomerPage selects a page of customers, ordered by key then id.
type CustomerPage struct {
	// IncludeDeleted adds the deleted customers to the live ones.
	IncludeDeleted bool
	// AfterKey and AfterID, when AfterID is set, keep only the customers
	// after (AfterKey, AfterID) in that order: the last of the previous
	// page.
	AfterKey, AfterID string
	// Limit, when above 0, is how many customers to return at most.
	Limit int
}

// Plans keeps versioned plans. All versions of a plan share its ID and Key;
// a published version never changes.
type Plans interface {
	// CreatePlan stores p, version 1 of a new plan; ErrConflict if a plan
	// with the same id or key exists.
	CreatePlan(ctx context.Context, p billing.Plan) error
	// GetPlan finds a plan by id or key and returns the given version, or
	// the latest when version is 0; ErrNotFound if there is none.
	GetPlan(ctx context.Context, idOrKey string, version int) (billing.Plan, error)
	// ListPlans returns the latest version of every plan, ordered by key.
	ListPlans(ctx context.Context) ([]billing.Plan, error)
	// ListPlanVersions returns every version of a plan, oldest first;
	// ErrNotFound if there is no such plan.
	ListPlanVersions(ctx context.Context, idOrKey string) ([]billing.Plan, error)
	// SavePlanDraft stores p as version p.Version of plan p.ID: it replaces
	// that version when it is the latest and a draft, or adds it when it is
	// one above the latest and the latest is published. Anything else is
	// ErrConflict (a published version is immutable; a concurrent edit made
	// another version first); ErrNotFound if there is no plan p.ID.
	SavePlanDraft(ctx context.Context, p billing.Plan) error
	// SavePlanDraftIf is SavePlanDraft that first calls check with the
	// plan's latest version as stored, in the transaction that writes:
	// when check returns an error nothing is stored and that error is
	// returned. It makes a write conditional on what it was based on
	// (If-Match) without a race with another write.
	SavePlanDraftIf(ctx context.Context, p billing.Plan, check func(latest billing.Plan) error) error
	// PublishPlan publishes the given version (the latest when 0) at at and
	// returns it. Publishing a published version returns it unchanged.
	// ErrNotFound if there is no such version.
	PublishPlan(ctx context.Context, idOrKey string, version int, at time.Time) (billing.Plan, error)
}

// SubscriptionFilter selects subscriptions; an empty field matches all.
type SubscriptionFilter struct {
	// CustomerID keeps only the customer's subscriptions (an id, not a key).
	CustomerID string
	// PlanID keeps only subscriptions to the plan (any version).
	PlanID string
	// AfterStart and AfterID, when AfterID is set, keep only the
	// subscriptions after (AfterStart, AfterID) in the list's order: the
	// last of the previous page. Starts compare to the microsecond.
	AfterStart time.Time
	AfterID    string
	// Limit, when above 0, is how many subscriptions to return at most.
	Limit int
}

// Subscriptions keeps subscriptions. A subscription is never deleted:
// cancelling it keeps it, with its history.
//
// Subscription writes are safe under concurrency. Each one runs its checks
// against the state it writes over, in the transaction that writes it,
// serialized with every other subscription and customer write: two
// concurrent writes can't both pass a check that only one of them should
// (two overlapping subscriptions), and no write silently overwrites
// another (optimistic concurrency on Subscription.Version).
type Subscriptions interface {
	// CreateSubscription stores a new subscription as version 1 (whatever
	// s.Version says). ErrConflict if the id is taken, ErrNotFound if its
	// customer or plan version does not exist. It refuses, with the
	// errors of billing.CheckNewSubscription (*billing.NotSubscribableError,
	// *billing.ValidationError), a subscription of a deleted customer, to a
	// draft plan version or one in another currency than the customer's,
	// and one that would put the customer on a plan twice at once given
	// its other subscriptions as stored at that moment.
	CreateSubscription(ctx context.Context, s billing.Subscription) error
	// GetSubscription finds a subscription by id; ErrNotFound if there is
	// none.
	GetSubscription(ctx context.Context, id string) (billing.Subscription, error)
	// ListSubscriptions returns the subscriptions f selects, ordered by
	// start then id.
	ListSubscriptions(ctx context.Context, f SubscriptionFilter) ([]billing.Subscription, error)
	// UpdateSubscription replaces the subscription with s's ID (used to
	// cancel it or change its plan) with s as version s.Version+1. It is a
	// compare-and-swap: s.Version is the version s was derived from, and
	// unless that is the stored version it stores nothing and returns a
	// *StaleError (another write came in between: read it again and redo
	// the change). Only Status, CancelAt, CanceledAt, Phases and UpdatedAt
	// may change; ErrConflict if anything else differs (a subscription's
	// customer, plan version and schedule are fixed), ErrNotFound if there
	// is no such subscription. A plan change that would put the customer
	// on a plan twice at once, given its other subscriptions as stored at
	// that moment, is refused with billing.CheckNoOverlap's
	// *billing.NotSubscribableError; a cancellation never is.
	UpdateSubscription(ctx context.Context, s billing.Subscription) error
}

// StaleError is the ErrConflict of a compare-and-swap write based on
// another version of an item than the stored one: another write came in
// between.
type StaleError struct {
	// What is the kind of item ("subscription") and ID its id.
	What, ID string
	// Read is the version the write was based on, Stored the version it
	// found.
	Read, Stored int
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%s %s changed while this change was made (it is at version %d, the change was based on version %d); read it again and retry", e.What, e.ID, e.Stored, e.Read)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *StaleError) Unwrap() error { return ErrConflict }

// InvoiceFilter selects invoices; an empty field matches all.
type InvoiceFilter struct {
	// SubscriptionID keeps only the subscription's invoices.
	SubscriptionID string
	// SubscriptionIDs keeps only the invoices of these subscriptions; it
	// lets a caller read the invoices of many subscriptions in one call.
	SubscriptionIDs []string
	// CustomerID keeps only the customer's invoices (an id, not a key).
	CustomerID string
}

// SavedInvoice is what SaveInvoices did with one invoice.
type SavedInvoice struct {
	// Invoice is the stored invoice: the one given when Created, else the
	// one stored before for the same period (or id).
	Invoice billing.Invoice
	// Created is false when an invoice for the same subscription and
	// period start (or with the same id) was stored already.
	Created bool
}

// Invoices keeps finalized invoices. A finalized invoice never changes;
// drafts are computed, not stored.
type Invoices interface {
	// SaveInvoice stores inv, a finalized invoice, unless an invoice for
	// the same subscription and period start (or with the same id) is
	// stored already: then it stores nothing and returns the stored one
	// with created false. So finalizing a period twice is harmless.
	// ErrNotFound if inv's subscription does not exist.
	SaveInvoice(ctx context.Context, inv billing.Invoice) (stored billing.Invoice, created bool, err error)
	// SaveInvoices stores many finalized invoices in one transaction, each
	// as SaveInvoice does (an invoice whose period is stored already,
	// earlier or by a preceding invoice of the same call, is not stored
	// again), and returns what it did with each, in order. It is all or
	// nothing: on an error, ErrNotFound for an invoice whose subscription
	// does not exist included, nothing is stored.
	SaveInvoices(ctx context.Context, invs []billing.Invoice) ([]SavedInvoice, error)
	// InvoicedPeriods returns, for every subscription with stored
	// invoices, the period starts of those invoices, oldest first (in
	// UTC): which periods are finalized, without reading the invoices.
	InvoicedPeriods(ctx context.Context) (map[string][]time.Time, error)
	// GetInvoice finds a stored invoice by id; ErrNotFound if there is
	// none.
	GetInvoice(ctx context.Context, id string) (billing.Invoice, error)
	// ListInvoices returns the stored invoices f selects, ordered by
	// period start then subscription id.
	ListInvoices(ctx context.Context, f InvoiceFilter) ([]billing.Invoice, error)
}

// CreditNoteFilter selects credit notes; an empty field matches all.
type CreditNoteFilter struct {
	// SubscriptionID keeps only the subscription's credit notes.
	SubscriptionID string
	// SubscriptionIDs keeps only the credit notes of these subscriptions;
	// it lets a caller read those of many subscriptions in one call.
	SubscriptionIDs []string
	// CustomerID keeps only the customer's credit notes (an id, not a key).
	CustomerID string
	// InvoiceID keeps only the credit notes with a line crediting that
	// invoice.
	InvoiceID string
}

// CreditNotes keeps issued credit notes (billing.CreditNote). A credit
// note never changes once issued.
type CreditNotes interface {
	// IssueCreditNote stores cn and gives it the next number of the one
	// credit note sequence (billing.CreditNoteNumber), in one transaction
	// with its lines and their index by invoice, unless a credit note with
	// cn's id is stored already: then it stores nothing and returns the
	// stored one with created false. As a credit note's id is its
	// subscription's sequence number (billing.CreditNoteID), two issuers
	// that computed a subscription's next credit note from the same state
	// issue it once. Numbers have no gaps and follow the order of issue.
	// ErrNotFound if cn's subscription does not exist.
	IssueCreditNote(ctx context.Context, cn billing.CreditNote) (stored billing.CreditNote, created bool, err error)
	// GetCreditNote finds a credit note by id or number; ErrNotFound if
	// there is none.
	GetCreditNote(ctx context.Context, idOrNumber string) (billing.CreditNote, error)
	// ListCreditNotes returns the credit notes f selects, ordered by
	// number (the order of issue).
	ListCreditNotes(ctx context.Context, f CreditNoteFilter) ([]billing.CreditNote, error)
}
