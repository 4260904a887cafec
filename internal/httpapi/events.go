package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/store"
)

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *Server) ingestEvents(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	if err := event.CheckContentType(ct); err != nil {
		// Refuse before reading a body we can't decode.
		s.writeError(w, r, err)
		return
	}
	if r.ContentLength > s.MaxBodyBytes {
		writeProblem(w, r, Problem{Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("request body is %d bytes, at most %d allowed; split it into several requests", r.ContentLength, s.MaxBodyBytes)})
		return
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4*DefaultMaxBodyBytes {
			bodyPool.Put(buf)
		}
	}()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, r, Problem{Status: http.StatusRequestEntityTooLarge,
				Detail: fmt.Sprintf("request body is over %d bytes; split it into several requests", s.MaxBodyBytes)})
			return
		}
		badRequest(w, r, fmt.Errorf("read request body: %w", err))
		return
	}
	events, err := event.Decode(ct, buf.Bytes(), s.Now().UTC(), s.Limits)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allowIngest(w, r, events) {
		return
	}
	if err := s.Pipeline.Submit(r.Context(), events); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ingestedEvent is one item of GET /api/v1/events (OpenMeter's shape).
// Event is the event as received, never changed; the corrections made
// to it since are beside it.
type ingestedEvent struct {
	Event           json.RawMessage `json:"event"`
	IngestedAt      time.Time       `json:"ingestedAt"`
	ValidationError string          `json:"validationError,omitempty"`
	// Voided says the event counts for nothing (see Corrections).
	Voided bool `json:"voided,omitempty"`
	// Data is the data the event counts with, when amended.
	Data json.RawMessage `json:"data,omitempty"`
	// Corrections are its voids and amendments: who, when, why.
	Corrections []store.Correction `json:"corrections,omitempty"`
	// CancelledBy lists the cancellation rules in effect that cancel its
	// usage, and for which meters.
	CancelledBy []cancelledBy `json:"cancelledBy,omitempty"`
}

func joinErrors(errs []string) string { return strings.Join(errs, "; ") }

const (
	defaultEventLimit = 100
	maxEventLimit     = 1000
)

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f store.EventFilter
	var errs []error
	parseTime := func(name string) time.Time {
		v := q.Get(name)
		if v == "" {
			return time.Time{}
		}
		t, err := bounds.ParseTime(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return t
	}
	f.From, f.To = parseTime("from"), parseTime("to")
	f.Subject, f.Type, f.ID = q.Get("subject"), q.Get("type"), q.Get("id")
	if f.Subject != "" {
		errs = append(errs, checkSubjects("subject", []string{f.Subject})...)
	}
	f.Limit = defaultEventLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventLimit {
			errs = append(errs, fmt.Errorf("limit: %q must be a whole number from 1 to %d", v, maxEventLimit))
		} else {
			f.Limit = n
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs = append(errs, errors.New("from: must be before to"))
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	evs, ok := s.listEventsFor(w, r, f)
	if !ok {
		return
	}
	out := make([]ingestedEvent, 0, len(evs))
	set := s.Pipeline.ActiveMeters()
	bound := principalOf(r).Bound()
	for _, e := range evs {
		item, err := s.eventItem(e, set)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if bound {
			// Who corrected an event and why are the vendor's notes and
			// credentials: a customer sees what changed and when.
			for i := range item.Corrections {
				item.Corrections[i].Actor, item.Corrections[i].Reason = "", ""
			}
		}
		out = append(out, item)
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// withTime returns the stored event with its time attribute filled in when
// the client sent none (tally then used the receive time).
func withTime(raw json.RawMessage, t time.Time) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if v, ok := m["time"]; ok && string(v) != "null" {
		return raw, nil
	}
	ts, _ := json.Marshal(t.UTC().Format(time.RFC3339Nano))
	m["time"] = ts
	return json.Marshal(m)
}
