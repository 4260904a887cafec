package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/store"
)

// maxAuditBody is how much of a request body the audit trail keeps.
const maxAuditBody = 64 << 10

type auditKey struct{}

// auditInfo is what a handler may add to its request's audit entry.
type auditInfo struct{ target string }

// setAuditTarget names what a request created when no Location header
// does (a portal token's id).
func setAuditTarget(r *http.Request, target string) {
	if ai, ok := r.Context().Value(auditKey{}).(*auditInfo); ok {
		ai.target = target
	}
}

// auditRecorder notes the status a handler answers with.
type auditRecorder struct {
	http.ResponseWriter
	code int
}

func (ar *auditRecorder) WriteHeader(code int) {
	if ar.code == 0 {
		ar.code = code
	}
	ar.ResponseWriter.WriteHeader(code)
}

func (ar *auditRecorder) Write(b []byte) (int, error) {
	if ar.code == 0 {
		ar.code = http.StatusOK
	}
	return ar.ResponseWriter.Write(b)
}

// routeWildcards are the wildcard names of a route pattern, in order.
var routeWildcards = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(?:\.\.\.)?\}`)

// audit records every successful request of an administrative route: who
// (the credential's id), when, the route, its target and the request body
// with secrets redacted. It wraps routes in one place, so no handler needs
// to remember it.
func (s *Server) audit(rt Route, next http.Handler) http.Handler {
	var names []string
	for _, m := range routeWildcards.FindAllStringSubmatch(rt.Pattern, -1) {
		names = append(names, m[1])
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		// A body declared over the limit is refused by the handler
		// unread; reading it here first would defeat that.
		if r.Body != nil && r.ContentLength <= maxJSONBody {
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, maxAuditBody+1))
			if err != nil {
				badRequest(w, r, fmt.Errorf("read request body: %w", err))
				return
			}
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		}
		ai := &auditInfo{}
		r = r.WithContext(context.WithValue(r.Context(), auditKey{}, ai))
		ar := &auditRecorder{ResponseWriter: w}
		next.ServeHTTP(ar, r)
		if ar.code == 0 || ar.code >= 400 {
			return
		}
		target := ai.target
		if loc := ar.Header().Get("Location"); target == "" && loc != "" {
			target = path.Base(loc)
		}
		for _, n := range names {
			if target == "" {
				target = r.PathValue(n)
			}
		}
		e := store.AuditEntry{
			At: s.Now().UTC(), Actor: principalOf(r).ID, Method: r.Method, Route: rt.Pattern,
			Path: r.URL.Path, Target: target, Status: ar.code, Body: auditBody(body),
		}
		// The change is made; a failure to record it must not turn it into
		// an error for the client, but it must be loud.
		if _, err := s.Store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
			s.log.Error("audit trail: could not record a change", "actor", e.Actor, "method", e.Method, "path", e.Path, "status", e.Status, "err", err)
		}
	})
}

// auditBody is a request body as the audit trail keeps it: JSON with
// secret members and secret-looking strings (API keys, JWTs) redacted;
// anything else only as its size.
func auditBody(body []byte) json.RawMessage {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if len(body) > maxAuditBody {
		return json.RawMessage(`{"redacted":"body over ` + strconv.Itoa(maxAuditBody) + ` bytes"}`)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`{"redacted":"body is not JSON (` + strconv.Itoa(len(body)) + ` bytes)"}`)
	}
	out, err := json.Marshal(redact(v))
	if err != nil {
		return nil
	}
	return out
}

// redacted replaces a secret.
const redacted = "[redacted]"

func redact(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			switch {
			case looksSecret(k):
				// A secret used as a member name: keep neither.
				out[redacted] = redacted
			case isSecretField(k):
				out[k] = redacted
			default:
				out[k] = redact(x)
			}
		}
		return out
	case []any:
		for i, x := range v {
			v[i] = redact(x)
		}
		return v
	case string:
		if looksSecret(v) {
			return redacted
		}
	}
	return v
}

// isSecretField reports whether a JSON member name says its value is a
// secret ("token", "clientSecret", "api_key", "password" …).
func isSecretField(k string) bool {
	k = strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
	switch k {
	case "apikey", "authorization", "signingkey", "privatekey", "credentials":
		return true
	}
	return strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret") || strings.HasSuffix(k, "password")
}

// looksSecret spots a credential by its shape anywhere in a string: an
// API key (or a piece of one long enough to matter) or a JWT.
func looksSecret(s string) bool {
	if keyShape.MatchString(s) {
		return true
	}
	i := strings.Index(s, "eyJ")
	return i >= 0 && strings.Count(s[i:], ".") >= 2
}

// keyShape matches an API key, or its first characters, in a text.
var keyShape = regexp.MustCompile(regexp.QuoteMeta(auth.KeyPrefix) + `[a-z2-7]{8}`)

// listAudit lists the audit trail, newest first.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f store.AuditFilter
	var errs []error
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not an RFC 3339 time", p.name, v))
			}
			*p.dst = t
		}
	}
	f.Actor, f.Target = q.Get("actor"), q.Get("target")
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("before: %q must be a sequence number (from a previous page)", v))
		}
		f.Before = n
	}
	f.Limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errs = append(errs, fmt.Errorf("limit: %q must be a whole number from 1 to 1000", v))
		}
		f.Limit = n
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	es, err := s.Store.ListAudit(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, itemsOf[store.AuditEntry]{es})
}
