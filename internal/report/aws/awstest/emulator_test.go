package awstest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/report/aws/awstest"
)

// post sends a raw JSON 1.1 request, as a client other than the SDK might.
func post(t *testing.T, url, target, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func records(n int, ts int64, withLicense bool) string {
	var rs []string
	for i := range n {
		if withLicense {
			rs = append(rs, fmt.Sprintf(`{"CustomerAWSAccountId":"111122223333","LicenseArn":"arn:l","Dimension":"d","Quantity":1,"Timestamp":%d}`, ts+int64(i)*3600))
		} else {
			rs = append(rs, fmt.Sprintf(`{"CustomerIdentifier":"c%d","Dimension":"d","Quantity":1,"Timestamp":%d}`, i, ts))
		}
	}
	return "[" + strings.Join(rs, ",") + "]"
}

func TestRules(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC)
	emu := awstest.New(awstest.Options{ProductCode: "p", Now: func() time.Time { return now }})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	fresh := now.Add(-time.Hour).Unix()
	for _, tc := range []struct {
		name, target, body string
		status             int
		errType            string
	}{
		{"unknown operation", "AWSMPMeteringService.MeterUsage", `{}`, 400, "UnknownOperationException"},
		{"no records", awstest.Target, `{"ProductCode":"p","UsageRecords":[]}`, 400, "ValidationException"},
		{"26 records", awstest.Target, `{"ProductCode":"p","UsageRecords":` + records(26, fresh, false) + `}`, 400, "ValidationException"},
		{"25 records", awstest.Target, `{"ProductCode":"p","UsageRecords":` + records(25, fresh, false) + `}`, 200, ""},
		{"wrong product", awstest.Target, `{"ProductCode":"q","UsageRecords":` + records(1, fresh, false) + `}`, 400, "InvalidProductCodeException"},
		{"no product without license", awstest.Target, `{"UsageRecords":` + records(1, fresh, false) + `}`, 400, "InvalidProductCodeException"},
		{"product with license", awstest.Target, `{"ProductCode":"p","UsageRecords":` + records(1, fresh, true) + `}`, 400, "ValidationException"},
		{"license without product", awstest.Target, `{"UsageRecords":` + records(1, fresh, true) + `}`, 200, ""},
		{"six hours old", awstest.Target, `{"ProductCode":"p","UsageRecords":` + records(1, now.Add(-6*time.Hour).Unix(), false) + `}`, 400, "TimestampOutOfBoundsException"},
		{"both identities", awstest.Target, `{"ProductCode":"p","UsageRecords":[{"CustomerIdentifier":"c","CustomerAWSAccountId":"1","Dimension":"d","Quantity":1,"Timestamp":` + fmt.Sprint(fresh) + `}]}`, 400, "ValidationException"},
		{"negative quantity", awstest.Target, `{"ProductCode":"p","UsageRecords":[{"CustomerIdentifier":"c","Dimension":"d","Quantity":-1,"Timestamp":` + fmt.Sprint(fresh) + `}]}`, 400, "ValidationException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, srv.URL, tc.target, tc.body)
			if status != tc.status || (tc.errType != "" && out["__type"] != tc.errType) {
				t.Errorf("got %d %v, want %d %s", status, out, tc.status, tc.errType)
			}
		})
	}
	// Unknown customers were answered CustomerNotSubscribed and nothing
	// was stored.
	if got := emu.Accepted(); len(got) != 0 {
		t.Errorf("store = %v, want empty", got)
	}
	if got := emu.Calls(); got != 11 {
		t.Errorf("calls = %d, want 11", got)
	}
}
