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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/bounds"
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
		rd := s.redactor(r)
		e := store.AuditEntry{
			At: s.Now().UTC(), Actor: principalOf(r).ID, Method: r.Method, Route: rt.Pattern,
			Path: rd.text(r.URL.Path), Target: rd.text(target), Status: ar.code, Body: rd.body(body),
		}
		// The change is made; a failure to record it must not turn it into
		// an error for the client, but it must be loud.
		if _, err := s.Store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
			s.log.Error("audit trail: could not record a change", "actor", e.Actor, "method", e.Method, "path", e.Path, "status", e.Status, "err", err)
		}
	})
}

// redactor takes secrets out of what the audit trail keeps: members whose
// name says they hold one, strings shaped like a well-known credential
// (looksSecret), and any string holding one of the secrets tally is
// configured with (Config.Secrets) or the request's own credential, even as
// part of a longer text. Nothing else about the secret is kept.
type redactor struct{ secrets []string }

// redactor is the redactor for r: the configured secrets and the bearer
// credential r was made with.
func (s *Server) redactor(r *http.Request) redactor {
	rd := redactor{secrets: s.Secrets}
	if tok, ok := auth.BearerToken(r.Header.Get("Authorization")); ok && tok != "" {
		rd.secrets = append(slices.Clip(rd.secrets), tok)
	}
	return rd
}

// auditBody is a request body as the audit trail keeps it, when no secret
// but those of well-known shapes is configured.
func auditBody(body []byte) json.RawMessage { return redactor{}.body(body) }

// body is a request body as the audit trail keeps it: JSON with secrets
// redacted; anything else only as its size.
func (rd redactor) body(body []byte) json.RawMessage {
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
	out, err := json.Marshal(rd.redact(v))
	if err != nil {
		return nil
	}
	return out
}

// redacted replaces a secret.
const redacted = "[redacted]"

func (rd redactor) redact(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			switch {
			case rd.secret(k):
				// A secret used as a member name: keep neither.
				out[redacted] = redacted
			case isSecretField(k):
				out[k] = redacted
			default:
				out[k] = rd.redact(x)
			}
		}
		return out
	case []any:
		for i, x := range v {
			v[i] = rd.redact(x)
		}
		return v
	case string:
		if rd.secret(v) {
			return redacted
		}
	case json.Number:
		// A number long enough can only be a secret sent as a number.
		if rd.secret(v.String()) {
			return redacted
		}
	}
	return v
}

// text is s, or redacted if it holds a secret.
func (rd redactor) text(s string) string {
	if rd.secret(s) {
		return redacted
	}
	return s
}

// secret reports whether s holds a secret anywhere in it.
func (rd redactor) secret(s string) bool {
	for _, x := range rd.secrets {
		if x != "" && strings.Contains(s, x) {
			return true
		}
	}
	return looksSecret(s)
}

// isSecretField reports whether a JSON member name says its value is a
// secret ("token", "clientSecret", "api_key", "password",
// "secretAccessKey" …).
func isSecretField(k string) bool {
	k = strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(k))
	switch k {
	case "authorization", "credential", "credentials", "connectionstring", "passphrase":
		return true
	}
	for _, suffix := range []string{"token", "secret", "password", "passwd", "apikey", "accesskey", "secretkey", "signingkey", "privatekey"} {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

// looksSecret spots a credential by its shape anywhere in a string: an API
// key of tally (or a piece of one long enough to matter), a JWT, a Stripe
// secret or restricted key or webhook secret, an AWS access key id or
// secret access key, an Azure client secret, a PEM private key.
func looksSecret(s string) bool {
	if secretShapes.MatchString(s) || hasAWSSecretKey(s) {
		return true
	}
	i := strings.Index(s, "eyJ")
	return i >= 0 && strings.Count(s[i:], ".") >= 2
}

// secretShapes matches the credentials that have a recognisable prefix.
// Stripe's publishable keys (pk_…) are public and not matched.
var secretShapes = regexp.MustCompile(strings.Join([]string{
	regexp.QuoteMeta(auth.KeyPrefix) + `[a-z2-7]{8}`,
	`(?:sk|rk)_(?:live|test)_[0-9A-Za-z]`,
	`whsec_[0-9A-Za-z+/]`,
	`(?:AKIA|ASIA)[0-9A-Z]{16}`,
	// Azure AD client secrets: three characters, a digit, Q~, then 31-34.
	`[0-9A-Za-z_.~-]{3}[0-9]Q~[0-9A-Za-z_.~-]{31}`,
	`-----BEGIN[A-Z0-9 ]*PRIVATE KEY`,
}, "|"))

// hasAWSSecretKey spots an AWS secret access key: a run of exactly 40
// characters of [A-Za-z0-9/+], not part of a longer one, holding an
// upper-case letter, a lower-case letter and a digit. A random key of 40
// characters lacks one of these about once in 10^4; a hex digest (SHA-1,
// a git commit) or a word does not have all three and is kept.
func hasAWSSecretKey(s string) bool {
	run, upper, lower, digit := 0, false, false, false
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			switch {
			case 'A' <= c && c <= 'Z':
				run, upper = run+1, true
				continue
			case 'a' <= c && c <= 'z':
				run, lower = run+1, true
				continue
			case '0' <= c && c <= '9':
				run, digit = run+1, true
				continue
			case c == '/' || c == '+':
				run++
				continue
			}
		}
		if run == 40 && upper && lower && digit {
			return true
		}
		run, upper, lower, digit = 0, false, false, false
	}
	return false
}

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
			t, err := bounds.ParseTime(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
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
	// after (a previous page's nextAfter, as every list takes) is the
	// cursor form of before.
	if v := q.Get("after"); v != "" {
		key, err := decodeCursor(v, "audit", 1)
		var seq int64
		if err == nil {
			seq, err = strconv.ParseInt(key[0], 10, 64)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("after: %q is not a cursor of audit; pass the nextAfter of the previous page as it came", v))
		}
		f.Before = seq
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	limit := f.Limit
	f.Limit++
	es, err := s.Store.ListAudit(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, cutPage("audit", es, func(e store.AuditEntry) []string { return []string{strconv.FormatInt(e.Seq, 10)} }, limit))
}
