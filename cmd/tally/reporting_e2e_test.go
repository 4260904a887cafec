package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/report/azure/azuretest"
	"github.com/tally-metering/tally/internal/report/webhook"
)

// TestReportingEndToEnd runs tally with two reporting targets from the
// config file, an Azure Marketplace emulator and a webhook receiver, and
// checks that an hour's overage reaches both, once, signed, with the
// secret taken from the environment and shown nowhere.
func TestReportingEndToEnd(t *testing.T) {
	// tally runs in this process with a clock the test moves: an hour must
	// end before it is reported.
	var clockMu sync.Mutex
	t0 := time.Now().UTC()
	now := t0
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	emu := azuretest.New(clock)
	emu.AddClient("tenant-1", "client-1", "azure-s3cret-value")
	const resource = "11111111-2222-3333-4444-555555555555"
	emu.AddResource(azuretest.Resource{ID: resource, PlanID: "pro", Dimensions: []string{"extra_emails"}})
	azureSrv := httptest.NewServer(emu)
	defer azureSrv.Close()

	const whSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	var hooks []webhook.Payload
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(whSecret, r.Header, body); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		hooks = append(hooks, p)
		mu.Unlock()
	}))
	defer hookSrv.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "tally.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
meters:
  - slug: emails
    eventType: email.sent
    aggregation: SUM
    valueProperty: $.count
reporting:
  interval: 1s
  settleDelay: 0s
  targets:
    - name: azure
      type: azure-marketplace
      baseURL: %s
      authorityURL: %s
      tenantId: tenant-1
      clientId: client-1
      clientSecret: ${TEST_AZURE_SECRET}
    - name: hooks
      type: webhook
      url: %s
      secret: ${TEST_WEBHOOK_SECRET}
`, azureSrv.URL, azureSrv.URL, hookSrv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_AZURE_SECRET", "azure-s3cret-value")
	t.Setenv("TEST_WEBHOOK_SECRET", whSecret)
	fc, err := loadFileConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log, _ := newLogger(logs, "info", "text")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveFlags{now: clock, addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), adminToken: "admin-token",
			rateLimit: -1, maxConcurrent: -1, shutdownTimeout: 5 * time.Second}, fc, log, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	s := &tallyServer{t: t, URL: "http://" + addr, Token: "admin-token", logs: logs}

	hour := t0.Truncate(time.Hour)
	s.do(201, "POST", "/api/v1/customers", "application/json",
		`{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"],"external":{"azure":{"resourceId":"`+resource+`","planId":"pro"}}}`)
	s.do(201, "POST", "/api/v1/plans", "application/json", `{"key":"mail","name":"Mail","currency":"EUR","cadence":"P1M","baseFee":"10.00",
		"charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"},
		"reporting":[{"target":"azure","dimension":"extra_emails","unitSize":"1000"},{"target":"hooks","dimension":"emails"}]}]}`)
	s.do(200, "POST", "/api/v1/plans/mail/publish", "application/json", "")
	s.do(201, "POST", "/api/v1/subscriptions", "application/json", `{"customer":"contoso","plan":"mail"}`)
	s.do(204, "POST", "/api/v1/events", "application/json",
		`[{"specversion":"1.0","id":"e1","source":"test","type":"email.sent","subject":"contoso-mail","time":"`+t0.Add(time.Second).Format(time.RFC3339Nano)+`","data":{"count":3396}}]`)
	// Nothing is reported while the hour is open; then the clock passes
	// its end.
	time.Sleep(1500 * time.Millisecond)
	if n := len(emu.Events()); n != 0 {
		t.Fatalf("azure got %d events for an open hour", n)
	}
	clockMu.Lock()
	now = hour.Add(time.Hour + time.Minute)
	clockMu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(hooks)
		mu.Unlock()
		if len(emu.Usage()) == 1 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the emulator holds %v and the webhook got %d reports; log:\n%s", emu.Usage(), n, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := emu.Usage()[azuretest.Key{Resource: resource, Dimension: "extra_emails", Hour: hour}]
	if !got.Equal(decimal.RequireFromString("2.396")) {
		t.Errorf("azure holds %s for %s, want 2.396", got, hour)
	}
	if h := hooks[0]; h.Quantity != "2396" || h.Dimension != "emails" || h.Hour != hour.Format(time.RFC3339) || h.Resource.CustomerKey != "contoso" {
		t.Errorf("webhook payload %+v", h)
	}

	// The command line lists them through the API.
	code, out, errOut := runTally(t, nil, "reports", "--url", s.URL, "--token", "admin-token", "--customer", "contoso")
	if code != 0 || strings.Count(out, "accepted") != 2 || !strings.Contains(out, "2.396") {
		t.Errorf("tally reports: exit %d\n%s%s", code, out, errOut)
	}
	// /readyz shows reporting health.
	rz := s.do(200, "GET", "/readyz", "", "")
	if !strings.Contains(string(rz.Body), `"reporting"`) {
		t.Errorf("/readyz: %s", rz.Body)
	}
	// Waiting longer sends nothing more: each hour once.
	time.Sleep(2 * time.Second)
	if n := len(emu.Events()); n != 1 {
		t.Errorf("azure got %d events, want 1", n)
	}
	cancel()
	for _, secret := range []string{"azure-s3cret-value", whSecret} {
		if strings.Contains(s.Log(), secret) {
			t.Errorf("the log shows a secret")
		}
	}
}
