package aws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/aws"
	"github.com/tally-metering/tally/internal/report/aws/awstest"
)

const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

var now = time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC)

func hour(h int) time.Time { return time.Date(2026, 11, 22, h, 0, 0, 0, time.UTC) }

type env struct {
	emu    *awstest.Emulator
	sender *aws.Sender
	cfg    aws.Config
}

// TestMain drops AWS_CA_BUNDLE, which some machines set for their own
// proxies: the emulator speaks plain HTTP, and with a CA bundle loaded for
// every one of the many senders these tests make, the SDK was seen closing
// a connection while reading an answer (about 1 run in 100 under load).
func TestMain(m *testing.M) {
	os.Unsetenv("AWS_CA_BUNDLE")
	os.Exit(m.Run())
}

func newEnv(t *testing.T, opts awstest.Options, tweak ...func(*aws.Config)) env {
	t.Helper()
	if opts.ProductCode == "" {
		opts.ProductCode = "prod-1"
	}
	if opts.Customers == nil {
		opts.Customers = []awstest.Customer{
			{Identifier: "cust-a"}, {Identifier: "cust-b"}, {Identifier: "cust-c"},
			{AccountID: "111122223333", LicenseArn: "arn:aws:license-manager::294406891311:license:l-1"},
		}
	}
	if opts.AccessKeyID == "" {
		opts.AccessKeyID = "AKIDTALLYTEST"
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	emu := awstest.New(opts)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:          "us-east-1",
		Endpoint:        srv.URL,
		ProductCode:     "prod-1",
		AccessKeyID:     "AKIDTALLYTEST",
		SecretAccessKey: secret,
		Timeout:         2 * time.Second,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := aws.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return env{emu: emu, sender: s, cfg: cfg}
}

func item(id, customer, dim string, h time.Time, q int64) report.Item {
	return report.Item{
		ID:        id,
		Resource:  report.Resource{CustomerID: customer, AWSCustomerIdentifier: customer},
		Dimension: dim,
		Hour:      h,
		Quantity:  decimal.NewFromInt(q),
		Attempt:   1,
	}
}

func licensed(id, dim string, h time.Time, q int64) report.Item {
	it := item(id, "", dim, h, q)
	it.Resource = report.Resource{CustomerID: "c-lic", AWSCustomerAWSAccountID: "111122223333", AWSLicenseArn: "arn:aws:license-manager::294406891311:license:l-1"}
	return it
}

type outcome struct {
	Outcome report.Outcome
	Code    string
}

func outcomes(rs []report.Result) []outcome {
	out := make([]outcome, len(rs))
	for i, r := range rs {
		out[i] = outcome{r.Outcome, r.Code}
	}
	return out
}

func noSecret(t *testing.T, rs []report.Result) {
	t.Helper()
	for _, r := range rs {
		if strings.Contains(r.Message, secret) || bytes.Contains(r.Response, []byte(secret)) {
			t.Errorf("result %+v holds the secret", r)
		}
		if len(r.Response) > 0 && !json.Valid(r.Response) {
			t.Errorf("response %q is not JSON", r.Response)
		}
	}
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t, awstest.Options{})
	got := e.sender.Capabilities()
	want := report.Capabilities{MaxBatch: 25, Decimals: 0, Window: 6 * time.Hour}
	if got != want {
		t.Errorf("Capabilities() = %+v, want %+v", got, want)
	}
}

func TestSendMapsRecordResults(t *testing.T) {
	e := newEnv(t, awstest.Options{})
	ctx := context.Background()
	// Earlier sends: cust-a/calls/10h with 5, cust-b/calls/10h with 7.
	if _, err := e.sender.Send(ctx, []report.Item{item("r0", "cust-a", "calls", hour(10), 5), item("r1", "cust-b", "calls", hour(10), 7)}); err != nil {
		t.Fatal(err)
	}
	items := []report.Item{
		item("r2", "cust-a", "calls", hour(11), 3),   // new hour
		item("r0", "cust-a", "calls", hour(10), 5),   // the same record again
		item("r3", "cust-b", "calls", hour(10), 9),   // another quantity for a metered hour
		item("r4", "cust-zzz", "calls", hour(11), 1), // not subscribed
		licensed("r5", "calls", hour(11), 4),         // concurrent agreement, sent without product code
		item("r6", "cust-c", "storage", hour(9), 0),  // zero is a valid quantity
	}
	rs, err := e.sender.Send(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{report.Accepted, "Success"},
		{report.Accepted, "Success"},
		{report.Duplicate, "DuplicateRecord"},
		{report.Rejected, "CustomerNotSubscribed"},
		{report.Accepted, "Success"},
		{report.Accepted, "Success"},
	}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	noSecret(t, rs)
	var resp struct {
		Status           string `json:"status"`
		MeteringRecordID string `json:"meteringRecordId"`
		UsageRecord      struct {
			Timestamp          time.Time `json:"timestamp"`
			CustomerIdentifier string    `json:"customerIdentifier"`
			Quantity           int32     `json:"quantity"`
		} `json:"usageRecord"`
	}
	if err := json.Unmarshal(rs[0].Response, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != "Success" || resp.MeteringRecordID == "" || resp.UsageRecord.CustomerIdentifier != "cust-a" ||
		!resp.UsageRecord.Timestamp.Equal(hour(11)) || resp.UsageRecord.Quantity != 3 {
		t.Errorf("response = %s", rs[0].Response)
	}
	// Legacy and licensed records travel in separate calls: 1 + 2.
	if got := e.emu.Calls(); got != 3 {
		t.Errorf("calls = %d, want 3", got)
	}
	wantStore := map[awstest.Key]int64{
		{Customer: "cust-a", Dimension: "calls", Hour: hour(10)}:                                                                        5,
		{Customer: "cust-b", Dimension: "calls", Hour: hour(10)}:                                                                        7,
		{Customer: "cust-a", Dimension: "calls", Hour: hour(11)}:                                                                        3,
		{Customer: "111122223333", LicenseArn: "arn:aws:license-manager::294406891311:license:l-1", Dimension: "calls", Hour: hour(11)}: 4,
		{Customer: "cust-c", Dimension: "storage", Hour: hour(9)}:                                                                       0,
	}
	if diff := cmp.Diff(wantStore, e.emu.Accepted()); diff != "" {
		t.Errorf("emulator store (-want +got):\n%s", diff)
	}
}

func TestSendRejectsUnsendableItemsLocally(t *testing.T) {
	e := newEnv(t, awstest.Options{})
	noCustomer := item("r1", "", "calls", hour(11), 1)
	both := licensed("r2", "calls", hour(11), 1)
	both.Resource.AWSCustomerIdentifier = "cust-a"
	fraction := item("r3", "cust-a", "calls", hour(11), 1)
	fraction.Quantity = decimal.RequireFromString("1.5")
	huge := item("r4", "cust-a", "calls", hour(11), 1<<31)
	rs, err := e.sender.Send(context.Background(), []report.Item{noCustomer, both, fraction, huge})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{report.Rejected, "MissingCustomer"},
		{report.Rejected, "InvalidCustomer"},
		{report.Rejected, "InvalidQuantity"},
		{report.Rejected, "InvalidQuantity"},
	}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if got := e.emu.Calls(); got != 0 {
		t.Errorf("calls = %d, want 0", got)
	}
}

func TestSendWithoutProductCode(t *testing.T) {
	e := newEnv(t, awstest.Options{}, func(c *aws.Config) { c.ProductCode = "" })
	rs, err := e.sender.Send(context.Background(), []report.Item{item("r1", "cust-a", "calls", hour(11), 1), licensed("r2", "calls", hour(11), 2)})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{report.Rejected, "MissingProductCode"}, {report.Accepted, "Success"}}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestTimestampOutOfBounds(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		e := newEnv(t, awstest.Options{})
		rs, err := e.sender.Send(context.Background(), []report.Item{item("r1", "cust-a", "calls", hour(6), 2)}) // 6.5 h old
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]outcome{{report.Expired, "TimestampOutOfBoundsException"}}, outcomes(rs)); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		if len(e.emu.Accepted()) != 0 {
			t.Errorf("store = %v, want empty", e.emu.Accepted())
		}
	})
	t.Run("one record spoils the batch", func(t *testing.T) {
		e := newEnv(t, awstest.Options{})
		items := []report.Item{
			item("r1", "cust-a", "calls", hour(11), 2),
			item("r2", "cust-b", "calls", hour(5), 3), // expired
			item("r3", "cust-c", "calls", hour(10), 4),
		}
		rs, err := e.sender.Send(context.Background(), items)
		if err != nil {
			t.Fatal(err)
		}
		want := []outcome{{report.Accepted, "Success"}, {report.Expired, "TimestampOutOfBoundsException"}, {report.Accepted, "Success"}}
		if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		wantStore := map[awstest.Key]int64{
			{Customer: "cust-a", Dimension: "calls", Hour: hour(11)}: 2,
			{Customer: "cust-c", Dimension: "calls", Hour: hour(10)}: 4,
		}
		if diff := cmp.Diff(wantStore, e.emu.Accepted()); diff != "" {
			t.Errorf("store (-want +got):\n%s", diff)
		}
		if got := e.emu.Calls(); got != 4 { // the batch, then one call per record
			t.Errorf("calls = %d, want 4", got)
		}
	})
}

func TestInvalidDimensionIsIsolated(t *testing.T) {
	e := newEnv(t, awstest.Options{Dimensions: []string{"calls"}})
	rs, err := e.sender.Send(context.Background(), []report.Item{
		item("r1", "cust-a", "calls", hour(11), 2),
		item("r2", "cust-b", "bogus", hour(11), 3),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{report.Accepted, "Success"}, {report.Rejected, "InvalidUsageDimensionException"}}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestWholeCallRejected(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*aws.Config)
		code  string
	}{
		{"wrong product code", func(c *aws.Config) { c.ProductCode = "prod-other" }, "InvalidProductCodeException"},
		{"unknown access key", func(c *aws.Config) { c.AccessKeyID = "AKIDSTOLEN" }, "UnrecognizedClientException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, awstest.Options{}, tc.tweak)
			rs, err := e.sender.Send(context.Background(), []report.Item{item("r1", "cust-a", "calls", hour(11), 2), item("r2", "cust-b", "calls", hour(11), 3)})
			if err != nil {
				t.Fatal(err)
			}
			want := []outcome{{report.Rejected, tc.code}, {report.Rejected, tc.code}}
			if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if got := e.emu.Calls(); got != 1 {
				t.Errorf("calls = %d, want 1 (a refused product or key is not retried record by record)", got)
			}
			noSecret(t, rs)
		})
	}
}

// TestFaults sends under every fault, then once more without one: the
// first send fails or asks for a retry as the contract says, the second
// completes, and the emulator holds each hour once.
func TestFaults(t *testing.T) {
	items := []report.Item{
		item("r1", "cust-a", "calls", hour(11), 2),
		item("r2", "cust-b", "calls", hour(11), 3),
		item("r3", "cust-c", "calls", hour(11), 4),
	}
	wantStore := map[awstest.Key]int64{
		{Customer: "cust-a", Dimension: "calls", Hour: hour(11)}: 2,
		{Customer: "cust-b", Dimension: "calls", Hour: hour(11)}: 3,
		{Customer: "cust-c", Dimension: "calls", Hour: hour(11)}: 4,
	}
	for _, tc := range []struct {
		name        string
		fault       awstest.Fault
		wantErr     bool
		wantFirst   []report.Outcome // when no error
		storedAfter int              // records held after the faulty call
	}{
		{name: "server error", fault: awstest.Fault{Kind: awstest.ServerError}, wantErr: true},
		{name: "throttling", fault: awstest.Fault{Kind: awstest.Throttle}, wantErr: true},
		{name: "timeout before accepting", fault: awstest.Fault{Kind: awstest.SlowBeforeAccept, Delay: 2 * time.Second}, wantErr: true},
		{name: "timeout after accepting", fault: awstest.Fault{Kind: awstest.SlowAfterAccept, Delay: 2 * time.Second}, wantErr: true, storedAfter: 3},
		{name: "slow but in time", fault: awstest.Fault{Kind: awstest.SlowAfterAccept, Delay: 50 * time.Millisecond},
			wantFirst: []report.Outcome{report.Accepted, report.Accepted, report.Accepted}, storedAfter: 3},
		{name: "connection dropped after accepting", fault: awstest.Fault{Kind: awstest.DropAfterAccept}, wantErr: true, storedAfter: 3},
		{name: "some records unprocessed", fault: awstest.Fault{Kind: awstest.Unprocessed, Count: 2},
			wantFirst: []report.Outcome{report.Accepted, report.Retry, report.Retry}, storedAfter: 1},
		{name: "all records unprocessed", fault: awstest.Fault{Kind: awstest.Unprocessed},
			wantFirst: []report.Outcome{report.Retry, report.Retry, report.Retry}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, awstest.Options{}, func(c *aws.Config) { c.Timeout = 300 * time.Millisecond })
			e.emu.Inject(tc.fault)
			rs, err := e.sender.Send(context.Background(), items)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Send = %v, want an error", outcomes(rs))
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error holds the secret: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				var got []report.Outcome
				for _, r := range rs {
					got = append(got, r.Outcome)
				}
				if diff := cmp.Diff(tc.wantFirst, got); diff != "" {
					t.Errorf("first outcomes (-want +got):\n%s", diff)
				}
			}
			if got := len(e.emu.Accepted()); got != tc.storedAfter {
				t.Errorf("after the fault the emulator holds %d records, want %d", got, tc.storedAfter)
			}
			rs, err = e.sender.Send(context.Background(), items)
			if err != nil {
				t.Fatalf("second send: %v", err)
			}
			for i, r := range rs {
				if r.Outcome != report.Accepted {
					t.Errorf("second send item %d: %v %s %s", i, r.Outcome, r.Code, r.Message)
				}
			}
			if diff := cmp.Diff(wantStore, e.emu.Accepted()); diff != "" {
				t.Errorf("store (-want +got):\n%s", diff)
			}
			if c := e.emu.Conflicts(); c != 0 {
				t.Errorf("conflicts = %d, want 0", c)
			}
		})
	}
}

// TestRetryLoop drives the sender as the runner does — batches of
// MaxBatch, items answered Retry or failed calls sent again — while the
// emulator injects every fault in turn. At the end AWS holds exactly the
// planned quantities, each hour once.
func TestRetryLoop(t *testing.T) {
	e := newEnv(t, awstest.Options{Dimensions: []string{"calls", "storage", "seats"}}, func(c *aws.Config) { c.Timeout = 200 * time.Millisecond })
	want := map[awstest.Key]int64{}
	var pending []report.Item
	n := 0
	for _, c := range []string{"cust-a", "cust-b", "cust-c"} {
		for _, d := range []string{"calls", "storage", "seats"} {
			for h := 8; h <= 11; h++ {
				n++
				q := int64(n * 7 % 50)
				pending = append(pending, item(fmt.Sprintf("r%d", n), c, d, hour(h), q))
				want[awstest.Key{Customer: c, Dimension: d, Hour: hour(h)}] = q
			}
		}
	}
	e.emu.Inject(
		awstest.Fault{Kind: awstest.DropAfterAccept},
		awstest.Fault{Kind: awstest.Unprocessed, Count: 5},
		awstest.Fault{Kind: awstest.ServerError},
		awstest.Fault{Kind: awstest.SlowAfterAccept, Delay: time.Second},
		awstest.Fault{Kind: awstest.Throttle},
		awstest.Fault{Kind: awstest.SlowBeforeAccept, Delay: time.Second},
		awstest.Fault{Kind: awstest.Unprocessed},
		awstest.Fault{Kind: awstest.DropAfterAccept},
	)
	max := e.sender.Capabilities().MaxBatch
	done := map[string]report.Outcome{}
	for round := 0; len(pending) > 0; round++ {
		if round > 30 {
			t.Fatalf("%d items still pending after 30 rounds", len(pending))
		}
		var next []report.Item
		for len(pending) > 0 {
			batch := pending[:min(max, len(pending))]
			pending = pending[len(batch):]
			rs, err := e.sender.Send(context.Background(), batch)
			if err != nil {
				next = append(next, batch...)
				continue
			}
			for i, r := range rs {
				switch r.Outcome {
				case report.Accepted, report.Duplicate:
					done[batch[i].ID] = r.Outcome
				case report.Retry:
					next = append(next, batch[i])
				default:
					t.Fatalf("item %s: %v %s %s", batch[i].ID, r.Outcome, r.Code, r.Message)
				}
			}
		}
		pending = next
	}
	if diff := cmp.Diff(want, e.emu.Accepted()); diff != "" {
		t.Errorf("AWS holds (-want +got):\n%s", diff)
	}
	if c := e.emu.Conflicts(); c != 0 {
		t.Errorf("%d records were sent with a second quantity for a metered hour", c)
	}
	for id, o := range done {
		if o != report.Accepted {
			t.Errorf("%s ended %v; resends of the same record must be accepted", id, o)
		}
	}
	if len(done) != len(want) {
		t.Errorf("%d items done, want %d", len(done), len(want))
	}
}

func TestConfig(t *testing.T) {
	err := aws.Config{Endpoint: "not a url", AccessKeyID: "AKID", Timeout: -time.Second}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, want := range []string{"region", "endpoint", "secretAccessKey", "timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, want a mention of %s", err, want)
		}
	}
	if err := (aws.Config{Region: "us-east-1"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}

	cfg := aws.Config{Region: "us-east-1", ProductCode: "p", AccessKeyID: "AKIDEXAMPLE1234", SecretAccessKey: secret}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "target", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), buf.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, "AKIDEXAMPLE1234") {
			t.Errorf("%q shows a credential", s)
		}
	}
	if !strings.Contains(buf.String(), "us-east-1") {
		t.Errorf("log %q lost the region", buf.String())
	}
	if _, err := aws.New(context.Background(), aws.Config{SecretAccessKey: secret}); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("New with a bad config = %v", err)
	}
}

func TestSendSplitsLargeBatches(t *testing.T) {
	e := newEnv(t, awstest.Options{})
	var items []report.Item
	for i := range 30 {
		items = append(items, item(fmt.Sprintf("r%d", i), "cust-a", fmt.Sprintf("dim-%d", i), hour(11), int64(i)))
	}
	rs, err := e.sender.Send(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Outcome != report.Accepted {
			t.Errorf("item %d: %v %s", i, r.Outcome, r.Code)
		}
	}
	if got := e.emu.Calls(); got != 2 {
		t.Errorf("calls = %d, want 2", got)
	}
}

func TestLaterCallsRetryAfterTransientFailure(t *testing.T) {
	e := newEnv(t, awstest.Options{})
	var items []report.Item
	for i := range 27 {
		items = append(items, item(fmt.Sprintf("r%d", i), "cust-a", fmt.Sprintf("dim-%d", i), hour(11), 1))
	}
	e.emu.Inject(awstest.Fault{}, awstest.Fault{Kind: awstest.Throttle})
	rs, err := e.sender.Send(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		want := report.Accepted
		if i >= aws.MaxBatch {
			want = report.Retry
		}
		if r.Outcome != want {
			t.Errorf("item %d: %v %s, want %v", i, r.Outcome, r.Code, want)
		}
	}
	if got := len(e.emu.Accepted()); got != aws.MaxBatch {
		t.Errorf("emulator holds %d records, want %d", got, aws.MaxBatch)
	}
}

func TestDefaultCredentialChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	e := newEnv(t, awstest.Options{AccessKeyID: "AKIDFROMENVIRONMENT"}, func(c *aws.Config) {
		c.AccessKeyID, c.SecretAccessKey = "", ""
	})
	rs, err := e.sender.Send(context.Background(), []report.Item{item("r1", "cust-a", "calls", hour(11), 1)})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Outcome != report.Accepted {
		t.Errorf("result = %+v; the request was not signed with the environment's key", rs[0])
	}
}

func TestConfigYAML(t *testing.T) {
	var cfg aws.Config
	src := "region: eu-west-1\nendpoint: http://127.0.0.1:9\nproductCode: prod-1\naccessKeyId: AKID\nsecretAccessKey: s3cret\ntimeout: 5s\n"
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	want := aws.Config{Region: "eu-west-1", Endpoint: "http://127.0.0.1:9", ProductCode: "prod-1", AccessKeyID: "AKID", SecretAccessKey: "s3cret", Timeout: 5 * time.Second}
	if cfg != want {
		t.Errorf("decoded %#v, want %#v", cfg, want)
	}
}
