package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/store"
)

// subjectInput is one item of POST /api/v1/subjects (OpenMeter's shape).
type subjectInput struct {
	Key              string            `json:"key"`
	DisplayName      *string           `json:"displayName"`
	Metadata         map[string]string `json:"metadata"`
	StripeCustomerID *string           `json:"stripeCustomerId"`
}

func (s *Server) upsertSubjects(w http.ResponseWriter, r *http.Request) {
	var in []subjectInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	var errs []error
	if len(in) == 0 {
		errs = append(errs, errors.New("body: expected a non-empty array of subjects like [{\"key\":\"customer-1\"}]"))
	}
	seen := map[string]bool{}
	subs := make([]store.Subject, 0, len(in))
	for i, si := range in {
		switch err := bounds.CheckSubject(si.Key); {
		case si.Key == "":
			errs = append(errs, fmt.Errorf("[%d].key: required", i))
		case err != nil:
			errs = append(errs, fmt.Errorf("[%d].key: %w", i, err))
		case seen[si.Key]:
			errs = append(errs, fmt.Errorf("[%d].key: %q appears twice in the request", i, si.Key))
		}
		seen[si.Key] = true
		subs = append(subs, store.Subject{Key: si.Key, DisplayName: si.DisplayName, Metadata: si.Metadata, StripeCustomerID: si.StripeCustomerID})
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	out, err := s.Store.UpsertSubjects(r.Context(), subs, s.Now().UTC())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) listSubjects(w http.ResponseWriter, r *http.Request) {
	subs, err := s.Store.ListSubjects(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if subs == nil {
		subs = []store.Subject{}
	}
	subs, ok := s.visibleSubjects(w, r, subs)
	if !ok {
		return
	}
	s.writeJSON(w, r, http.StatusOK, subs)
}

func (s *Server) getSubject(w http.ResponseWriter, r *http.Request) {
	sub, err := s.Store.GetSubject(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, sub)
}

func (s *Server) deleteSubject(w http.ResponseWriter, r *http.Request) {
	if err := s.Store.DeleteSubject(r.Context(), r.PathValue("key")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
