// Package httpapi is tally's HTTP interface: routing, handlers, problem+json
// errors and middleware. It is the only package that speaks HTTP.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/usage"
)

// Config holds the server's dependencies and limits.
type Config struct {
	Store    store.Store
	Pipeline *ingest.Pipeline
	Usage    *usage.Service
	Auth     auth.Authenticator
	Now      func() time.Time
	Log      *slog.Logger
	// Registry receives the HTTP metrics; Gatherer serves /metrics.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// MaxBodyBytes caps an ingest request body (default 32 MiB).
	MaxBodyBytes int64
	// Limits bound the events of one request.
	Limits event.Limits
	// OpenAPI is the document served at /api/v1/openapi.yaml.
	OpenAPI []byte
	// Ready reports whether tally can take traffic (nil: always).
	Ready func(ctx context.Context) error
}

// Server serves tally's HTTP API.
type Server struct {
	Config
	log     *slog.Logger
	mux     *http.ServeMux
	latency *prometheus.HistogramVec
	// invoices builds drafts and reads usage as the finalizer does.
	invoices *invoicing.Service
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
	s.invoices = &invoicing.Service{Store: cfg.Store, Usage: cfg.Usage}
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
	for _, rt := range s.routes() {
		s.handle(rt.route, rt.h, rt.public)
	}
	return s
}

type routeDef struct {
	route  Route
	h      http.HandlerFunc
	public bool
}

func (s *Server) routes() []routeDef {
	r := func(method, pattern string, h http.HandlerFunc) routeDef {
		return routeDef{route: Route{method, pattern}, h: h}
	}
	pub := func(method, pattern string, h http.HandlerFunc) routeDef {
		return routeDef{route: Route{method, pattern}, h: h, public: true}
	}
	return []routeDef{
		pub("GET", "/healthz", s.healthz),
		pub("GET", "/readyz", s.readyz),
		pub("GET", "/metrics", s.metrics),
		r("GET", "/api/v1/openapi.yaml", s.openapi),
		r("POST", "/api/v1/events", s.ingestEvents),
		r("GET", "/api/v1/events", s.listEvents),
		r("GET", "/api/v1/meters", s.listMeters),
		r("POST", "/api/v1/meters", s.createMeter),
		r("GET", "/api/v1/meters/{idOrSlug}", s.getMeter),
		r("PUT", "/api/v1/meters/{idOrSlug}", s.updateMeter),
		r("DELETE", "/api/v1/meters/{idOrSlug}", s.deleteMeter),
		r("GET", "/api/v1/meters/{idOrSlug}/query", s.queryMeter),
		r("POST", "/api/v1/meters/{idOrSlug}/query", s.queryMeter),
		r("GET", "/api/v1/subjects", s.listSubjects),
		r("POST", "/api/v1/subjects", s.upsertSubjects),
		r("GET", "/api/v1/subjects/{key}", s.getSubject),
		r("DELETE", "/api/v1/subjects/{key}", s.deleteSubject),
		r("GET", "/api/v1/customers", s.listCustomers),
		r("POST", "/api/v1/customers", s.createCustomer),
		r("GET", "/api/v1/customers/{idOrKey}", s.getCustomer),
		r("PUT", "/api/v1/customers/{idOrKey}", s.updateCustomer),
		r("DELETE", "/api/v1/customers/{idOrKey}", s.deleteCustomer),
		r("GET", "/api/v1/customers/{idOrKey}/users", s.listCustomerUsers),
		r("POST", "/api/v1/customers/{idOrKey}/users", s.createCustomerUser),
		r("GET", "/api/v1/customers/{idOrKey}/usage", s.getCustomerUsage),
		r("GET", "/api/v1/plans", s.listPlans),
		r("POST", "/api/v1/plans", s.createPlan),
		r("GET", "/api/v1/plans/{idOrKey}", s.getPlan),
		r("PUT", "/api/v1/plans/{idOrKey}", s.updatePlan),
		r("POST", "/api/v1/plans/{idOrKey}/publish", s.publishPlan),
		r("GET", "/api/v1/subscriptions", s.listSubscriptions),
		r("POST", "/api/v1/subscriptions", s.createSubscription),
		r("GET", "/api/v1/subscriptions/{id}", s.getSubscription),
		r("POST", "/api/v1/subscriptions/{id}/cancel", s.cancelSubscription),
		r("POST", "/api/v1/subscriptions/{id}/change", s.changeSubscription),
		r("GET", "/api/v1/invoices", s.listInvoices),
		r("GET", "/api/v1/invoices/{id}", s.getInvoice),
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

func (s *Server) handle(rt Route, h http.HandlerFunc, public bool) {
	name := rt.Method + " " + rt.Pattern
	var next http.Handler = h
	if !public {
		next = s.authenticate(next)
	}
	s.mux.Handle(name, s.instrument(rt.Pattern, next))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

type principalKey struct{}

// authenticate is the single place where API credentials are checked.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tally"`)
			status := http.StatusUnauthorized
			if !errors.Is(err, auth.ErrUnauthenticated) {
				status = http.StatusForbidden
			}
			writeProblem(w, r, Problem{Status: status, Detail: err.Error()})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (sr *statusRecorder) WriteHeader(code int) {
	sr.code = code
	sr.ResponseWriter.WriteHeader(code)
}

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
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Gatherer == nil {
		http.NotFound(w, r)
		return
	}
	promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(s.OpenAPI)
}
