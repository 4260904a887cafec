// Package webhook delivers usage reports as signed JSON POSTs, one report
// per request, following the Standard Webhooks specification
// (https://www.standardwebhooks.com): the headers webhook-id (the report's
// identity, the same on every attempt, for the receiver to deduplicate),
// webhook-timestamp and webhook-signature (HMAC-SHA256 of
// "{id}.{timestamp}.{body}" with the endpoint's whsec_ secret).
//
// A receiver answers 2xx when it took the report and 409 Conflict when it
// already holds a report with that webhook-id; both end the delivery. 408,
// 429 and 5xx answers, timeouts and network errors are retried (Retry-After
// is honoured); any other answer rejects the report. Redirects are not
// followed.
//
// The body is a Payload:
//
//	{"id":"…","type":"usage","resource":{"customerId":"…","customerKey":"acme","subscriptionId":"…"},
//	 "dimension":"extra_emails","hour":"2026-11-22T09:00:00Z","quantity":"2.396","attempt":1}
//
// Quantities add up: the receiver bills the sum of the quantities it took
// for a customer and dimension. Usage corrected downwards arrives as a
// report of type "correction" with a negative quantity, to be subtracted;
// its hour is the hour in which tally reported it, and lateFrom names the
// hours the corrected usage belongs to:
//
//	{"id":"…","type":"correction",…,"hour":"2026-11-22T12:00:00Z","quantity":"-60",
//	 "late":"-60","lateFrom":["2026-11-22T10:00:00Z"],"attempt":1}
//
// A receiver checks a delivery with Verify before trusting it:
//
//	body, _ := io.ReadAll(r.Body)
//	if err := webhook.Verify(secret, r.Header, body); err != nil { … 401 … }
//
// A target in the config file:
//
//	type: webhook
//	url: https://billing.example.com/tally/usage
//	secret: ${TALLY_WEBHOOK_SECRET}   # whsec_ and base64 of 24 to 64 random bytes
//	timeout: 30s
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tally-metering/tally/internal/report"
)

// DefaultTimeout bounds each POST when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// SecretPrefix starts every secret: the rest is the base64 of the key.
const SecretPrefix = "whsec_"

// Tolerance is how far a webhook-timestamp may be from the receiver's clock
// for Verify to accept it, against replays.
const Tolerance = 5 * time.Minute

// Headers of a delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Config is a webhook target as the config file describes it.
type Config struct {
	// URL receives the POSTs (http or https).
	URL string `yaml:"url"`
	// Secret is the signing secret, "whsec_" and the base64 of 24 to 64
	// random bytes.
	Secret string `yaml:"secret"`
	// Timeout bounds each POST (default DefaultTimeout).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate reports every field that is wrong, joined, without repeating
// the secret.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("url: must be an absolute http or https URL"))
	}
	if c.Secret == "" {
		errs = append(errs, errors.New("secret: required"))
	} else if _, err := parseSecret(c.Secret); err != nil {
		errs = append(errs, fmt.Errorf("secret: %w", err))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// parseSecret returns the HMAC key of a whsec_ secret. Its errors never
// quote the secret.
func parseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New("must start with " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("must be " + SecretPrefix + " and standard base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("must hold 24 to 64 bytes, holds %d", len(key))
	}
	return key, nil
}

const redacted = "[redacted]"

// redactedURL hides a password in the URL; the secret never is in it.
func (c Config) redactedURL() string {
	if u, err := url.Parse(c.URL); err == nil {
		return u.Redacted()
	}
	return c.URL
}

func (c Config) redactedSecret() string {
	if c.Secret == "" {
		return ""
	}
	return redacted
}

// String describes the configuration with the secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("webhook.Config{url: %q, secret: %q, timeout: %s}", c.redactedURL(), c.redactedSecret(), c.Timeout)
}

// GoString is String, so that %#v redacts the secret too.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration with the secret redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.redactedURL()),
		slog.String("secret", c.redactedSecret()),
		slog.Duration("timeout", c.Timeout),
	)
}

// Payload is the body of a delivery.
type Payload struct {
	// ID is the report's identity, also sent as webhook-id.
	ID string `json:"id"`
	// Type is TypeUsage, or TypeCorrection for a negative quantity.
	Type     string   `json:"type"`
	Resource Resource `json:"resource"`
	// Dimension is the target's name for what is billed.
	Dimension string `json:"dimension"`
	// Hour is the start of the UTC hour reported, in RFC 3339.
	Hour string `json:"hour"`
	// Quantity is a decimal number as a string, so that no digit is
	// lost to floating point.
	Quantity string `json:"quantity"`
	// Late is how much of the usage behind the quantity (meter units)
	// belongs to hours reported earlier (negative for a correction), and
	// LateFrom names those hours: RFC 3339 hours, or "start/end" intervals
	// of hours that were recounted (a meter changed).
	Late     string   `json:"late,omitempty"`
	LateFrom []string `json:"lateFrom,omitempty"`
	// Attempt counts deliveries of this report, 1 on the first.
	Attempt int `json:"attempt"`
}

// Payload types.
const (
	// TypeUsage is a report of usage: add its quantity.
	TypeUsage = "usage"
	// TypeCorrection is usage corrected downwards after it was reported:
	// its quantity is negative; add it (subtract the usage) too.
	TypeCorrection = "correction"
)

// Resource is who the report bills.
type Resource struct {
	CustomerID     string `json:"customerId"`
	CustomerKey    string `json:"customerKey"`
	SubscriptionID string `json:"subscriptionId"`
	// Subject is the deployment reported on its own, if any.
	Subject string `json:"subject,omitempty"`
}

// Sender posts usage reports to one webhook endpoint. It is safe for
// concurrent use.
type Sender struct {
	cfg    Config
	key    []byte
	client *http.Client
	now    func() time.Time
}

var _ report.Sender = (*Sender)(nil)

// New returns a Sender for cfg, which must be valid. A nil client means
// http.DefaultClient. Redirects are not followed: a report goes where it
// was configured to go.
func New(cfg Config, client *http.Client) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	key, _ := parseSecret(cfg.Secret)
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Sender{cfg: cfg, key: key, client: &c, now: time.Now}, nil
}

// String describes the Sender without its secret.
func (s *Sender) String() string { return "webhook.Sender{" + s.cfg.redactedURL() + "}" }

// Capabilities returns the webhook's rules: one report per request, any
// number of decimal places, negative quantities (corrections), no time
// limit.
func (s *Sender) Capabilities() report.Capabilities {
	return report.Capabilities{MaxBatch: 1, Decimals: -1, Window: 0, Negative: true}
}

// Send posts each item (one per request) and returns one Result per item,
// in order. The Response of each Result is {"status": …, "body": …} with
// the receiver's body as JSON when it is JSON, else as text. An error means
// a delivery failed in a way worth retrying (see the package
// documentation); the items before it were delivered and will be sent
// again under the same webhook-id.
func (s *Sender) Send(ctx context.Context, items []report.Item) ([]report.Result, error) {
	results := make([]report.Result, len(items))
	for i, it := range items {
		r, err := s.send(ctx, it)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", it.ID, err)
		}
		results[i] = r
	}
	return results, nil
}

// CodeInvalidItem marks an item rejected before sending: its id cannot be
// a webhook-id header value.
const CodeInvalidItem = "InvalidItem"

func (s *Sender) send(ctx context.Context, it report.Item) (report.Result, error) {
	if err := checkID(it.ID); err != nil {
		return report.Result{Outcome: report.Rejected, Code: CodeInvalidItem, Message: err.Error()}, nil
	}
	p := Payload{
		ID:   it.ID,
		Type: TypeUsage,
		Resource: Resource{
			CustomerID:     it.Resource.CustomerID,
			CustomerKey:    it.Resource.CustomerKey,
			SubscriptionID: it.Resource.SubscriptionID,
			Subject:        it.Resource.Subject,
		},
		Dimension: it.Dimension,
		Hour:      it.Hour.UTC().Format(time.RFC3339),
		Quantity:  it.Quantity.String(),
		LateFrom:  it.LateFrom,
		Attempt:   it.Attempt,
	}
	if it.Quantity.Sign() < 0 {
		p.Type = TypeCorrection
	}
	if !it.Late.IsZero() {
		p.Late = it.Late.String()
	}
	body, err := json.Marshal(p)
	if err != nil {
		return report.Result{}, fmt.Errorf("encode: %w", err)
	}
	status, header, answer, err := s.post(ctx, it.ID, body)
	if err != nil {
		return report.Result{}, err
	}
	res := report.Result{Code: strconv.Itoa(status), Response: response(status, answer)}
	switch {
	case status >= 200 && status < 300:
		res.Outcome = report.Accepted
	case status == http.StatusConflict:
		res.Outcome = report.Duplicate
	case retryable(status):
		return report.Result{}, s.retryError(status, header, answer)
	case status >= 300 && status < 400:
		res.Outcome = report.Rejected
		res.Message = "redirect to " + header.Get("Location") + " not followed; configure the final URL"
	default:
		res.Outcome = report.Rejected
		res.Message = strings.TrimPrefix(excerpt(answer), ": ")
	}
	return res, nil
}

// PostJSON signs and posts v, encoded as JSON, with webhook-id id: for
// notifications other than reports, such as alerts. It returns nil when
// the receiver took it (2xx) or already had it (409), else an error, which
// wraps a *report.RetryAfterError when the receiver asked for a delay.
func (s *Sender) PostJSON(ctx context.Context, id string, v any) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("webhook %s: encode: %w", id, err)
	}
	status, header, answer, err := s.post(ctx, id, body)
	switch {
	case err != nil:
	case status >= 200 && status < 300 || status == http.StatusConflict:
		return nil
	case retryable(status):
		err = s.retryError(status, header, answer)
	default:
		err = fmt.Errorf("status %d%s", status, excerpt(answer))
	}
	return fmt.Errorf("webhook %s: %w", id, err)
}

// checkID tells whether id can be a webhook-id header value.
func checkID(id string) error {
	if id == "" || strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || r > unicode.MaxASCII }) {
		return errors.New("the id is empty or not printable ASCII, so it cannot be a webhook-id")
	}
	return nil
}

// post sends one signed delivery and returns the receiver's answer.
func (s *Sender) post(ctx context.Context, id string, body []byte) (int, http.Header, []byte, error) {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tally-webhook")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sign(s.key, id, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, answer, nil
}

// retryable tells whether an answer asks for the delivery again later.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

func (s *Sender) retryError(status int, header http.Header, answer []byte) error {
	err := fmt.Errorf("status %d%s", status, excerpt(answer))
	if d, ok := report.ParseRetryAfter(header.Get("Retry-After"), s.now()); ok {
		return &report.RetryAfterError{After: d, Err: err}
	}
	return err
}

// sign returns the webhook-signature value for a delivery.
func sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// response is what Result.Response keeps of an answer: the status and
// the body, as JSON when it is small JSON, else as (truncated) text.
func response(status int, answer []byte) json.RawMessage {
	const keep = 4 << 10
	var body any = strings.ToValidUTF8(string(answer[:min(len(answer), keep)]), "")
	if len(answer) <= keep && json.Valid(answer) {
		body = json.RawMessage(answer)
	} else if len(answer) == 0 {
		body = nil
	}
	b, err := json.Marshal(struct {
		Status int `json:"status"`
		Body   any `json:"body,omitempty"`
	}{status, body})
	if err != nil {
		return json.RawMessage(`{"status":` + strconv.Itoa(status) + `}`)
	}
	return b
}

// excerpt is ": " and the first line of an answer, for messages.
func excerpt(answer []byte) string {
	s := strings.TrimSpace(string(answer))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	if s == "" {
		return ""
	}
	return ": " + s
}

// Errors of Verify.
var (
	ErrMissingHeaders = errors.New("webhook-id, webhook-timestamp or webhook-signature missing")
	ErrTimestamp      = errors.New("webhook-timestamp invalid or too far from now")
	ErrSignature      = errors.New("no valid signature")
)

// Verify checks a delivery the way a receiver should: the three headers
// are present, webhook-timestamp is within Tolerance of now, and one of the
// space-separated v1 signatures is the HMAC of the id, timestamp and body
// under secret (a whsec_ secret). It returns nil or an error wrapping
// ErrMissingHeaders, ErrTimestamp or ErrSignature (or one about the
// secret).
func Verify(secret string, header http.Header, body []byte) error {
	return VerifyAt(secret, header, body, time.Now())
}

// VerifyAt is Verify with the receiver's clock reading now.
func VerifyAt(secret string, header http.Header, body []byte, now time.Time) error {
	key, err := parseSecret(secret)
	if err != nil {
		return fmt.Errorf("verify webhook: secret %w", err)
	}
	id, ts, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("verify webhook: %w", ErrMissingHeaders)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("verify webhook: %w", ErrTimestamp)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("verify webhook: %w (%s off)", ErrTimestamp, d.Round(time.Second))
	}
	want := []byte(sign(key, id, ts, body))
	for sig := range strings.FieldsSeq(sigs) {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return fmt.Errorf("verify webhook: %w", ErrSignature)
}
