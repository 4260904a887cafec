package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/store"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type     string          `json:"type"`
	Title    string          `json:"title"`
	Status   int             `json:"status"`
	Detail   string          `json:"detail,omitempty"`
	Instance string          `json:"instance,omitempty"`
	Problems []event.Problem `json:"problems,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
}

// newEncoder is the encoder of every JSON answer: it writes <, > and & as
// they are (a detail reads "Bearer <token>", not "Bearer \u003ctoken\u003e");
// the answers are application/json, never pasted into HTML.
func newEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = newEncoder(w).Encode(p)
}

func badRequest(w http.ResponseWriter, r *http.Request, err error) {
	writeProblem(w, r, Problem{Status: http.StatusBadRequest, Detail: err.Error(), Errors: splitJoined(err)})
}

// splitJoined lists the errors inside an errors.Join, so that a client sees
// every problem separately.
func splitJoined(err error) []string {
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		return nil
	}
	var out []string
	for _, e := range j.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

// writeError maps a domain error onto an HTTP status. It is the one place
// where errors become statuses.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var inv *event.InvalidError
	var minv *ingest.InvalidError
	var qerr *queryError
	var berr *billing.ValidationError
	var taken *store.SubjectTakenError
	var cerr *conflictError
	var nsub *billing.NotSubscribableError
	var pre *preconditionError
	var stale *store.StaleError
	var big *bodyTooLargeError
	var mt *mediaTypeError
	var corr *ingest.CorrectionError
	var clash *ingest.ConflictError
	switch {
	case errors.As(err, &big):
		writeProblem(w, r, Problem{Status: http.StatusRequestEntityTooLarge, Detail: big.Error()})
	case errors.As(err, &mt):
		writeProblem(w, r, Problem{Status: http.StatusUnsupportedMediaType, Detail: mt.Error()})
	case errors.As(err, &inv):
		status := http.StatusBadRequest
		if inv.TooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		writeProblem(w, r, Problem{Status: status, Title: "Invalid events", Detail: "the request was rejected whole; nothing of it was stored", Problems: inv.Problems})
	case errors.Is(err, event.ErrUnsupportedMediaType):
		writeProblem(w, r, Problem{Status: http.StatusUnsupportedMediaType, Detail: err.Error()})
	case errors.As(err, &minv):
		writeProblem(w, r, Problem{Status: http.StatusBadRequest, Title: "Invalid meter", Detail: minv.Error(), Errors: splitJoined(minv.Err)})
	case errors.As(err, &corr):
		writeProblem(w, r, Problem{Status: http.StatusBadRequest, Title: "Invalid correction", Detail: corr.Error(), Errors: splitJoined(corr.Err)})
	case errors.As(err, &clash):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: clash.Error()})
	case errors.As(err, &qerr):
		badRequest(w, r, qerr.err)
	case errors.As(err, &berr):
		writeProblem(w, r, Problem{Status: http.StatusBadRequest, Title: "Invalid " + berr.What, Detail: berr.Error(), Errors: berr.Errors()})
	case errors.As(err, &taken):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: taken.Error()})
	case errors.As(err, &cerr):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: cerr.Error()})
	case errors.As(err, &nsub):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: nsub.Error()})
	case errors.As(err, &pre):
		w.Header().Set("ETag", pre.etag)
		writeProblem(w, r, Problem{Status: http.StatusPreconditionFailed, Detail: pre.Error()})
	case errors.As(err, &stale):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: stale.Error()})
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Detail: err.Error()})
	case errors.Is(err, store.ErrConflict):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: err.Error() + ": already exists"})
	case errors.Is(err, ingest.ErrManagedByConfig):
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, ingest.ErrClosed):
		writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Detail: "tally is shutting down; retry the request"})
	case errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		writeProblem(w, r, Problem{Status: 499, Title: "Client Closed Request", Detail: err.Error()})
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, r, Problem{Status: http.StatusInternalServerError, Detail: "internal error; see the server log"})
	}
}

// queryError marks a bad query parameter or body.
type queryError struct{ err error }

func (e *queryError) Error() string { return e.err.Error() }
func (e *queryError) Unwrap() error { return e.err }

// writeJSON answers status with v as JSON. v is encoded before anything is
// written, so that a value that can't be encoded (a time in year 10000)
// answers a logged 500 rather than status with an empty body.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	if err := newEncoder(&buf).Encode(v); err != nil {
		s.log.Error("encode response", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		for _, h := range []string{"Location", "ETag", "Cache-Control"} {
			w.Header().Del(h)
		}
		writeProblem(w, r, Problem{Status: http.StatusInternalServerError, Detail: "internal error: the response could not be encoded; see the server log"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		s.log.Debug("write response", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}
