package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/report/aws"
	"github.com/tally-metering/tally/internal/report/azure"
	"github.com/tally-metering/tally/internal/report/stripe"
	"github.com/tally-metering/tally/internal/report/webhook"
)

const exampleConfig = "../../examples/tally.yaml"

// TestExampleConfigServes: examples/tally.yaml loads with the real config
// loader as it is (no secrets in the environment) and tally serves with it,
// its meters declared.
func TestExampleConfigServes(t *testing.T) {
	cfg, err := loadFileConfig(exampleConfig)
	if err != nil {
		t.Fatalf("load %s: %v", exampleConfig, err)
	}
	if _, err := buildTargets(context.Background(), cfg.Reporting); err != nil {
		t.Fatalf("%s: reporting targets: %v", exampleConfig, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"), config: exampleConfig,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	go func() { done <- serve(ctx, f, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve with %s: %v", exampleConfig, err)
	}
	code, body := req(t, "", "GET", "http://"+addr+"/api/v1/meters", "")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if code != http.StatusOK || !strings.Contains(body, `"slug":"api_requests"`) || !strings.Contains(body, `"slug":"tokens"`) {
		t.Errorf("GET /api/v1/meters with the example config: %d %s, want its two meters", code, body)
	}
}

// TestExampleConfigShowsEverySetting: every setting of the config file,
// reporting targets' included, appears in examples/tally.yaml (set or
// commented), so that the example keeps up with the loader.
func TestExampleConfigShowsEverySetting(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	seen := map[reflect.Type]bool{}
	var keys func(reflect.Type, string)
	keys = func(typ reflect.Type, at string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
			return
		}
		seen[typ] = true
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(text, name+":") {
				t.Errorf("%s: no %s%s", exampleConfig, at, name)
			}
			keys(typ.Field(i).Type, at+name+".")
		}
	}
	keys(reflect.TypeOf(fileConfig{}), "")
	for typ, at := range map[reflect.Type]string{
		reflect.TypeOf(azure.Config{}): "azure target: ", reflect.TypeOf(aws.Config{}): "aws target: ",
		reflect.TypeOf(stripe.Config{}): "stripe target: ", reflect.TypeOf(webhook.Config{}): "webhook target: ",
	} {
		keys(typ, at)
	}
	for _, typ := range []string{"azure-marketplace", "aws-marketplace", "stripe", "webhook"} {
		if !strings.Contains(text, "type: "+typ) {
			t.Errorf("%s: no target of type %s", exampleConfig, typ)
		}
	}
}
