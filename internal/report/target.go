// Package report turns billable overage into marketplace and provider usage
// reports and delivers them exactly once through a durable outbox.
//
// The planner (plan.go) is a pure function from usage to report
// quantities; the outbox keeps every report with its delivery history; the
// Runner plans closed hours and sends due reports to Senders, one per
// configured target. Each Sender (subpackages azure, aws, stripe, webhook)
// speaks one provider's API and nothing else.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Resource is who a report bills at the target: the customer's (or one
// deployment's) identity there. Only the fields of the target's provider are
// set; CustomerID, CustomerKey, SubscriptionID and Subject are always set
// (Subject only when reporting per deployment).
type Resource struct {
	CustomerID     string `json:"customerId"`
	CustomerKey    string `json:"customerKey"`
	SubscriptionID string `json:"subscriptionId"`
	// Subject is the deployment reported on its own ("" when the report
	// covers all of the customer's subjects).
	Subject string `json:"subject,omitempty"`

	// Azure Marketplace: a SaaS subscription (ResourceID) or a managed
	// application (ResourceURI), and the plan the customer bought.
	AzureResourceID  string `json:"azureResourceId,omitempty"`
	AzureResourceURI string `json:"azureResourceUri,omitempty"`
	AzurePlanID      string `json:"azurePlanId,omitempty"`

	// AWS Marketplace: CustomerIdentifier, or CustomerAWSAccountID with
	// LicenseArn.
	AWSCustomerIdentifier   string `json:"awsCustomerIdentifier,omitempty"`
	AWSCustomerAWSAccountID string `json:"awsCustomerAWSAccountId,omitempty"`
	AWSLicenseArn           string `json:"awsLicenseArn,omitempty"`

	// Stripe: the customer id (cus_…).
	StripeCustomerID string `json:"stripeCustomerId,omitempty"`
}

// Item is one report as a Sender sees it.
type Item struct {
	// ID is the report's deterministic identity (the same on every
	// attempt): Stripe's identifier, the webhook-id, …
	ID       string
	Resource Resource
	// Dimension is the target's name for what is billed (an Azure
	// dimension id, an AWS dimension, a Stripe meter's event name).
	Dimension string
	// Hour is the start of the UTC hour the usage belongs to.
	Hour time.Time
	// Quantity is in the target's units (already divided by the unit
	// size), with no more decimals than the target accepts; positive,
	// unless the target takes negative quantities (Capabilities.Negative)
	// and usage was corrected downwards.
	Quantity decimal.Decimal
	// Late is how much of the usage behind Quantity (meter units) belongs
	// to hours reported earlier, LateFrom which hours (see Report).
	Late     decimal.Decimal
	LateFrom []string
	// Attempt counts sends of this report, 1 on the first.
	Attempt int
}

// Outcome is what a target made of one item.
type Outcome string

// Outcomes. Accepted and Duplicate are final successes (a duplicate means
// the target already holds a report for the item's resource, dimension and
// hour: first write wins). Expired means the hour is too old for the target:
// the runner moves the quantity into the next hour and alerts. Rejected is a
// final failure the runner does not retry blindly (unknown resource,
// invalid dimension, …). Retry asks for another attempt later (the item was
// throttled or not processed).
const (
	Accepted  Outcome = "accepted"
	Duplicate Outcome = "duplicate"
	Expired   Outcome = "expired"
	Rejected  Outcome = "rejected"
	Retry     Outcome = "retry"
)

// Result is a target's answer for one item.
type Result struct {
	Outcome Outcome
	// Code is the provider's status or error code ("Accepted",
	// "ResourceNotFound", "DuplicateRecord", "429", …).
	Code string
	// Message is the provider's explanation, if any.
	Message string
	// Response is the provider's answer for this item as received, kept for
	// disputes. It must hold no credentials.
	Response json.RawMessage
}

// Capabilities are a target's rules the planner and runner follow.
type Capabilities struct {
	// MaxBatch is how many items one Send call takes (≥ 1).
	MaxBatch int
	// Decimals is how many decimal places a quantity may have: 0 for
	// integer-only targets (AWS); -1 for no limit. The planner carries
	// the cut-off fraction forward to the next hour.
	Decimals int32
	// Window is how late after an hour's start the target still takes a
	// report for it (Azure: 24h; 0: no limit). The deadline watch alerts
	// before it passes.
	Window time.Duration
	// DedupeWindow is how long the target recognises a resent report as
	// the same (Stripe: 24h; 0: for ever, as with Azure's and AWS's one
	// report per hour). A report first sent longer ago whose outcome is
	// unknown is not resent blindly: it fails with an alert.
	DedupeWindow time.Duration
	// Negative says the target takes negative quantities: usage corrected
	// downwards is reported to it as a negative quantity (a webhook
	// receiver, the vendor's own system). Other targets net it against
	// later usage or take reports back (Canceler).
	Negative bool
}

// Sender delivers reports to one target. Implementations are safe for
// concurrent use.
type Sender interface {
	// Capabilities returns the target's rules.
	Capabilities() Capabilities
	// Send delivers at most Capabilities().MaxBatch items and returns one
	// Result per item, in the items' order. A non-nil error means the call
	// as a whole failed in a way worth retrying (network error, timeout,
	// 429, 5xx) and nothing is known about the items: the runner sends the
	// same items again later, and the target's idempotency (first write
	// wins per hour; Stripe's identifier; webhook-id) keeps that safe. Wrap
	// a *RetryAfterError to ask for a minimum delay. A call that can never
	// succeed (credentials refused, malformed request) returns a Rejected
	// Result for every item instead of an error.
	Send(ctx context.Context, items []Item) ([]Result, error)
}

// RetryAfterError is a transient failure with the delay the target asked
// for (a Retry-After header).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// ParseRetryAfter reads a Retry-After header value: delay seconds or an
// HTTP date (counted from now). ok is false for an empty or unreadable
// value.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RetryAfter returns the delay err asks for, if it wraps a
// *RetryAfterError.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}

// Canceler is a Sender that can take back a report it accepted (Stripe's
// meter event adjustments), within CancelWindow of accepting it.
type Canceler interface {
	// Cancel takes back the report sent as item. Accepted means the target
	// took the cancellation; Rejected that it refused it (too late,
	// unknown); an error is transient.
	Cancel(ctx context.Context, item Item) (Result, error)
	CancelWindow() time.Duration
}
