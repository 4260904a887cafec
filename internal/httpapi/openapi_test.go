package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/tally-metering/tally/api"
)

// openAPIDoc is the part of api/openapi.yaml the tests check.
type openAPIDoc struct {
	OpenAPI    string                          `yaml:"openapi"`
	Security   []map[string][]string           `yaml:"security"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
	} `yaml:"components"`
}

type openAPIOperation struct {
	OperationID string `yaml:"operationId"`
	// Security is nil when the operation has no security member (it then
	// inherits the document's).
	Security  *[]map[string][]string `yaml:"security"`
	Scope     string                 `yaml:"x-required-scope"`
	Responses map[string]yaml.Node   `yaml:"responses"`
}

// openAPIMethods are the keys of a path item that are operations.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// requiredScopes are the values x-required-scope may take.
var requiredScopes = []string{"admin", "ingest", "read"}

// openAPIRoute is one operation of the document: "METHOD /path".
type openAPIRoute struct {
	method, path string
	op           openAPIOperation
}

func (r openAPIRoute) String() string { return r.method + " " + r.path }

func loadOpenAPI(t *testing.T) (openAPIDoc, map[string]openAPIRoute) {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("api/openapi.yaml: openapi is %q, want 3.1.x", doc.OpenAPI)
	}
	ops := make(map[string]openAPIRoute)
	for path, item := range doc.Paths {
		for key, node := range item {
			if !slices.Contains(openAPIMethods, key) {
				continue // parameters, summary, description, servers, $ref
			}
			var op openAPIOperation
			if err := node.Decode(&op); err != nil {
				t.Fatalf("api/openapi.yaml: %s %s: %v", strings.ToUpper(key), path, err)
			}
			r := openAPIRoute{method: strings.ToUpper(key), path: path, op: op}
			ops[r.String()] = r
		}
	}
	return doc, ops
}

// goWildcard matches a wildcard of a net/http pattern: {name} or {name...}.
var goWildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)

// openAPIPath turns a net/http pattern path into an OpenAPI path template:
// {name...} becomes {name} and a trailing {$} is dropped.
func openAPIPath(pattern string) (string, error) {
	if !strings.HasPrefix(pattern, "/") {
		return "", fmt.Errorf("pattern %q has a host or no leading slash", pattern)
	}
	p, exact := strings.CutSuffix(pattern, "{$}")
	if !exact && strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("pattern %q matches a whole subtree, which OpenAPI can't describe", pattern)
	}
	return goWildcard.ReplaceAllString(p, "{$1}"), nil
}

func newTestServerForOpenAPI(t *testing.T) *Server {
	t.Helper()
	// New touches only the logger and the registry; the handlers' other
	// dependencies are not called.
	return New(Config{
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(),
		OpenAPI:  api.OpenAPI,
	})
}

// TestOpenAPIRoutes checks that api/openapi.yaml describes exactly the routes
// the server answers.
func TestOpenAPIRoutes(t *testing.T) {
	_, ops := loadOpenAPI(t)
	srv := newTestServerForOpenAPI(t)

	code := make(map[string]bool)
	for _, rt := range srv.Routes() {
		if rt.Method == "" {
			t.Errorf("route %q has no method; api/openapi.yaml needs one operation per method", rt.Pattern)
			continue
		}
		path, err := openAPIPath(rt.Pattern)
		if err != nil {
			t.Errorf("route %s %s: %v", rt.Method, rt.Pattern, err)
			continue
		}
		key := rt.Method + " " + path
		code[key] = true
		if _, ok := ops[key]; !ok {
			t.Errorf("route %s %s is served (internal/httpapi/server.go) but api/openapi.yaml has no operation %s; document it under paths", rt.Method, rt.Pattern, key)
		}
	}
	var extra []string
	for key := range ops {
		if !code[key] {
			extra = append(extra, key)
		}
	}
	sort.Strings(extra)
	for _, key := range extra {
		t.Errorf("api/openapi.yaml documents %s but the server has no such route (internal/httpapi/server.go routes()); remove it or add the route", key)
	}
}

// TestOpenAPIOperations checks every operation's responses, and the security
// and x-required-scope of the authenticated ones.
func TestOpenAPIOperations(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	srv := newTestServerForOpenAPI(t)

	var bearer []string
	for name, s := range doc.Components.SecuritySchemes {
		if strings.EqualFold(s.Type, "http") && strings.EqualFold(s.Scheme, "bearer") {
			bearer = append(bearer, name)
		}
	}
	if len(bearer) == 0 {
		t.Fatalf("api/openapi.yaml: components.securitySchemes has no http bearer scheme")
	}
	// security returns the operation's effective security requirements.
	security := func(op openAPIOperation) []map[string][]string {
		if op.Security != nil {
			return *op.Security
		}
		return doc.Security
	}
	requiresBearer := func(op openAPIOperation) bool {
		reqs := security(op)
		if len(reqs) == 0 {
			return false
		}
		// Every alternative must include a bearer scheme; an empty
		// alternative ({}) would make credentials optional.
		for _, req := range reqs {
			ok := false
			for name := range req {
				if slices.Contains(bearer, name) {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}

	keys := make([]string, 0, len(ops))
	for key := range ops {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		r := ops[key]
		if len(r.op.Responses) == 0 {
			t.Errorf("api/openapi.yaml: %s has no responses", key)
		}
		if r.op.OperationID == "" {
			t.Errorf("api/openapi.yaml: %s has no operationId", key)
		}
		if strings.HasPrefix(r.path, "/api/") {
			if !requiresBearer(r.op) {
				t.Errorf("api/openapi.yaml: %s must require the bearer scheme (security: [{%s: []}])", key, bearer[0])
			}
			if !slices.Contains(requiredScopes, r.op.Scope) {
				t.Errorf("api/openapi.yaml: %s has x-required-scope %q, want one of %v", key, r.op.Scope, requiredScopes)
			}
		}
	}

	// The document must agree with the server on which routes are public.
	for _, rd := range srv.routes() {
		path, err := openAPIPath(rd.route.Pattern)
		if err != nil {
			continue // reported by TestOpenAPIRoutes
		}
		key := rd.route.Method + " " + path
		r, ok := ops[key]
		if !ok {
			continue // reported by TestOpenAPIRoutes
		}
		if !rd.acc.public && r.op.Scope != string(rd.acc.scope) {
			t.Errorf("api/openapi.yaml: %s has x-required-scope %q but the route table (internal/httpapi/server.go routes()) requires %q; make them agree", key, r.op.Scope, rd.acc.scope)
		}
		switch {
		case rd.acc.public && len(security(r.op)) > 0:
			t.Errorf("api/openapi.yaml: %s is public in the server but requires security in the document; give it security: []", key)
		case !rd.acc.public && !requiresBearer(r.op):
			t.Errorf("api/openapi.yaml: %s is authenticated in the server but the document does not require the bearer scheme", key)
		}
	}
}
