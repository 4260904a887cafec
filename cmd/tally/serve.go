package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tally-metering/tally/api"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/httpapi"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

type serveFlags struct {
	// now is the clock (nil: time.Now); tests inject one.
	now                            func() time.Time
	addr, data, config, adminToken string
	logLevel, logFormat            string
	shutdownTimeout                time.Duration
	debugAddr, metricsAddr         string
	insecureNoAuth                 bool
	tlsCert, tlsKey                string
	rateLimit                      float64
	rateBurst, maxConcurrent       int
	maxPerCredential, maxPerAddr   int
	minBodyRate                    int
	minBodyRateGrace               time.Duration
	authFailureLimit               int
	authFailureWindow              time.Duration
	trustedProxies                 string
	readTimeout, writeTimeout      time.Duration
	idleTimeout, readHeaderTimeout time.Duration
	maxHeaderBytes                 int
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on (env TALLY_ADDR)")
	fs.StringVar(&f.data, "data", "./tally-data", "data directory, created on first start (env TALLY_DATA)")
	fs.StringVar(&f.config, "config", "", "YAML config file (env TALLY_CONFIG)")
	fs.StringVar(&f.adminToken, "admin-token", "", "an admin credential: Authorization: Bearer <token> (env TALLY_ADMIN_TOKEN)")
	fs.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve a non-loopback address without any credential configured: anyone who can reach it is an admin (env TALLY_INSECURE_NO_AUTH)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; needs --tls-key (env TALLY_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the PEM private key of --tls-cert (env TALLY_TLS_KEY)")
	fs.Float64Var(&f.rateLimit, "rate-limit", httpapi.DefaultRateLimit, "requests per second each API key, portal token or OIDC subject may make; 0 = no limit (env TALLY_RATE_LIMIT)")
	fs.IntVar(&f.rateBurst, "rate-burst", httpapi.DefaultRateBurst, "requests a credential may make at once above --rate-limit (env TALLY_RATE_BURST)")
	fs.IntVar(&f.maxConcurrent, "max-concurrent-requests", httpapi.DefaultMaxConcurrent, "API requests served at once; more get 503; 0 = no cap (env TALLY_MAX_CONCURRENT_REQUESTS)")
	fs.IntVar(&f.maxPerCredential, "max-concurrent-per-credential", httpapi.DefaultMaxConcurrentPerCredential, "requests one API key, portal token or OIDC subject may have in flight; more get 429; 0 = no cap (env TALLY_MAX_CONCURRENT_PER_CREDENTIAL)")
	fs.IntVar(&f.maxPerAddr, "max-concurrent-per-address", httpapi.DefaultMaxConcurrentPerAddress, "requests one client address may have in flight, counted before authentication; more get 429; 0 = no cap (env TALLY_MAX_CONCURRENT_PER_ADDRESS)")
	fs.IntVar(&f.minBodyRate, "min-body-rate", httpapi.DefaultMinBodyRate, "bytes per second a request body must arrive at, on average, after --min-body-rate-grace; a slower one is cut off with 408; 0 = no minimum (env TALLY_MIN_BODY_RATE)")
	fs.DurationVar(&f.minBodyRateGrace, "min-body-rate-grace", httpapi.DefaultMinBodyRateGrace, "how long a request body may take before --min-body-rate applies (env TALLY_MIN_BODY_RATE_GRACE)")
	fs.IntVar(&f.authFailureLimit, "auth-failure-limit", httpapi.DefaultAuthFailureLimit, "failed authentications a client address may make per --auth-failure-window; beyond, its requests get 429; 0 = no limit (env TALLY_AUTH_FAILURE_LIMIT)")
	fs.DurationVar(&f.authFailureWindow, "auth-failure-window", httpapi.DefaultAuthFailureWindow, "the window of --auth-failure-limit, over which the allowance refills (env TALLY_AUTH_FAILURE_WINDOW)")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client address (env TALLY_TRUSTED_PROXIES)")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send request headers (env TALLY_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&f.readTimeout, "read-timeout", 2*time.Minute, "how long a client may take to send a whole request (env TALLY_READ_TIMEOUT)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 2*time.Minute, "how long serving one request may take (env TALLY_WRITE_TIMEOUT)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open (env TALLY_IDLE_TIMEOUT)")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 64<<10, "the largest request header block accepted (env TALLY_MAX_HEADER_BYTES)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error (env TALLY_LOG_LEVEL)")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json (env TALLY_LOG_FORMAT)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight requests (env TALLY_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "when set, also serve /metrics on this address without credentials, e.g. 10.0.0.5:9464 for a scraper on a private network (env TALLY_METRICS_ADDR)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "when set, serve Go profiling (pprof) on this address, e.g. 127.0.0.1:6060 (env TALLY_DEBUG_ADDR)")
	setHelp(fs, helpText{
		usage: "tally serve [flags]",
		about: `Runs the tally server. Every flag can also be set by the environment
variable named after it (--rate-limit: TALLY_RATE_LIMIT); a flag wins.
Meters, billing, auth and reporting come from the YAML --config file
(docs/configuration.md; examples/tally.yaml shows every section).`,
		examples: []string{
			"tally serve --data ./tally-data",
			"TALLY_ADMIN_TOKEN=$(openssl rand -hex 32) tally serve --addr :8080 --config examples/tally.yaml --tls-cert cert.pem --tls-key key.pem",
		},
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %v", fs.Args())
	}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	cfg, err := loadFileConfig(f.config)
	if err != nil {
		return err
	}
	return serve(ctx, f, cfg, log, nil)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// serve runs the server until ctx is done. ready, when not nil, receives
// the listening address.
func serve(ctx context.Context, f serveFlags, cfg fileConfig, log *slog.Logger, ready chan<- string) error {
	if os.Getenv("GOGC") == "" {
		// Ingest allocates many short-lived objects; collecting less often
		// buys throughput for a little memory (see docs/benchmarks.md).
		debug.SetGCPercent(400)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("serve: --tls-cert and --tls-key go together; give both or neither")
	}
	now := f.now
	if now == nil {
		now = time.Now
	}
	proxies, err := parseTrustedProxies(f.trustedProxies)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, f.data, sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	authn, portal, err := newAuth(ctx, f, cfg.Auth, st, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_store_size_bytes", Help: "Bytes the embedded store occupies on disk.",
	}, func() float64 {
		n, _ := st.Size(context.Background())
		return float64(n)
	}))

	pipe := ingest.New(st, now, log, ingest.NewMetrics(reg), ingest.Config{MaxBatchEvents: cfg.Ingest.MaxBatchEvents})
	defer pipe.Close()
	if err := pipe.LoadMeters(ctx); err != nil {
		return err
	}
	declared := make([]meter.Meter, 0, len(cfg.Meters))
	for _, m := range cfg.Meters {
		declared = append(declared, m.meter())
	}
	if err := pipe.SyncConfigMeters(ctx, declared); err != nil {
		return err
	}

	reporter, err := newReporter(ctx, cfg.Reporting, st, pipe, reg, log, now)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}

	srv := httpapi.New(httpapi.Config{
		Store: st, Pipeline: pipe, Usage: &usage.Service{Store: st}, Auth: authn, Outbox: st, Reporter: reporter,
		Now: now, Log: log, Registry: reg, Gatherer: reg, Corrections: cfg.Billing.corrections(),
		MaxBodyBytes:       cfg.Ingest.MaxBodyBytes,
		Limits:             event.Limits{MaxEvents: maxEventsOr(cfg.Ingest.MaxEvents), MaxFutureSkew: cfg.Ingest.MaxFutureSkew},
		OpenAPI:            api.OpenAPI,
		BoundMaxFutureSkew: cfg.Ingest.BoundMaxFutureSkew,
		Ready:              func(context.Context) error { return st.Health() },
		Portal:             portal,
		RateLimit:          noneIsNegative(f.rateLimit), RateBurst: f.rateBurst,
		MaxConcurrent:              int(noneIsNegative(float64(f.maxConcurrent))),
		MaxConcurrentPerCredential: int(noneIsNegative(float64(f.maxPerCredential))),
		MaxConcurrentPerAddress:    int(noneIsNegative(float64(f.maxPerAddr))),
		MinBodyRate:                int(noneIsNegative(float64(f.minBodyRate))), MinBodyRateGrace: f.minBodyRateGrace,
		ReadTimeout:      f.readTimeout,
		AuthFailureLimit: int(noneIsNegative(float64(f.authFailureLimit))), AuthFailureWindow: f.authFailureWindow,
		TrustedProxies: proxies,
		Secrets:        configuredSecrets(f, cfg.Auth),
	})
	// Finalize invoices whose period ended more than the grace period ago:
	// at start (resuming after a restart) and every minute.
	invoices := &invoicing.Service{Store: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable, Grace: cfg.Billing.grace(), Log: log.With("component", "invoicing"), Late: st, Corrections: cfg.Billing.corrections()}
	ictx, stopInvoices := context.WithCancel(ctx)
	invoicesDone := make(chan struct{})
	go func() { defer close(invoicesDone); invoices.Run(ictx, time.Minute, now) }()
	defer func() { stopInvoices(); <-invoicesDone }()
	// Plan and send usage reports every interval (at start too, resuming
	// whatever a restart interrupted).
	if reporter != nil {
		rctx, stopReports := context.WithCancel(ctx)
		reportsDone := make(chan struct{})
		go func() { defer close(reportsDone); reporter.Run(rctx, durOr(cfg.Reporting.Interval, time.Minute)) }()
		defer func() { stopReports(); <-reportsDone }()
		log.Info("reporting usage", "targets", len(reporter.Targets))
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxHeaderBytes:    f.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if f.debugAddr != "" {
		startDebugServer(f.debugAddr, log)
	}
	if f.metricsAddr != "" {
		ms, err := startMetricsServer(f.metricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer ms.Close()
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http://"
	if f.tlsCert != "" {
		scheme = "https://"
	}
	log.Info("tally listening", "addr", scheme+ln.Addr().String(), "data", f.data)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() {
		if f.tlsCert != "" {
			errc <- hs.ServeTLS(ln, f.tlsCert, f.tlsKey)
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests and commits")
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	stopInvoices()
	<-invoicesDone
	pipe.Close()
	log.Info("stopped")
	return nil
}

// parseTrustedProxies reads --trusted-proxies: addresses or CIDRs,
// separated by commas.
func parseTrustedProxies(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("serve: --trusted-proxies: %q is not an address or CIDR (like 10.0.0.0/8)", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// defaultMaxEvents caps the events of one ingest request unless the config
// says otherwise.
const defaultMaxEvents = 10000

func maxEventsOr(n int) int {
	if n == 0 {
		return defaultMaxEvents
	}
	return n
}
