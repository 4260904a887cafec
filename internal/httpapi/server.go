// Package httpapi is tally's HTTP interface: routing, handlers, problem+json
// errors and middleware. It is the only package that speaks HTTP.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/usage"
)

// Config holds the server's dependencies and limits.
type Config struct {
	Store    store.Store
	Pipeline *ingest.Pipeline
	Usage    *usage.Service
	// Corrections are the choices about correcting finalized periods,
	// the same as the finalizer's, so drafts show what it will bill.
	Corrections invoicing.Corrections
	Auth        auth.Authenticator
	Now         func() time.Time
	Log         *slog.Logger
	// Registry receives the HTTP metrics; Gatherer serves /metrics.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// MaxBodyBytes caps an ingest request body (default 32 MiB).
	MaxBodyBytes int64
	// Limits bound the events of one request.
	Limits event.Limits
	// BoundMaxFutureSkew is how far ahead of the server clock a credential
	// bound to a customer may time an event (0: DefaultBoundMaxFutureSkew).
	// Unbound credentials are bound by Limits.MaxFutureSkew only.
	BoundMaxFutureSkew time.Duration
	// OpenAPI is the document served at /api/v1/openapi.yaml.
	OpenAPI []byte
	// Ready reports whether tally can take traffic (nil: always).
	Ready func(ctx context.Context) error
	// Portal signs portal tokens (nil: POST /api/v1/portal/tokens
	// answers 503).
	Portal *auth.PortalKeys
	// RateLimit and RateBurst bound the requests per second of each API
	// key, portal token and OIDC subject (0: DefaultRateLimit and
	// DefaultRateBurst; negative: no limit). The admin token is not
	// limited.
	RateLimit float64
	RateBurst int
	// MaxConcurrent caps the API requests served at once; more get 503
	// (0: DefaultMaxConcurrent; negative: no cap). An eighth of it is
	// kept for admin credentials.
	MaxConcurrent int
	// MaxConcurrentPerCredential and MaxConcurrentPerAddress cap the
	// requests in flight of one credential and of one client address;
	// more get 429 (0: DefaultMaxConcurrentPerCredential and
	// DefaultMaxConcurrentPerAddress; negative: no cap). The admin token
	// and open mode have no per-credential cap.
	MaxConcurrentPerCredential int
	MaxConcurrentPerAddress    int
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second on average once MinBodyRateGrace has passed; a slower one is
	// cut off with 408 (0: DefaultMinBodyRate and
	// DefaultMinBodyRateGrace; negative: no minimum). ReadTimeout is the
	// http.Server's, which the read deadlines set for the minimum never
	// go past (0: none).
	MinBodyRate      int
	MinBodyRateGrace time.Duration
	ReadTimeout      time.Duration
	// AuthFailureLimit failed authentications per AuthFailureWindow are
	// allowed from one client address; beyond, its requests get 429
	// until the allowance refills (0: DefaultAuthFailureLimit and
	// DefaultAuthFailureWindow; negative: no limit).
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client address (none: the peer's address is the client's).
	TrustedProxies []netip.Prefix
	// Outbox lists usage reports (nil: none are kept) and Reporter plans
	// and sends them (nil: reporting is off; retries answer 404).
	Outbox   report.Outbox
	Reporter *report.Runner
	// Secrets are the secrets tally is configured with (the admin token,
	// portal signing keys): the audit trail never stores a string that
	// holds one, whatever member it is sent under.
	Secrets []string
}

// Server serves tally's HTTP API.
type Server struct {
	Config
	log     *slog.Logger
	mux     *http.ServeMux
	latency *prometheus.HistogramVec
	// invoices builds drafts and reads usage as the finalizer does.
	invoices  *invoicing.Service
	limits    *limits
	authFails *authFailures
	bodyRate  bodyRate
}

// DefaultMaxBodyBytes is the default cap on an ingest request body.
const DefaultMaxBodyBytes = 32 << 20

// Route is one method and path pattern the server answers.
type Route struct{ Method, Pattern string }

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{Config: cfg, log: cfg.Log.With("component", "http"), mux: http.NewServeMux()}
	s.invoices = &invoicing.Service{Store: cfg.Store, Usage: cfg.Usage, Corrections: cfg.Corrections}
	if cfg.Pipeline != nil {
		s.invoices.Stable = cfg.Pipeline.MetersStable
	}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tally_http_request_duration_seconds",
		Help:    "HTTP request latency by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "code"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.latency)
	}
	s.limits = newLimits(cfg)
	s.bodyRate = newBodyRate(cfg)
	s.authFails = newAuthFailures(cfg.AuthFailureLimit, cfg.AuthFailureWindow)
	for _, rt := range s.routes() {
		s.handle(rt)
	}
	return s
}

type routeDef struct {
	route Route
	h     http.HandlerFunc
	acc   access
}

// routes is the one table of what the server answers and who may call it:
// each route's scope is the x-required-scope of its operation in
// api/openapi.yaml (a test keeps the two in step), and its tenant policy
// says what a caller bound to one customer may reach (see authz.go).
func (s *Server) routes() []routeDef {
	r := func(method, pattern string, acc access, h http.HandlerFunc) routeDef {
		return routeDef{route: Route{method, pattern}, h: h, acc: acc}
	}
	pub := access{public: true}
	// admin: unbound admin credentials only.
	admin := access{scope: auth.ScopeAdmin}
	// global reads: unbound callers only (plans are the vendor's).
	global := access{scope: auth.ScopeRead}
	// tenant reads: bound callers too; the check or the handler keeps
	// them to their customer's data.
	tenant := func(scope auth.Scope, check tenantCheck) access {
		return access{scope: scope, tenant: check}
	}
	read := func(check tenantCheck) access { return tenant(auth.ScopeRead, check) }
	portal := access{scope: auth.ScopeRead, portal: true}
	// metrics: a Prometheus scraper's key (metrics scope) or an admin;
	// --metrics-addr serves them without credentials on another address.
	metrics := access{scope: auth.ScopeMetrics}
	return []routeDef{
		r("GET", "/healthz", pub, s.healthz),
		r("GET", "/readyz", pub, s.readyz),
		r("GET", "/metrics", metrics, s.metrics),
		r("GET", "/api/v1/openapi.yaml", read(anyTenant), s.openapi),
		r("POST", "/api/v1/events", tenant(auth.ScopeIngest, inHandler), s.ingestEvents),
		r("GET", "/api/v1/events", read(inHandler), s.listEvents),
		r("POST", "/api/v1/events/void", admin, s.voidEvent),
		r("POST", "/api/v1/events/amend", admin, s.amendEvent),
		r("GET", "/api/v1/cancellation-rules", global, s.listRules),
		r("POST", "/api/v1/cancellation-rules", admin, s.createRule),
		r("GET", "/api/v1/cancellation-rules/{id}", global, s.getRule),
		r("DELETE", "/api/v1/cancellation-rules/{id}", admin, s.deleteRule),
		r("GET", "/api/v1/meters", read(anyTenant), s.listMeters),
		r("POST", "/api/v1/meters", admin, s.createMeter),
		r("GET", "/api/v1/meters/{idOrSlug}", read(anyTenant), s.getMeter),
		r("PUT", "/api/v1/meters/{idOrSlug}", admin, s.updateMeter),
		r("DELETE", "/api/v1/meters/{idOrSlug}", admin, s.deleteMeter),
		r("GET", "/api/v1/meters/{idOrSlug}/query", read(inHandler), s.queryMeter),
		r("POST", "/api/v1/meters/{idOrSlug}/query", read(inHandler), s.queryMeter),
		r("GET", "/api/v1/subjects", read(inHandler), s.listSubjects),
		r("POST", "/api/v1/subjects", admin, s.upsertSubjects),
		r("GET", "/api/v1/subjects/{key}", read(subjectInPath("key")), s.getSubject),
		r("DELETE", "/api/v1/subjects/{key}", admin, s.deleteSubject),
		r("GET", "/api/v1/customers", read(customerWide(inHandler)), s.listCustomers),
		r("POST", "/api/v1/customers", admin, s.createCustomer),
		r("GET", "/api/v1/customers/{idOrKey}", read(customerWide(customerInPath("idOrKey"))), s.getCustomer),
		r("PUT", "/api/v1/customers/{idOrKey}", admin, s.updateCustomer),
		r("PATCH", "/api/v1/customers/{idOrKey}", admin, s.patchCustomer),
		r("DELETE", "/api/v1/customers/{idOrKey}", admin, s.deleteCustomer),
		r("GET", "/api/v1/customers/{idOrKey}/users", read(customerWide(customerInPath("idOrKey"))), s.listCustomerUsers),
		r("POST", "/api/v1/customers/{idOrKey}/users", admin, s.createCustomerUser),
		r("GET", "/api/v1/customers/{idOrKey}/usage", read(customerInPath("idOrKey")), s.getCustomerUsage),
		r("GET", "/api/v1/plans", global, s.listPlans),
		r("POST", "/api/v1/plans", admin, s.createPlan),
		r("GET", "/api/v1/plans/{idOrKey}", global, s.getPlan),
		r("PUT", "/api/v1/plans/{idOrKey}", admin, s.updatePlan),
		r("PATCH", "/api/v1/plans/{idOrKey}", admin, s.patchPlan),
		r("POST", "/api/v1/plans/{idOrKey}/publish", admin, s.publishPlan),
		r("GET", "/api/v1/subscriptions", read(customerWide(customerInQuery)), s.listSubscriptions),
		r("POST", "/api/v1/subscriptions", admin, s.createSubscription),
		r("GET", "/api/v1/subscriptions/{id}", read(customerWide(subscriptionInPath("id"))), s.getSubscription),
		r("POST", "/api/v1/subscriptions/{id}/cancel", admin, s.cancelSubscription),
		r("POST", "/api/v1/subscriptions/{id}/change", admin, s.changeSubscription),
		r("GET", "/api/v1/invoices", read(customerWide(customerInQuery)), s.listInvoices),
		r("GET", "/api/v1/invoices/{id}", read(customerWide(invoiceInPath("id"))), s.getInvoice),
		r("GET", "/api/v1/credit-notes", read(customerWide(customerInQuery)), s.listCreditNotes),
		r("GET", "/api/v1/credit-notes/{id}", read(customerWide(creditNoteInPath("id"))), s.getCreditNote),
		r("GET", "/api/v1/keys", admin, s.listKeys),
		r("POST", "/api/v1/keys", admin, s.createKey),
		r("GET", "/api/v1/keys/{id}", admin, s.getKey),
		r("DELETE", "/api/v1/keys/{id}", admin, s.revokeKey),
		r("POST", "/api/v1/portal/tokens", admin, s.createPortalToken),
		r("GET", "/api/v1/portal/tokens", admin, s.listPortalTokens),
		r("DELETE", "/api/v1/portal/tokens", admin, s.revokeCustomerPortalTokens),
		r("DELETE", "/api/v1/portal/tokens/{id}", admin, s.revokePortalToken),
		r("GET", "/api/v1/portal/usage", portal, s.portalUsage),
		r("GET", "/api/v1/portal/meters/{slug}/query", portal, s.portalQuery),
		r("GET", "/api/v1/audit", admin, s.listAudit),
		r("GET", "/api/v1/reports", read(customerWide(customerInQuery)), s.listReports),
		r("GET", "/api/v1/reports/{id}", read(customerWide(reportInPath("id"))), s.getReport),
		r("POST", "/api/v1/reports/{id}/retry", admin, s.retryReport),
	}
}

// Routes lists every method and path the server answers, for the test that
// keeps the OpenAPI document in step with the code.
func (s *Server) Routes() []Route {
	var out []Route
	for _, rt := range s.routes() {
		out = append(out, rt.route)
	}
	return out
}

func (s *Server) handle(rd routeDef) {
	rt := rd.route
	name := rt.Method + " " + rt.Pattern
	var next http.Handler = rd.h
	if !rd.acc.public {
		if rd.acc.scope == auth.ScopeAdmin && rt.Method != http.MethodGet {
			next = s.audit(rt, next)
		}
		next = s.authorize(rd.acc, next)
		next = s.limitConcurrency(next)
	}
	next = s.minBodyRate(next)
	s.mux.Handle(name, s.instrument(rt.Pattern, next))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r, h)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// noRoute answers a request that matches no route as the mux would — 404,
// 405 with the Allow header it computes from the routes, or a redirect to
// the cleaned path — but with an error as problem+json, like every other
// error of the API.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &muxAnswer{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.code {
	case http.StatusNotFound:
		writeProblem(w, r, Problem{Status: rec.code, Detail: "no such endpoint; see /api/v1/openapi.yaml for the API"})
	case http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeProblem(w, r, Problem{Status: rec.code, Detail: fmt.Sprintf("%s is not allowed here; use %s", r.Method, allow)})
	default:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// muxAnswer records what the mux answers a request without a route: a
// short error or redirect.
type muxAnswer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (a *muxAnswer) Header() http.Header { return a.header }

func (a *muxAnswer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
}

func (a *muxAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}

type principalKey struct{}

// principalOf is the caller of an authenticated request (zero on public
// routes).
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// authenticate is the single place where API credentials are checked.
// An address with too many failed authentications is refused before its
// credential is checked.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	addr := s.clientAddr(r)
	if d, blocked := s.authFails.blocked(addr, s.Now()); blocked {
		s.authFails.refuse(w, r, d)
		return auth.Principal{}, false
	}
	p, err := s.Auth.Authenticate(r)
	if err != nil {
		status := http.StatusUnauthorized
		var fe *auth.ForbiddenError
		switch {
		case errors.As(err, &fe):
			status = http.StatusForbidden
		case errors.Is(err, auth.ErrUnauthenticated):
			s.authFails.fail(addr, s.Now())
			w.Header().Set("WWW-Authenticate", `Bearer realm="tally"`)
		default:
			// The store could not be asked: not the caller's fault.
			s.log.Error("authenticate", "path", r.URL.Path, "err", err)
			writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Detail: "credentials could not be checked; retry the request"})
			return p, false
		}
		writeProblem(w, r, Problem{Status: status, Detail: err.Error()})
		return p, false
	}
	return p, true
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (sr *statusRecorder) WriteHeader(code int) {
	sr.code = code
	sr.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (sr *statusRecorder) Unwrap() http.ResponseWriter { return sr.ResponseWriter }

func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sr := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sr, r)
		s.latency.WithLabelValues(route, strconv.Itoa(sr.code)).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		if err := s.Ready(r.Context()); err != nil {
			writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Detail: err.Error()})
			return
		}
	}
	body := map[string]any{"status": "ready"}
	if s.Reporter != nil {
		// Reports close to missing their target's window show here; they
		// do not make tally unready (it can still take usage).
		body["reporting"] = s.Reporter.Status()
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Gatherer == nil {
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Detail: "metrics are not served on this server"})
		return
	}
	promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(s.OpenAPI)
}
