// Package aws reports usage to AWS Marketplace through BatchMeterUsage of
// the Marketplace Metering Service, using the official aws-sdk-go-v2
// client.
//
// AWS keeps the first record per customer, dimension and hour: sending the
// same record again is answered Success (the call is idempotent), a record
// with another quantity for a metered hour is answered DuplicateRecord. The
// runner's retries therefore never bill twice.
package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/marketplacemetering"
	"github.com/aws/aws-sdk-go-v2/service/marketplacemetering/types"
	"github.com/aws/smithy-go"

	"github.com/tally-metering/tally/internal/report"
)

// MaxBatch is how many usage records one BatchMeterUsage call takes.
const MaxBatch = 25

// Window is how late after an hour's start AWS still takes its usage.
// AWS's API reference long said records are "not accepted more than 6
// hours after the event"; newer SDK documentation speaks of 24 hours but
// keeps a cut-off at 06:00 UTC on the first of the month for the previous
// month, so an hour late on a month's last day has barely more than six.
// Six hours holds under both readings; a later Expired answer is handled
// anyway (the runner moves the quantity into a later hour).
const Window = 6 * time.Hour

// Sender sends reports to AWS Marketplace. It is safe for concurrent use.
type Sender struct {
	client      *marketplacemetering.Client
	productCode string
	secret      string
	timeout     time.Duration
	logger      *slog.Logger
}

var _ report.Sender = (*Sender)(nil)

// Option adjusts a Sender built by New.
type Option func(*options)

type options struct {
	httpClient *http.Client
	logger     *slog.Logger
}

// WithHTTPClient makes the Sender use c (tests, proxies).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithLogger makes the Sender log through l.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// New returns a Sender for cfg. The SDK's own retries are off: the runner
// retries with backoff and the outbox records every attempt.
func New(ctx context.Context, cfg Config, opts ...Option) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws marketplace config: %w", err)
	}
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	load := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRetryer(func() awssdk.Retryer { return awssdk.NopRetryer{} }),
	}
	if o.httpClient != nil {
		load = append(load, config.WithHTTPClient(o.httpClient))
	} else {
		load = append(load, config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(cfg.timeout())))
	}
	if cfg.AccessKeyID != "" {
		load = append(load, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("aws marketplace: load sdk config: %w", redactErr(err, cfg.SecretAccessKey))
	}
	client := marketplacemetering.NewFromConfig(awsCfg, func(mo *marketplacemetering.Options) {
		if cfg.Endpoint != "" {
			mo.BaseEndpoint = awssdk.String(cfg.Endpoint)
		}
		mo.Retryer = awssdk.NopRetryer{}
	})
	return &Sender{
		client:      client,
		productCode: cfg.ProductCode,
		secret:      cfg.SecretAccessKey,
		timeout:     cfg.timeout(),
		logger:      o.logger.With("component", "report", "target", "aws-marketplace"),
	}, nil
}

// Capabilities returns AWS's rules: 25 records a call, integer quantities,
// a six-hour window.
func (s *Sender) Capabilities() report.Capabilities {
	return report.Capabilities{MaxBatch: MaxBatch, Decimals: 0, Window: Window}
}

// Send meters items. Records with a LicenseArn go in calls without a
// ProductCode, the others in calls with the configured one (AWS forbids
// mixing them), at most 25 a call. A call refused as a whole because of
// one record (timestamp out of bounds, invalid customer or dimension) is
// retried record by record, as AWS asks, so that one bad record does not
// take 24 good ones down with it.
func (s *Sender) Send(ctx context.Context, items []report.Item) ([]report.Result, error) {
	results := make([]report.Result, len(items))
	recs := make([]types.UsageRecord, len(items))
	var legacy, licensed []int
	for i, it := range items {
		rec, res, ok := s.record(it)
		if !ok {
			results[i] = res
			continue
		}
		recs[i] = rec
		if rec.LicenseArn != nil {
			licensed = append(licensed, i)
		} else {
			legacy = append(legacy, i)
		}
	}
	var calls []call
	for _, g := range []struct {
		idx         []int
		productCode *string
	}{{legacy, awssdk.String(s.productCode)}, {licensed, nil}} {
		for len(g.idx) > 0 {
			n := min(len(g.idx), MaxBatch)
			calls = append(calls, call{productCode: g.productCode, idx: g.idx[:n]})
			g.idx = g.idx[n:]
		}
	}
	for ci, c := range calls {
		err := s.meter(ctx, c, recs, results, true)
		if err == nil {
			continue
		}
		if ci == 0 {
			// Nothing is known yet: the whole Send is retried.
			return nil, err
		}
		for _, rest := range calls[ci:] {
			for _, i := range rest.idx {
				results[i] = s.retryResult("NotSent", err)
			}
		}
		break
	}
	return results, nil
}

type call struct {
	productCode *string
	idx         []int
}

// record turns an item into a usage record, or a Rejected result when it
// can never be sent.
func (s *Sender) record(it report.Item) (types.UsageRecord, report.Result, bool) {
	reject := func(code, msg string) (types.UsageRecord, report.Result, bool) {
		return types.UsageRecord{}, s.result(report.Rejected, code, msg, resultJSON{Status: code, Error: &errorJSON{Code: code, Message: msg}}), false
	}
	r := it.Resource
	rec := types.UsageRecord{
		Dimension: awssdk.String(it.Dimension),
		Timestamp: awssdk.Time(it.Hour.UTC()),
	}
	switch {
	case r.AWSCustomerAWSAccountID != "" && r.AWSCustomerIdentifier != "":
		// AWS rejects records carrying both.
		return reject("InvalidCustomer", "the customer has both an AWS customer identifier and an AWS account id; configure one")
	case r.AWSCustomerAWSAccountID != "":
		rec.CustomerAWSAccountId = awssdk.String(r.AWSCustomerAWSAccountID)
		if r.AWSLicenseArn != "" {
			rec.LicenseArn = awssdk.String(r.AWSLicenseArn)
		}
	case r.AWSCustomerIdentifier != "":
		rec.CustomerIdentifier = awssdk.String(r.AWSCustomerIdentifier)
	default:
		return reject("MissingCustomer", "the customer has no AWS customer identifier or account id")
	}
	if rec.LicenseArn == nil && s.productCode == "" {
		return reject("MissingProductCode", "records without a license ARN need the target's productCode")
	}
	if it.Dimension == "" {
		return reject("MissingDimension", "the report has no dimension")
	}
	if !it.Quantity.IsInteger() || it.Quantity.IsNegative() {
		return reject("InvalidQuantity", fmt.Sprintf("quantity %s is not a non-negative integer", it.Quantity))
	}
	q := it.Quantity.IntPart()
	if q > 1<<31-1 {
		return reject("InvalidQuantity", fmt.Sprintf("quantity %s exceeds AWS's 32-bit limit", it.Quantity))
	}
	rec.Quantity = awssdk.Int32(int32(q))
	return rec, report.Result{}, true
}

// meter sends one call and fills results for c.idx. It returns an error
// only for a transient failure before anything is known about the records.
func (s *Sender) meter(ctx context.Context, c call, recs []types.UsageRecord, results []report.Result, isolate bool) error {
	in := &marketplacemetering.BatchMeterUsageInput{ProductCode: c.productCode}
	for _, i := range c.idx {
		in.UsageRecords = append(in.UsageRecords, recs[i])
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	out, err := s.client.BatchMeterUsage(cctx, in)
	cancel()
	if err != nil {
		cls, code, msg, reqID := classify(err)
		switch {
		case cls == classTransient:
			return fmt.Errorf("aws marketplace: batch meter usage: %w", redactErr(err, s.secret))
		case cls == classRecord && isolate && len(c.idx) > 1:
			s.logger.Info("batch refused for one record, sending records one by one", "code", code, "records", len(c.idx))
			for k, i := range c.idx {
				if err := s.meter(ctx, call{productCode: c.productCode, idx: []int{i}}, recs, results, false); err != nil {
					for _, j := range c.idx[k:] {
						results[j] = s.retryResult("NotSent", err)
					}
					break
				}
			}
			return nil
		}
		outcome := report.Rejected
		if code == "TimestampOutOfBoundsException" {
			outcome = report.Expired
		}
		for _, i := range c.idx {
			results[i] = s.result(outcome, code, msg, resultJSON{
				Status: code, Error: &errorJSON{Code: code, Message: msg}, RequestID: reqID,
				UsageRecord: recordOf(recs[i]),
			})
		}
		return nil
	}

	reqID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	pending := make(map[string][]int, len(c.idx))
	for _, i := range c.idx {
		k := recordKey(recs[i])
		pending[k] = append(pending[k], i)
	}
	take := func(r *types.UsageRecord) (int, bool) {
		if r == nil {
			return 0, false
		}
		k := recordKey(*r)
		q := pending[k]
		if len(q) == 0 {
			return 0, false
		}
		pending[k] = q[1:]
		return q[0], true
	}
	for _, r := range out.Results {
		i, ok := take(r.UsageRecord)
		if !ok {
			s.logger.Warn("result for a record that was not sent", "status", string(r.Status))
			continue
		}
		status := string(r.Status)
		var outcome report.Outcome
		msg := ""
		switch r.Status {
		case types.UsageRecordResultStatusSuccess:
			outcome = report.Accepted
		case types.UsageRecordResultStatusDuplicateRecord:
			outcome = report.Duplicate
			msg = "AWS already holds a record with another quantity for this customer, dimension and hour"
		case types.UsageRecordResultStatusCustomerNotSubscribed:
			outcome = report.Rejected
			msg = "the customer is not subscribed to the product"
		default:
			outcome = report.Rejected
			msg = "unknown result status"
		}
		results[i] = s.result(outcome, status, msg, resultJSON{
			Status: status, MeteringRecordID: awssdk.ToString(r.MeteringRecordId),
			UsageRecord: recordOf(*r.UsageRecord), RequestID: reqID,
		})
	}
	for _, r := range out.UnprocessedRecords {
		i, ok := take(&r)
		if !ok {
			continue
		}
		results[i] = s.result(report.Retry, "UnprocessedRecord", "AWS did not process the record; send it again",
			resultJSON{Status: "UnprocessedRecord", UsageRecord: recordOf(r), RequestID: reqID})
	}
	for _, q := range pending {
		for _, i := range q {
			results[i] = s.result(report.Retry, "MissingResult", "AWS returned no result for the record",
				resultJSON{Status: "MissingResult", UsageRecord: recordOf(recs[i]), RequestID: reqID})
		}
	}
	return nil
}

func (s *Sender) retryResult(code string, err error) report.Result {
	msg := err.Error()
	return s.result(report.Retry, code, msg, resultJSON{Status: code, Error: &errorJSON{Code: code, Message: msg}})
}

// result builds a Result whose message and response hold no secret.
func (s *Sender) result(o report.Outcome, code, msg string, resp resultJSON) report.Result {
	b, err := json.Marshal(resp)
	if err != nil {
		b = []byte(`{}`)
	}
	return report.Result{
		Outcome:  o,
		Code:     code,
		Message:  redact(msg, s.secret),
		Response: json.RawMessage(redact(string(b), s.secret)),
	}
}

type errClass int

const (
	classTransient errClass = iota // retry the call later
	classRecord                    // one record spoiled the call
	classReject                    // the call can never succeed
)

// transientCodes are AWS error codes worth retrying as they are.
var transientCodes = map[string]bool{
	"ThrottlingException":           true,
	"Throttling":                    true,
	"ThrottledException":            true,
	"TooManyRequestsException":      true,
	"RequestLimitExceeded":          true,
	"InternalServiceErrorException": true,
	"InternalFailure":               true,
	"ServiceUnavailable":            true,
	"RequestTimeout":                true,
	"RequestTimeoutException":       true,
	"RequestTimeTooSkewed":          true, // the SDK corrects its clock offset
	"ExpiredTokenException":         true, // temporary credentials are refreshed
}

// recordCodes refuse a whole call because of one or more of its records.
var recordCodes = map[string]bool{
	"TimestampOutOfBoundsException":      true,
	"InvalidCustomerIdentifierException": true,
	"InvalidUsageDimensionException":     true,
	"InvalidTagException":                true,
	"InvalidUsageAllocationsException":   true,
	"InvalidLicenseException":            true,
	"CustomerNotEntitledException":       true,
	"ValidationException":                true,
}

// classify sorts a failed call and returns the provider's code, message
// and request id.
func classify(err error) (cls errClass, code, msg, reqID string) {
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		reqID = re.ServiceRequestID()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
		switch {
		case transientCodes[code], status >= 500, status == http.StatusTooManyRequests, ae.ErrorFault() == smithy.FaultServer:
			return classTransient, code, msg, reqID
		case recordCodes[code]:
			return classRecord, code, msg, reqID
		default:
			return classReject, code, msg, reqID
		}
	}
	if status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout {
		return classReject, strconv.Itoa(status), err.Error(), reqID
	}
	// Network errors, timeouts, 5xx without a body: nothing is known.
	return classTransient, "", err.Error(), reqID
}

type resultJSON struct {
	Status           string      `json:"status"`
	MeteringRecordID string      `json:"meteringRecordId,omitempty"`
	UsageRecord      *recordJSON `json:"usageRecord,omitempty"`
	Error            *errorJSON  `json:"error,omitempty"`
	RequestID        string      `json:"requestId,omitempty"`
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

type recordJSON struct {
	Timestamp            time.Time `json:"timestamp"`
	CustomerIdentifier   string    `json:"customerIdentifier,omitempty"`
	CustomerAWSAccountID string    `json:"customerAWSAccountId,omitempty"`
	LicenseArn           string    `json:"licenseArn,omitempty"`
	Dimension            string    `json:"dimension"`
	Quantity             int32     `json:"quantity"`
}

func recordOf(r types.UsageRecord) *recordJSON {
	return &recordJSON{
		Timestamp:            awssdk.ToTime(r.Timestamp).UTC(),
		CustomerIdentifier:   awssdk.ToString(r.CustomerIdentifier),
		CustomerAWSAccountID: awssdk.ToString(r.CustomerAWSAccountId),
		LicenseArn:           awssdk.ToString(r.LicenseArn),
		Dimension:            awssdk.ToString(r.Dimension),
		Quantity:             awssdk.ToInt32(r.Quantity),
	}
}

// recordKey matches a record in an answer to the one sent: AWS echoes
// customer, dimension and timestamp.
func recordKey(r types.UsageRecord) string {
	return strings.Join([]string{
		awssdk.ToString(r.CustomerIdentifier),
		awssdk.ToString(r.CustomerAWSAccountId),
		awssdk.ToString(r.LicenseArn),
		awssdk.ToString(r.Dimension),
		strconv.FormatInt(awssdk.ToTime(r.Timestamp).Unix(), 10),
	}, "\x00")
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// redactedError keeps the cause for errors.As while its text hides the
// secret.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactErr(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: redact(err.Error(), secret), err: err}
}
