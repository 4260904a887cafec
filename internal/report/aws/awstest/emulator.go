// Package awstest emulates the AWS Marketplace Metering Service's
// BatchMeterUsage (the JSON 1.1 protocol the SDK speaks) for tests, with
// the provider's documented rules and injectable faults.
//
// Rules enforced:
//   - 1 to 25 records a call;
//   - the request's ProductCode must be the product's; records without a
//     LicenseArn need it, records with one must come without it;
//   - a record names its customer by CustomerIdentifier or by
//     CustomerAWSAccountId (optionally with LicenseArn), never both;
//   - a record whose timestamp is Window or more in the past refuses the
//     whole call with TimestampOutOfBoundsException (nothing is stored);
//   - an unknown dimension refuses the whole call
//     (InvalidUsageDimensionException) when Options.Dimensions is set;
//   - an unknown customer is answered CustomerNotSubscribed;
//   - the first record per customer, dimension and hour wins: the same
//     record again is answered Success with the same MeteringRecordId
//     (AWS's idempotency), another quantity is answered DuplicateRecord.
package awstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Target is the X-Amz-Target of BatchMeterUsage.
const Target = "AWSMPMeteringService.BatchMeterUsage"

// maxRequest is AWS's limit on a BatchMeterUsage request (less than 1 MB).
const maxRequest = 1<<20 - 1

// DefaultWindow is the window enforced when Options.Window is 0.
const DefaultWindow = 6 * time.Hour

// Customer is a buyer subscribed to the product: by CustomerIdentifier
// (legacy SaaS integrations) or by AWS account id, with the LicenseArn of
// a concurrent agreement or without one.
type Customer struct {
	Identifier string
	AccountID  string
	LicenseArn string
}

// Options configure an Emulator.
type Options struct {
	ProductCode string
	Customers   []Customer
	// Dimensions lists the product's dimensions; empty accepts any.
	Dimensions []string
	// AccessKeyID, when set, is the only access key whose signed requests
	// are accepted (UnrecognizedClientException otherwise).
	AccessKeyID string
	// Window is how late after its timestamp a record is still taken
	// (DefaultWindow when 0).
	Window time.Duration
	// Now is the emulator's clock (time.Now when nil).
	Now func() time.Time
}

// Key identifies what AWS keeps once: a customer (identifier or account
// id, with the license ARN if any), a dimension and an hour.
type Key struct {
	Customer   string
	LicenseArn string
	Dimension  string
	Hour       time.Time
}

// FaultKind is a kind of injected fault.
type FaultKind int

// Fault kinds.
const (
	// ServerError answers 500 InternalServiceErrorException; nothing is
	// stored.
	ServerError FaultKind = iota + 1
	// Throttle answers 400 ThrottlingException; nothing is stored.
	Throttle
	// SlowBeforeAccept waits Delay before processing; if the client gives
	// up first nothing is stored.
	SlowBeforeAccept
	// SlowAfterAccept stores the records, then waits Delay before
	// answering: a client that gives up first does not know they were
	// taken.
	SlowAfterAccept
	// DropAfterAccept stores the records and closes the connection
	// without an answer.
	DropAfterAccept
	// Unprocessed leaves the last Count records of the call unprocessed
	// (returned in UnprocessedRecords, not stored); Count 0 means all.
	Unprocessed
)

// Fault is one injected fault, used by the next call.
type Fault struct {
	Kind  FaultKind
	Delay time.Duration
	Count int
}

type entry struct {
	quantity int64
	id       string
}

// Emulator is an http.Handler serving BatchMeterUsage. It is safe for
// concurrent use.
type Emulator struct {
	opts       Options
	customers  map[string]bool
	dimensions map[string]bool

	mu        sync.Mutex
	faults    []Fault
	calls     int
	nextID    int
	store     map[Key]entry
	conflicts int
}

// New returns an emulator with an empty store.
func New(o Options) *Emulator {
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Emulator{opts: o, customers: map[string]bool{}, dimensions: map[string]bool{}, store: map[Key]entry{}}
	for _, c := range o.Customers {
		e.customers[customerKey(c.Identifier, c.AccountID, c.LicenseArn)] = true
	}
	for _, d := range o.Dimensions {
		e.dimensions[d] = true
	}
	return e
}

// Inject queues faults; each call to the emulator uses the next one.
func (e *Emulator) Inject(faults ...Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = append(e.faults, faults...)
}

// Calls returns how many requests the emulator received.
func (e *Emulator) Calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// Accepted returns the quantity AWS holds per customer, dimension and
// hour.
func (e *Emulator) Accepted() map[Key]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Key]int64, len(e.store))
	for k, v := range e.store {
		out[k] = v.quantity
	}
	return out
}

// Conflicts returns how many records were answered DuplicateRecord: a
// second, different quantity for an hour already metered.
func (e *Emulator) Conflicts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conflicts
}

type wireRecord struct {
	Timestamp            json.Number `json:"Timestamp"`
	CustomerIdentifier   string      `json:"CustomerIdentifier,omitempty"`
	CustomerAWSAccountID string      `json:"CustomerAWSAccountId,omitempty"`
	LicenseArn           string      `json:"LicenseArn,omitempty"`
	Dimension            string      `json:"Dimension"`
	Quantity             *int64      `json:"Quantity,omitempty"`
}

type wireRequest struct {
	ProductCode  string       `json:"ProductCode,omitempty"`
	UsageRecords []wireRecord `json:"UsageRecords"`
}

type wireResult struct {
	MeteringRecordID string     `json:"MeteringRecordId,omitempty"`
	Status           string     `json:"Status"`
	UsageRecord      wireRecord `json:"UsageRecord"`
}

type wireResponse struct {
	Results            []wireResult `json:"Results"`
	UnprocessedRecords []wireRecord `json:"UnprocessedRecords"`
}

type apiError struct {
	status  int
	code    string
	message string
}

// ServeHTTP answers one BatchMeterUsage call.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.calls++
	var f Fault
	if len(e.faults) > 0 {
		f, e.faults = e.faults[0], e.faults[1:]
	}
	e.mu.Unlock()

	switch f.Kind {
	case ServerError:
		writeError(w, apiError{http.StatusInternalServerError, "InternalServiceErrorException", "injected internal error"})
		return
	case Throttle:
		writeError(w, apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"})
		return
	}
	// Reading the whole body first lets the server notice a client that
	// hangs up while the emulator is slow.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil {
		return
	}
	if len(body) > maxRequest {
		writeError(w, apiError{http.StatusBadRequest, "ValidationException", "BatchMeterUsage requests must be less than 1MB in size"})
		return
	}
	if f.Kind == SlowBeforeAccept && !wait(r.Context(), f.Delay) {
		return
	}

	unprocessed := -1
	if f.Kind == Unprocessed {
		unprocessed = f.Count
	}
	resp, aerr := e.process(r, body, unprocessed)
	if aerr != nil {
		writeError(w, *aerr)
		return
	}
	switch f.Kind {
	case SlowAfterAccept:
		if !wait(r.Context(), f.Delay) {
			return
		}
	case DropAfterAccept:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("awstest: DropAfterAccept needs a server whose connections can be hijacked (HTTP/1.1)")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "emulated")
	_ = json.NewEncoder(w).Encode(resp)
}

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// process checks and stores a request; unprocessed ≥ 0 leaves that many
// trailing records (0: all) unprocessed.
func (e *Emulator) process(r *http.Request, body []byte, unprocessed int) (*wireResponse, *apiError) {
	bad := func(code, format string, args ...any) (*wireResponse, *apiError) {
		return nil, &apiError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != Target {
		return bad("UnknownOperationException", "unknown operation %q", r.Header.Get("X-Amz-Target"))
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		return bad("SerializationException", "content type %q is not application/x-amz-json-1.1", r.Header.Get("Content-Type"))
	}
	if e.opts.AccessKeyID != "" {
		auth := r.Header.Get("Authorization")
		if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+e.opts.AccessKeyID+"/") {
			return bad("UnrecognizedClientException", "The security token included in the request is invalid.")
		}
	}
	var req wireRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return bad("SerializationException", "malformed request: %v", err)
	}
	if n := len(req.UsageRecords); n == 0 || n > 25 {
		return bad("ValidationException", "1 validation error detected: UsageRecords has %d members; it must have between 1 and 25", n)
	}
	if req.ProductCode != "" && req.ProductCode != e.opts.ProductCode {
		return bad("InvalidProductCodeException", "product code %q is not valid", req.ProductCode)
	}

	now := e.opts.Now()
	hours := make([]time.Time, len(req.UsageRecords))
	for i, rec := range req.UsageRecords {
		switch {
		case rec.CustomerIdentifier != "" && rec.CustomerAWSAccountID != "":
			return bad("ValidationException", "CustomerIdentifier and CustomerAWSAccountId are mutually exclusive")
		case rec.CustomerIdentifier == "" && rec.CustomerAWSAccountID == "":
			return bad("ValidationException", "a usage record needs CustomerIdentifier or CustomerAWSAccountId")
		case rec.LicenseArn == "" && req.ProductCode == "":
			return bad("InvalidProductCodeException", "ProductCode is required for records without LicenseArn")
		case rec.LicenseArn != "" && req.ProductCode != "":
			return bad("ValidationException", "records with LicenseArn must be sent without ProductCode")
		case rec.Quantity != nil && *rec.Quantity < 0:
			return bad("ValidationException", "Quantity must be at least 0")
		case rec.Quantity != nil && *rec.Quantity > 1<<31-1:
			return bad("ValidationException", "Quantity must be at most 2147483647")
		case len(e.dimensions) > 0 && !e.dimensions[rec.Dimension]:
			return bad("InvalidUsageDimensionException", "dimension %q is not valid for the product", rec.Dimension)
		}
		sec, err := rec.Timestamp.Float64()
		if err != nil {
			return bad("SerializationException", "timestamp %q is not a number", rec.Timestamp)
		}
		ts := time.Unix(0, int64(sec*1e9)).UTC()
		if !ts.After(now.Add(-e.opts.Window)) {
			return bad("TimestampOutOfBoundsException", "timestamp %s is out of the allowed range", ts.Format(time.RFC3339))
		}
		hours[i] = ts.Truncate(time.Hour)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	resp := &wireResponse{Results: []wireResult{}, UnprocessedRecords: []wireRecord{}}
	first := len(req.UsageRecords)
	if unprocessed >= 0 {
		first = 0 // Count 0: none processed
		if unprocessed > 0 {
			first = max(0, len(req.UsageRecords)-unprocessed)
		}
	}
	for i, rec := range req.UsageRecords {
		if i >= first {
			resp.UnprocessedRecords = append(resp.UnprocessedRecords, rec)
			continue
		}
		if !e.customers[customerKey(rec.CustomerIdentifier, rec.CustomerAWSAccountID, rec.LicenseArn)] {
			resp.Results = append(resp.Results, wireResult{Status: "CustomerNotSubscribed", UsageRecord: rec})
			continue
		}
		var q int64
		if rec.Quantity != nil {
			q = *rec.Quantity
		}
		k := Key{Customer: rec.CustomerIdentifier + rec.CustomerAWSAccountID, LicenseArn: rec.LicenseArn, Dimension: rec.Dimension, Hour: hours[i]}
		if old, ok := e.store[k]; ok {
			if old.quantity == q {
				resp.Results = append(resp.Results, wireResult{MeteringRecordID: old.id, Status: "Success", UsageRecord: rec})
			} else {
				e.conflicts++
				resp.Results = append(resp.Results, wireResult{Status: "DuplicateRecord", UsageRecord: rec})
			}
			continue
		}
		e.nextID++
		id := fmt.Sprintf("mr-%08d", e.nextID)
		e.store[k] = entry{quantity: q, id: id}
		resp.Results = append(resp.Results, wireResult{MeteringRecordID: id, Status: "Success", UsageRecord: rec})
	}
	return resp, nil
}

func customerKey(identifier, account, license string) string {
	if identifier != "" {
		return "id:" + identifier
	}
	return "acct:" + account + "|" + license
}

func writeError(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "emulated")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "message": e.message})
}
