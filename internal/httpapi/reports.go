package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store"
)

// reportPage is the body of GET /api/v1/reports: the reports, and the
// cursor for the next page when there may be more.
type reportPage struct {
	Items     []report.Report `json:"items"`
	NextAfter string          `json:"nextAfter,omitempty"`
}

// reportDetail is one report with its delivery attempts.
type reportDetail struct {
	report.Report
	AttemptLog []report.Attempt `json:"attemptLog"`
}

const (
	defaultReportLimit = 100
	maxReportLimit     = 1000
)

// reportFilter reads the report list's query parameters.
func (s *Server) reportFilter(r *http.Request) (report.Filter, error) {
	q := r.URL.Query()
	f := report.Filter{SubscriptionID: q.Get("subscription"), Target: q.Get("target"), State: report.State(q.Get("state")), After: q.Get("after"), Limit: defaultReportLimit}
	var errs []error
	if k := q.Get("customer"); k != "" {
		c, err := s.Store.GetCustomer(r.Context(), k)
		if err != nil {
			return f, err
		}
		f.CustomerID = c.ID
	}
	if f.State != "" && !slices.Contains(report.States, f.State) {
		errs = append(errs, fmt.Errorf("state: %q is not one of %v", f.State, report.States))
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.HourFrom}, {"to", &f.HourTo}} {
		if v := q.Get(p.name); v != "" {
			t, err := bounds.ParseTime(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
				continue
			}
			*p.dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxReportLimit {
			errs = append(errs, fmt.Errorf("limit: %q is not a whole number from 1 to %d", v, maxReportLimit))
		} else {
			f.Limit = n
		}
	}
	if err := errors.Join(errs...); err != nil {
		return f, &queryError{err: err}
	}
	return f, nil
}

// listReports lists marketplace and provider usage reports, by hour.
func (s *Server) listReports(w http.ResponseWriter, r *http.Request) {
	if s.Outbox == nil {
		s.writeJSON(w, r, http.StatusOK, reportPage{Items: []report.Report{}})
		return
	}
	f, err := s.reportFilter(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// One more than the page tells whether there is a next page, so that
	// the last page has no nextAfter, as in every list.
	limit := f.Limit
	f.Limit++
	items, err := s.Outbox.ListReports(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := reportPage{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.NextAfter = items[limit-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, page)
}

// getReport shows one report with every delivery attempt and the target's
// answers.
func (s *Server) getReport(w http.ResponseWriter, r *http.Request) {
	if s.Outbox == nil {
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Detail: "reporting is not enabled"})
		return
	}
	rep, attempts, err := s.Outbox.GetReport(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if principalOf(r).Bound() {
		// A target's answer to a whole batch names the other customers
		// in it: only the vendor sees the answers as received.
		for i := range attempts {
			attempts[i].Response = nil
		}
	}
	s.writeJSON(w, r, http.StatusOK, reportDetail{Report: rep, AttemptLog: attempts})
}

// retryReport sends a failed report again, with the customer's current
// marketplace identity (the usual fix for a failure is to correct it).
func (s *Server) retryReport(w http.ResponseWriter, r *http.Request) {
	if s.Outbox == nil || s.Reporter == nil {
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Detail: "reporting is not enabled"})
		return
	}
	ctx := r.Context()
	rep, _, err := s.Outbox.GetReport(ctx, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rep.State != report.StateFailed {
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: fmt.Sprintf("report %s is %s; only a failed report can be sent again", rep.ID, rep.State)})
		return
	}
	res, err := s.Reporter.Resource(ctx, rep)
	if err != nil {
		writeProblem(w, r, Problem{Status: http.StatusConflict, Detail: "report " + rep.ID + " can't be sent again yet: " + err.Error()})
		return
	}
	if err := s.Outbox.Requeue(ctx, rep.ID, res, s.Now()); err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, attempts, err := s.Outbox.GetReport(ctx, rep.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, reportDetail{Report: rep, AttemptLog: attempts})
}

// reportInPath lets a bound caller reach only its customer's reports.
func reportInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		id := r.PathValue(name)
		if s.Outbox != nil {
			rep, _, err := s.Outbox.GetReport(r.Context(), id)
			switch {
			case err == nil && rep.CustomerID == p.CustomerID:
				return true
			case err != nil && !errors.Is(err, store.ErrNotFound):
				s.writeError(w, r, err)
				return false
			}
		}
		forbid(w, r, fmt.Sprintf("report %q is not of the customer this credential is bound to", id))
		return false
	}
}

// checkTargets checks that every reporting target charge i names is
// configured.
func (s *Server) checkTargets(i int, ch billing.PlanCharge) []error {
	var names []string
	if s.Reporter != nil {
		for _, t := range s.Reporter.Targets {
			names = append(names, t.Name)
		}
	}
	configured := strings.Join(names, ", ")
	if configured == "" {
		configured = "none; see reporting.targets in docs/configuration.md"
	}
	var errs []error
	for j, rep := range ch.Reporting {
		if rep.Target != "" && !slices.Contains(names, rep.Target) {
			errs = append(errs, fmt.Errorf("charges[%d].reporting[%d].target: %q is not a configured reporting target (configured: %s)", i, j, rep.Target, configured))
		}
	}
	return errs
}
