// Package azure reports usage to the Azure Marketplace metering service
// through its batch usage event API, authenticated with a Microsoft Entra
// app's client credentials or a managed identity.
//
// Azure keeps the first usage event per resource, dimension and hour and
// answers Duplicate to any later one, so a batch can be sent again safely
// whenever the answer to an earlier attempt was lost.
//
// A target in the config file:
//
//	type: azure-marketplace
//	baseURL: https://marketplaceapi.microsoft.com   # the default
//	authorityURL: https://login.microsoftonline.com  # the default
//	tenantId: 72f988bf-0000-0000-0000-000000000000
//	clientId: 3c6ee8a8-0000-0000-0000-000000000000
//	clientSecret: ${AZURE_CLIENT_SECRET}
//	timeout: 30s                                    # per HTTP call
//
// or, on an Azure host with a managed identity:
//
//	type: azure-marketplace
//	managedIdentity: true
//	clientId: …   # only for a user-assigned identity
//
// Package azuretest emulates the metering service for tests.
package azure

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/report"
)

// The metering service's rules, as Capabilities reports them.
const (
	// MaxBatch is the most usage events one batchUsageEvent call takes.
	MaxBatch = 25
	// Decimals is how many decimal places a quantity may have. Azure
	// takes quantities as JSON doubles; six places keep every quantity
	// below a billion exact through that conversion, and the planner
	// carries the rest forward instead of losing it.
	Decimals = 6
	// Window is how long after its effectiveStartTime Azure still takes a
	// usage event.
	Window = 24 * time.Hour
)

// APIVersion is the metering API version the Sender speaks.
const APIVersion = "2018-08-31"

// Item-level codes of the metering service's batch answer (the status of
// each result). Accepted, Duplicate and Expired have outcomes of their own;
// the others reject the item.
const (
	StatusAccepted              = "Accepted"
	StatusDuplicate             = "Duplicate"
	StatusExpired               = "Expired"
	StatusError                 = "Error"
	StatusResourceNotFound      = "ResourceNotFound"
	StatusResourceNotAuthorized = "ResourceNotAuthorized"
	StatusResourceNotActive     = "ResourceNotActive"
	StatusInvalidDimension      = "InvalidDimension"
	StatusInvalidQuantity       = "InvalidQuantity"
	StatusBadArgument           = "BadArgument"
)

// Codes the Sender sets itself, for items Azure gave no answer about.
const (
	// CodeInvalidItem marks an item rejected before sending: it lacks a
	// resource, plan or dimension, or its quantity is not positive or
	// has more than Decimals places.
	CodeInvalidItem = "InvalidItem"
	// CodeNoResult marks an item the batch answer did not mention; it is
	// retried.
	CodeNoResult = "NoResult"
)

// maxAnswer bounds how much of an answer is read: 25 results are a few
// kilobytes.
const maxAnswer = 4 << 20

// Sender sends usage reports to the Azure Marketplace metering service. It
// is safe for concurrent use.
type Sender struct {
	cfg    Config
	client *http.Client
	tokens *tokenSource
	now    func() time.Time
}

var _ report.Sender = (*Sender)(nil)

// New returns a Sender for cfg, which must be valid. A nil client means
// http.DefaultClient; each call is bounded by cfg.Timeout in any case.
func New(cfg Config, client *http.Client) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("azure config: %w", err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	cfg = cfg.withDefaults()
	s := &Sender{cfg: cfg, client: client, now: time.Now}
	s.tokens = &tokenSource{cfg: cfg, client: client, now: func() time.Time { return s.now() }}
	return s, nil
}

// String describes the Sender without its credentials.
func (s *Sender) String() string {
	return "azure.Sender{" + s.cfg.BaseURL + "}"
}

// Capabilities returns the metering service's rules: 25 events per call,
// Decimals places, 24 hours.
func (s *Sender) Capabilities() report.Capabilities {
	return report.Capabilities{MaxBatch: MaxBatch, Decimals: Decimals, Window: Window}
}

// Send reports items, MaxBatch per call (more items take several calls),
// and returns one Result per item in order. Each Result's Response is
// Azure's answer for that item as received.
//
// An error means a call as a whole failed and may succeed later: a network
// error or timeout, 429 or 5xx (wrapping a *report.RetryAfterError when
// Azure sent Retry-After), a token that could not be obtained, or
// credentials refused (401 or 403) even with a fresh token, or any other
// unexpected status (a 404 from a wrong baseURL is fixed by configuration,
// not by failing reports). A 400 for the whole batch rejects every item in
// it.
func (s *Sender) Send(ctx context.Context, items []report.Item) ([]report.Result, error) {
	results := make([]report.Result, len(items))
	for start := 0; start < len(items); start += MaxBatch {
		end := min(start+MaxBatch, len(items))
		if err := s.sendBatch(ctx, items[start:end], results[start:end]); err != nil {
			return nil, fmt.Errorf("azure batch usage: %w", err)
		}
	}
	return results, nil
}

// usageEvent is one event of a batchUsageEvent request.
type usageEvent struct {
	ResourceID         string      `json:"resourceId,omitempty"`
	ResourceURI        string      `json:"resourceUri,omitempty"`
	Quantity           json.Number `json:"quantity"`
	Dimension          string      `json:"dimension"`
	EffectiveStartTime string      `json:"effectiveStartTime"`
	PlanID             string      `json:"planId"`
}

// TimeFormat is how the Sender writes effectiveStartTime: UTC, to the
// second.
const TimeFormat = "2006-01-02T15:04:05Z"

func (s *Sender) sendBatch(ctx context.Context, items []report.Item, results []report.Result) error {
	var events []usageEvent
	var sent []int // index in items of each event
	for i, it := range items {
		if err := checkItem(it); err != nil {
			results[i] = report.Result{Outcome: report.Rejected, Code: CodeInvalidItem, Message: err.Error()}
			continue
		}
		events = append(events, usageEvent{
			ResourceID:         it.Resource.AzureResourceID,
			ResourceURI:        it.Resource.AzureResourceURI,
			Quantity:           json.Number(it.Quantity.String()),
			Dimension:          it.Dimension,
			EffectiveStartTime: it.Hour.UTC().Format(TimeFormat),
			PlanID:             it.Resource.AzurePlanID,
		})
		sent = append(sent, i)
	}
	if len(events) == 0 {
		return nil
	}
	body, err := json.Marshal(struct {
		Request []usageEvent `json:"request"`
	}{events})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}

	status, header, answer, err := s.post(ctx, body)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
		return s.readResults(items, sent, answer, results)
	case status == http.StatusBadRequest:
		// The batch as a whole is malformed: sending it again cannot
		// help.
		code, msg := errorDetail(answer)
		res := report.Result{Outcome: report.Rejected, Code: cmp.Or(code, StatusBadArgument), Message: msg, Response: rawOrWrapped(status, answer)}
		for _, i := range sent {
			results[i] = res
		}
		return nil
	default:
		err := statusError(status, header, answer)
		if status == http.StatusTooManyRequests || status >= 500 {
			if d, ok := report.ParseRetryAfter(header.Get("Retry-After"), s.now()); ok {
				return retryAfter(d, err)
			}
		}
		return err
	}
}

func checkItem(it report.Item) error {
	var errs []error
	r := it.Resource
	switch {
	case r.AzureResourceID == "" && r.AzureResourceURI == "":
		errs = append(errs, errors.New("no Azure resourceId or resourceUri"))
	case r.AzureResourceID != "" && r.AzureResourceURI != "":
		errs = append(errs, errors.New("both an Azure resourceId and a resourceUri"))
	}
	if r.AzurePlanID == "" {
		errs = append(errs, errors.New("no Azure planId"))
	}
	if it.Dimension == "" {
		errs = append(errs, errors.New("no dimension"))
	}
	if it.Hour.IsZero() {
		errs = append(errs, errors.New("no hour"))
	}
	if !it.Quantity.IsPositive() {
		errs = append(errs, fmt.Errorf("quantity %s is not positive", it.Quantity))
	} else if !it.Quantity.Equal(it.Quantity.Truncate(Decimals)) {
		errs = append(errs, fmt.Errorf("quantity %s has more than %d decimal places", it.Quantity, Decimals))
	}
	return errors.Join(errs...)
}

// post sends a batch with a bearer token. When Azure refuses the token
// (401 or 403) it fetches a new one and tries once more: a token can be
// revoked or rotated before it expires.
func (s *Sender) post(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	correlationID := newGUID()
	for attempt := 1; ; attempt++ {
		tok, err := s.tokens.get(ctx)
		if err != nil {
			return 0, nil, nil, err
		}
		status, header, answer, err := s.do(ctx, tok, correlationID, body)
		if err != nil {
			return 0, nil, nil, err
		}
		if (status == http.StatusUnauthorized || status == http.StatusForbidden) && attempt == 1 {
			s.tokens.invalidate(tok)
			continue
		}
		return status, header, answer, nil
	}
}

func (s *Sender) do(ctx context.Context, token, correlationID string, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	u := s.cfg.BaseURL + "/api/batchUsageEvent?api-version=" + APIVersion
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("x-ms-requestid", newGUID())
	req.Header.Set("x-ms-correlationid", correlationID)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, answer, nil
}

// eventResult is one result of a batchUsageEvent answer.
type eventResult struct {
	Status             string          `json:"status"`
	ResourceID         string          `json:"resourceId"`
	ResourceURI        string          `json:"resourceUri"`
	Dimension          string          `json:"dimension"`
	EffectiveStartTime string          `json:"effectiveStartTime"`
	Quantity           json.RawMessage `json:"quantity"`
	Error              *struct {
		Code           string `json:"code"`
		Message        string `json:"message"`
		AdditionalInfo *struct {
			AcceptedMessage *struct {
				Quantity json.RawMessage `json:"quantity"`
			} `json:"acceptedMessage"`
		} `json:"additionalInfo"`
	} `json:"error"`
}

func (s *Sender) readResults(items []report.Item, sent []int, answer []byte, results []report.Result) error {
	var batch struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(answer, &batch); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	parsed := make([]eventResult, len(batch.Result))
	for i, raw := range batch.Result {
		if err := json.Unmarshal(raw, &parsed[i]); err != nil {
			return fmt.Errorf("decode answer: result %d: %w", i, err)
		}
	}
	// Azure's documentation promises a result per event but not their
	// order: take the result at the event's position when it is about the
	// event, else the first unused one that is.
	used := make([]bool, len(parsed))
	for pos, i := range sent {
		it := items[i]
		j := -1
		if pos < len(parsed) && matches(it, parsed[pos]) {
			j = pos
		} else {
			for k := range parsed {
				if !used[k] && matches(it, parsed[k]) {
					j = k
					break
				}
			}
		}
		if j < 0 || used[j] {
			results[i] = report.Result{Outcome: report.Retry, Code: CodeNoResult, Message: "the batch answer has no result for this event"}
			continue
		}
		used[j] = true
		results[i] = toResult(it, parsed[j], batch.Result[j])
	}
	return nil
}

// matches reports whether r may be the result for it. Fields r lacks are
// not held against it.
func matches(it report.Item, r eventResult) bool {
	if r.Dimension != "" && r.Dimension != it.Dimension {
		return false
	}
	if r.ResourceID != "" && it.Resource.AzureResourceID != "" && !strings.EqualFold(r.ResourceID, it.Resource.AzureResourceID) {
		return false
	}
	if r.ResourceURI != "" && it.Resource.AzureResourceURI != "" && !strings.EqualFold(r.ResourceURI, it.Resource.AzureResourceURI) {
		return false
	}
	if t, ok := ParseTime(r.EffectiveStartTime); ok && !t.Truncate(time.Hour).Equal(it.Hour.UTC().Truncate(time.Hour)) {
		return false
	}
	return true
}

func toResult(it report.Item, r eventResult, raw json.RawMessage) report.Result {
	res := report.Result{Code: r.Status, Response: raw}
	if r.Error != nil {
		res.Message = r.Error.Message
	}
	switch r.Status {
	case StatusAccepted:
		res.Outcome = report.Accepted
	case StatusDuplicate:
		res.Outcome = report.Duplicate
		// A duplicate is either this report's earlier attempt, whose
		// answer was lost, or a different report of the same hour: say
		// so when Azure holds another quantity.
		if held, ok := acceptedQuantity(r); ok && !held.Equal(it.Quantity) {
			res.Message = fmt.Sprintf("Azure already holds quantity %s for this resource, dimension and hour; this report's %s was not recorded", held, it.Quantity)
		}
	case StatusExpired:
		res.Outcome = report.Expired
	default:
		res.Outcome = report.Rejected
		if res.Code == "" {
			res.Code = StatusError
		}
		if r.Status == StatusError && r.Error != nil && r.Error.Code != "" {
			res.Message = r.Error.Code + ": " + res.Message
		}
	}
	return res
}

func acceptedQuantity(r eventResult) (decimal.Decimal, bool) {
	if r.Error == nil || r.Error.AdditionalInfo == nil || r.Error.AdditionalInfo.AcceptedMessage == nil {
		return decimal.Decimal{}, false
	}
	q, err := decimal.NewFromString(strings.Trim(string(r.Error.AdditionalInfo.AcceptedMessage.Quantity), `"`))
	return q, err == nil
}

// ParseTime reads an effectiveStartTime as Azure writes it: ISO 8601 with
// or without fractional seconds and zone (UTC when there is none).
func ParseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// errorDetail reads the code and message of an error answer
// ({"code", "message", "details": [{"code", "message", "target"}]}).
func errorDetail(answer []byte) (code, msg string) {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"details"`
	}
	if json.Unmarshal(answer, &e) != nil {
		return "", firstLine(string(answer), 300)
	}
	msg = e.Message
	for _, d := range e.Details {
		if d.Message != "" {
			msg += "; " + d.Message
		}
	}
	return e.Code, firstLine(strings.TrimPrefix(msg, "; "), 1000)
}

func statusError(status int, header http.Header, answer []byte) error {
	msg := fmt.Sprintf("status %d", status)
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		msg += " (credentials refused, also with a fresh token)"
	}
	if code, detail := errorDetail(answer); code != "" || detail != "" {
		msg += ": " + strings.TrimPrefix(code+": "+detail, ": ")
	}
	if id := header.Get("x-ms-correlationid"); id != "" {
		msg += " (x-ms-correlationid " + id + ")"
	}
	return errors.New(msg)
}

// rawOrWrapped returns answer when it is JSON, else a JSON object holding
// the status and the answer as text, so that Result.Response is always
// JSON.
func rawOrWrapped(status int, answer []byte) json.RawMessage {
	if json.Valid(answer) {
		return json.RawMessage(bytes.Clone(answer))
	}
	b, _ := json.Marshal(struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}{status, firstLine(string(answer), 4096)})
	return b
}

func retryAfter(d time.Duration, err error) error {
	return &report.RetryAfterError{After: d, Err: err}
}

// newGUID returns a random (version 4) GUID for Azure's request and
// correlation ids.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
