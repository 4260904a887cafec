// Package stripe reports usage to Stripe as billing meter events
// (POST /v1/billing/meter_events) through the official stripe-go client,
// and cancels them with meter event adjustments.
//
// Each report becomes one event: event_name is the item's dimension (the
// meter's event name), identifier is derived from the item's
// deterministic ID, payload carries the customer and the value, and
// timestamp is the hour's start. Stripe enforces identifier uniqueness for
// a rolling 24 hours and answers a second event with a known identifier
// with an error, mapped to Duplicate. Beyond those 24 hours Stripe would
// take a resent event as a new one (and offers no lookup of events by
// identifier), so a report whose first send may have reached Stripe more
// than a day before a retry needs a person rather than a blind resend.
//
// Stripe takes only whole numbers as meter event values, so
// Capabilities.Decimals is 0 and the planner carries fractions forward.
package stripe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v85"

	"github.com/tally-metering/tally/internal/report"
)

// Window is how far back Stripe takes a meter event's timestamp: the past
// 35 calendar days.
const Window = 35 * 24 * time.Hour

// CancelWindow is how long after Stripe received an event it can still
// be cancelled with a meter event adjustment.
const CancelWindow = 24 * time.Hour

// maxIdentifier is Stripe's limit on a meter event identifier.
const maxIdentifier = 100

// Sender sends reports to Stripe. It is safe for concurrent use.
type Sender struct {
	client      *stripego.Client
	key         string
	timeout     time.Duration
	customerKey string
	valueKey    string
	logger      *slog.Logger
}

var _ report.Sender = (*Sender)(nil)

// Option adjusts a Sender built by New.
type Option func(*options)

type options struct {
	httpClient *http.Client
	logger     *slog.Logger
}

// WithHTTPClient makes the Sender use c.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithLogger makes the Sender (and the stripe-go client's own messages, at
// debug and warn levels) log through l.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// New returns a Sender for cfg. stripe-go's own retries are off: the
// runner retries with backoff and the outbox records every attempt.
func New(_ context.Context, cfg Config, opts ...Option) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stripe config: %w", err)
	}
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	logger := o.logger.With("component", "report", "target", "stripe")
	hc := o.httpClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.timeout()}
	}
	bc := &stripego.BackendConfig{
		HTTPClient:        hc,
		MaxNetworkRetries: stripego.Int64(0),
		EnableTelemetry:   stripego.Bool(false),
		LeveledLogger:     leveledLogger{logger: logger, key: cfg.APIKey},
	}
	if cfg.BaseURL != "" {
		bc.URL = stripego.String(cfg.BaseURL)
	}
	client := stripego.NewClient(cfg.APIKey, stripego.WithBackends(stripego.NewBackendsWithConfig(bc)))
	return &Sender{
		client:      client,
		key:         cfg.APIKey,
		timeout:     cfg.timeout(),
		customerKey: cfg.customerKey(),
		valueKey:    cfg.valueKey(),
		logger:      logger,
	}, nil
}

// Capabilities returns Stripe's rules: one event a call, whole numbers,
// 35 days back.
func (s *Sender) Capabilities() report.Capabilities {
	return report.Capabilities{MaxBatch: 1, Decimals: 0, Window: Window, DedupeWindow: DedupeWindow}
}

// DedupeWindow is how long Stripe refuses a second meter event with the
// same identifier: past it, resending a report whose first answer was lost
// could count it twice.
const DedupeWindow = 24 * time.Hour

// EventIdentifier returns the meter event identifier of the report with
// the given ID: the ID itself, or a digest of it when it is longer than
// Stripe's 100 characters.
func EventIdentifier(id string) string {
	if len(id) <= maxIdentifier {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "tally-" + hex.EncodeToString(sum[:])
}

// Send creates one meter event per item, in order. A transient failure
// (network, timeout, 429, 409, 5xx) of the first item fails the call; of
// a later one, answers Retry for it and the items after it.
func (s *Sender) Send(ctx context.Context, items []report.Item) ([]report.Result, error) {
	results := make([]report.Result, len(items))
	for i, it := range items {
		res, err := s.send(ctx, it)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			for j := i; j < len(items); j++ {
				results[j] = s.result(report.Retry, "NotSent", err.Error(), errorResponse("NotSent", err.Error()))
			}
			break
		}
		results[i] = res
	}
	return results, nil
}

func (s *Sender) send(ctx context.Context, it report.Item) (report.Result, error) {
	reject := func(code, msg string) (report.Result, error) {
		return s.result(report.Rejected, code, msg, errorResponse(code, msg)), nil
	}
	switch {
	case it.Resource.StripeCustomerID == "":
		return reject("missing_customer", "the customer has no Stripe customer id")
	case it.Dimension == "":
		return reject("missing_event_name", "the report has no dimension (meter event name)")
	case !it.Quantity.IsInteger():
		return reject("invalid_value", fmt.Sprintf("value %s is not a whole number; Stripe meter events take whole numbers only", it.Quantity))
	}
	id := EventIdentifier(it.ID)
	params := &stripego.BillingMeterEventCreateParams{
		EventName:  stripego.String(it.Dimension),
		Identifier: stripego.String(id),
		Payload: map[string]string{
			s.customerKey: it.Resource.StripeCustomerID,
			s.valueKey:    it.Quantity.String(),
		},
		Timestamp: stripego.Int64(it.Hour.Unix()),
	}
	// The Idempotency-Key is per attempt: Stripe replays a key's first
	// answer for 24 hours, a 500 included, so a key shared by all attempts
	// could pin a transient failure. The identifier is what deduplicates.
	params.SetIdempotencyKey(fmt.Sprintf("tally-%s-a%d", id, it.Attempt))
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ev, err := s.client.V1BillingMeterEvents.Create(cctx, params)
	if err != nil {
		return s.answer(err, true)
	}
	return s.success(ev.LastResponse), nil
}

var _ report.Canceler = (*Sender)(nil)

// CancelWindow implements report.Canceler: Stripe cancels only events it
// received within the last 24 hours.
func (s *Sender) CancelWindow() time.Duration { return CancelWindow }

// Cancel cancels the meter event sent for item (found by its identifier)
// with a meter event adjustment of type cancel. Stripe cancels only events
// it received within the last CancelWindow (24 hours); a later correction
// has to be sent as a net amount in a later hour. The result is Accepted
// when Stripe took the adjustment, Rejected when it refused it (too late,
// unknown identifier, …); an error is transient and worth retrying.
// Adjustments are processed asynchronously by Stripe.
func (s *Sender) Cancel(ctx context.Context, item report.Item) (report.Result, error) {
	if item.Dimension == "" {
		return s.result(report.Rejected, "missing_event_name", "the report has no dimension (meter event name)",
			errorResponse("missing_event_name", "the report has no dimension")), nil
	}
	id := EventIdentifier(item.ID)
	params := &stripego.BillingMeterEventAdjustmentCreateParams{
		EventName: stripego.String(item.Dimension),
		Type:      stripego.String("cancel"),
		Cancel:    &stripego.BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripego.String(id)},
	}
	params.SetIdempotencyKey(fmt.Sprintf("tally-cancel-%s-a%d", id, item.Attempt))
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	adj, err := s.client.V1BillingMeterEventAdjustments.Create(cctx, params)
	if err != nil {
		return s.answer(err, false)
	}
	return s.success(adj.LastResponse), nil
}

func (s *Sender) success(r *stripego.APIResponse) report.Result {
	code, raw := "200", []byte(`{}`)
	if r != nil {
		code, raw = strconv.Itoa(r.StatusCode), r.RawJSON
	}
	return s.result(report.Accepted, code, "", raw)
}

// answer maps a failed request to a Result, or to an error when it is
// worth retrying as it is. For meter events (event true) a duplicate
// identifier means Stripe holds the event already, and a refused timestamp
// means the hour is too old.
func (s *Sender) answer(err error, event bool) (report.Result, error) {
	var se *stripego.Error
	if !errors.As(err, &se) {
		// Network error, timeout, or an answer that was not Stripe's JSON.
		return report.Result{}, s.transient(err, 0)
	}
	status := se.HTTPStatusCode
	var raw []byte
	var header http.Header
	if se.LastResponse != nil {
		raw, header = se.LastResponse.RawJSON, se.LastResponse.Header
	}
	if len(raw) == 0 || !json.Valid(raw) {
		raw = errorResponse(string(se.Type), se.Msg)
	}
	code := string(se.Code)
	if code == "" {
		code = strconv.Itoa(status)
	}
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusConflict, status >= 500, status == 0:
		return report.Result{}, s.transient(err, retryAfter(header))
	case event && isDuplicate(se):
		return s.result(report.Duplicate, code, se.Msg, raw), nil
	case event && se.Param == "timestamp":
		return s.result(report.Expired, code, se.Msg, raw), nil
	default:
		return s.result(report.Rejected, code, se.Msg, raw), nil
	}
}

// isDuplicate tells whether Stripe refused an event because it holds one
// with the same identifier: "An event already exists with identifier …"
// (400 invalid_request_error), or an idempotency error for the key derived
// from that identifier.
func isDuplicate(se *stripego.Error) bool {
	if se.Type == stripego.ErrorTypeIdempotency || se.Code == stripego.ErrorCodeResourceAlreadyExists {
		return true
	}
	m := strings.ToLower(se.Msg)
	return strings.Contains(m, "already exists") && strings.Contains(m, "identifier")
}

func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	d, _ := report.ParseRetryAfter(h.Get("Retry-After"), time.Now())
	return d
}

func (s *Sender) transient(err error, after time.Duration) error {
	err = &redactedError{msg: "stripe: " + redact(err.Error(), s.key), err: err}
	if after > 0 {
		return &report.RetryAfterError{After: after, Err: err}
	}
	return err
}

// result builds a Result whose message and response hold no API key.
func (s *Sender) result(o report.Outcome, code, msg string, raw []byte) report.Result {
	return report.Result{
		Outcome:  o,
		Code:     code,
		Message:  redact(msg, s.key),
		Response: json.RawMessage(redact(string(raw), s.key)),
	}
}

func errorResponse(code, msg string) []byte {
	b, err := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	if err != nil {
		return []byte(`{}`)
	}
	return b
}

func redact(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, maskKey(key))
}

// redactedError keeps the cause for errors.As while its text hides the
// API key.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// leveledLogger passes stripe-go's messages to slog, without the key.
type leveledLogger struct {
	logger *slog.Logger
	key    string
}

func (l leveledLogger) log(level slog.Level, format string, v ...any) {
	l.logger.Log(context.Background(), level, redact(fmt.Sprintf(format, v...), l.key), "source", "stripe-go")
}

func (l leveledLogger) Debugf(format string, v ...any) { l.log(slog.LevelDebug, format, v...) }
func (l leveledLogger) Infof(format string, v ...any)  { l.log(slog.LevelDebug, format, v...) }
func (l leveledLogger) Warnf(format string, v ...any)  { l.log(slog.LevelWarn, format, v...) }
func (l leveledLogger) Errorf(format string, v ...any) { l.log(slog.LevelWarn, format, v...) }
