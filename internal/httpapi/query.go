package httpapi

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/usage"
)

// queryInput is the body of POST /api/v1/meters/{idOrSlug}/query and the
// parsed form of the GET query string.
type queryInput struct {
	From           *time.Time        `json:"from"`
	To             *time.Time        `json:"to"`
	WindowSize     string            `json:"windowSize"`
	WindowTimeZone string            `json:"windowTimeZone"`
	Subject        []string          `json:"subject"`
	GroupBy        []string          `json:"groupBy"`
	FilterGroupBy  map[string]string `json:"filterGroupBy"`
}

func parseQueryString(v url.Values) (queryInput, error) {
	var in queryInput
	var errs []error
	for _, f := range []struct {
		name string
		dst  **time.Time
	}{{"from", &in.From}, {"to", &in.To}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		t, err := bounds.ParseTime(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			continue
		}
		*f.dst = &t
	}
	in.WindowSize = v.Get("windowSize")
	in.WindowTimeZone = v.Get("windowTimeZone")
	in.Subject = v["subject"]
	errs = append(errs, checkSubjects("subject", in.Subject)...)
	in.GroupBy = v["groupBy"]
	for key, vals := range v {
		if !strings.HasPrefix(key, "filterGroupBy[") {
			continue
		}
		if !strings.HasSuffix(key, "]") || len(key) == len("filterGroupBy[]") {
			errs = append(errs, fmt.Errorf("%s: expected filterGroupBy[<key>]=<value>", key))
			continue
		}
		if in.FilterGroupBy == nil {
			in.FilterGroupBy = map[string]string{}
		}
		in.FilterGroupBy[key[len("filterGroupBy["):len(key)-1]] = vals[len(vals)-1]
	}
	return in, errors.Join(errs...)
}

type queryRow struct {
	Value       json.Number        `json:"value"`
	WindowStart time.Time          `json:"windowStart"`
	WindowEnd   time.Time          `json:"windowEnd"`
	Subject     *string            `json:"subject"`
	GroupBy     map[string]*string `json:"groupBy"`
}

type queryResponse struct {
	From       *time.Time `json:"from,omitempty"`
	To         *time.Time `json:"to,omitempty"`
	WindowSize *string    `json:"windowSize"`
	Data       []queryRow `json:"data"`
}

func (s *Server) queryMeter(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.GetMeter(r.Context(), r.PathValue("idOrSlug"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var in queryInput
	var errs []error
	switch {
	case r.Method != http.MethodPost:
		// Keep going after a bad parameter, so that every problem is listed.
		var perr error
		in, perr = parseQueryString(r.URL.Query())
		if perr != nil {
			errs = append(errs, perr)
		}
	case r.ContentLength != 0:
		if err := decodeJSON(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		errs = append(errs, checkSubjects("subject", in.Subject)...)
	}
	// An empty POST body asks for the defaults, like a GET without parameters.
	q := usage.Query{Meter: m, From: in.From, To: in.To, Subjects: in.Subject, GroupBy: in.GroupBy, FilterGroupBy: in.FilterGroupBy}
	if in.WindowSize != "" {
		ws, err := usage.ParseWindowSize(in.WindowSize)
		if err != nil {
			errs = append(errs, err)
		}
		q.WindowSize = ws
	}
	if in.WindowTimeZone != "" {
		loc, err := usage.ParseTimeZone(in.WindowTimeZone)
		if err != nil {
			errs = append(errs, err)
		}
		q.TimeZone = loc
	}
	if err := q.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	scope, ok := s.scopeOf(w, r, q.Subjects)
	if !ok {
		return
	}
	q.Subjects, q.Within = scope.subjects, scope.within
	var res usage.Result
	run := func() error {
		if scope.none() {
			// A bound caller whose customer owns no subject reads nothing.
			res = usage.Result{From: q.From, To: q.To, WindowSize: q.WindowSize}
			return nil
		}
		// Read the definition again where no meter can change, so that the
		// rollups read are the ones built for it.
		cur, err := s.Store.GetMeter(r.Context(), m.ID)
		if err != nil {
			return err
		}
		q.Meter = cur
		res, err = s.Usage.Query(r.Context(), q)
		return err
	}
	if s.Pipeline != nil {
		err = s.Pipeline.MetersStable(run)
	} else {
		err = run()
	}
	if err != nil {
		var inv interface{ Unwrap() []error }
		if errors.As(err, &inv) {
			// The meter changed between parsing and reading; its new
			// definition refuses the query.
			badRequest(w, r, err)
			return
		}
		s.writeError(w, r, err)
		return
	}
	if wantsCSV(r) {
		s.writeCSV(w, r, q, res)
		return
	}
	out := queryResponse{From: res.From, To: res.To, Data: make([]queryRow, 0, len(res.Rows))}
	if res.WindowSize != "" {
		ws := string(res.WindowSize)
		out.WindowSize = &ws
	}
	for _, row := range res.Rows {
		out.Data = append(out.Data, queryRow{
			Value: json.Number(row.Value.String()), WindowStart: row.WindowStart, WindowEnd: row.WindowEnd,
			Subject: row.Subject, GroupBy: row.GroupBy,
		})
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func wantsCSV(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if strings.EqualFold(mt, "text/csv") {
			return true
		}
	}
	return false
}

// writeCSV answers the rows as CSV, written whole to a buffer first so that
// a failure answers a logged 500 rather than a 200 with a cut body.
func (s *Server) writeCSV(w http.ResponseWriter, r *http.Request, q usage.Query, res usage.Result) {
	var keys []string
	subject := false
	for _, k := range q.GroupBy {
		if k == usage.SubjectGroup {
			subject = true
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	keys = dedupSorted(keys)
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	header := []string{"windowStart", "windowEnd"}
	if subject {
		header = append(header, "subject")
	}
	header = append(header, keys...)
	header = append(header, "value")
	_ = cw.Write(header) // a csv.Writer keeps its first error for Error
	for _, row := range res.Rows {
		rec := []string{row.WindowStart.Format(time.RFC3339), row.WindowEnd.Format(time.RFC3339)}
		if subject {
			rec = append(rec, csvText(deref(row.Subject)))
		}
		for _, k := range keys {
			rec = append(rec, csvText(deref(row.GroupBy[k])))
		}
		rec = append(rec, row.Value.String())
		_ = cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		s.log.Error("encode CSV response", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, r, Problem{Status: http.StatusInternalServerError, Detail: "internal error: the response could not be encoded; see the server log"})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(buf.Bytes()); err != nil {
		s.log.Debug("write response", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

// csvText guards a cell that comes from event data (a subject or a
// group value) against formula injection: a spreadsheet opening the
// export would run a cell starting with = + - @ or a tab or carriage
// return as a formula, so such a cell gets a leading apostrophe, which
// spreadsheets show as text. Values (decimals) are written as they are.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
