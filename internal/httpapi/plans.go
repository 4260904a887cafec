package httpapi

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// validatePlan checks in by itself, then that every charge's meter exists
// and has the dimensions its filterGroupBy names; it returns one
// *billing.ValidationError with every problem found.
func (s *Server) validatePlan(r *http.Request, in billing.PlanInput) error {
	var errs []error
	if err := in.Validate(); err != nil {
		var ve *billing.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		if j, ok := ve.Err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...)
		} else {
			errs = append(errs, ve.Err)
		}
	}
	for i, ch := range in.Charges {
		errs = append(errs, s.checkTargets(i, ch)...)
		if ch.Meter == "" {
			continue // reported by Validate
		}
		m, err := s.Store.GetMeter(r.Context(), ch.Meter)
		if errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("charges[%d].meter: there is no meter %q; create it first (POST /api/v1/meters)", i, ch.Meter))
			continue
		}
		if err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(ch.FilterGroupBy)) {
			if _, ok := m.GroupBy[k]; !ok {
				errs = append(errs, fmt.Errorf("charges[%d].filterGroupBy.%s: meter %q has no groupBy %q", i, k, m.Slug, k))
			}
		}
		if len(ch.Reporting) > 0 && m.Aggregation != meter.Sum && m.Aggregation != meter.Count {
			errs = append(errs, fmt.Errorf("charges[%d].reporting: meter %q aggregates with %s; only SUM and COUNT usage can be reported by the hour", i, m.Slug, m.Aggregation))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &billing.ValidationError{What: "plan", Err: errors.Join(errs...)}
}

func (s *Server) createPlan(w http.ResponseWriter, r *http.Request) {
	var in billing.PlanInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.validatePlan(r, in); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := newID()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	p := in.Plan(id, 1, now, now)
	if err := s.Store.CreatePlan(r.Context(), p); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/plans/"+p.Key)
	s.writeJSON(w, r, http.StatusCreated, viewPlan(p))
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "plans", 1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ps, err := s.Store.ListPlans(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pg := paginate("plans", ps, func(p billing.Plan) []string { return []string{p.Key} }, p)
	s.writeJSON(w, r, http.StatusOK, page[planView]{Items: viewPlans(pg.Items), NextAfter: pg.NextAfter})
}

// planVersion reads the optional ?version=N (0 when absent: the latest).
func planVersion(r *http.Request) (int, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, &queryError{fmt.Errorf("version: %q is not a plan version (1, 2, …)", v)}
	}
	return n, nil
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	v, err := planVersion(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.Store.GetPlan(r.Context(), r.PathValue("idOrKey"), v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", planETag(p))
	s.writeJSON(w, r, http.StatusOK, viewPlan(p))
}

// updatePlan replaces the plan's draft with the request; when the latest
// version is published it creates the next version as a draft instead
// (201), since a published version never changes.
func (s *Server) updatePlan(w http.ResponseWriter, r *http.Request) {
	var in billing.PlanInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	im, err := parseIfMatch(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	latest, err := s.Store.GetPlan(r.Context(), r.PathValue("idOrKey"), 0)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, status, err := s.savePlan(r, in, latest, im, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.answerPlan(w, r, p, status)
}

// publishPlan publishes the latest version (or ?version=N); publishing a
// published version changes nothing.
func (s *Server) publishPlan(w http.ResponseWriter, r *http.Request) {
	v, err := planVersion(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.Store.PublishPlan(r.Context(), r.PathValue("idOrKey"), v, s.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, viewPlan(p))
}
