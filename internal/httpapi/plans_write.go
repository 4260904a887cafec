package httpapi

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tally-metering/tally/internal/billing"
)

// planETag is the entity tag of a plan version as stored: its number and
// a digest of it, so that it changes with every change of the version
// (a draft replaced, published), not only with a new version.
func planETag(p billing.Plan) string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return fmt.Sprintf(`"%d-%x"`, p.Version, sum[:8])
}

// planInputOf is a plan version's input representation: the body of a
// PUT that would leave it as it is.
func planInputOf(p billing.Plan) billing.PlanInput {
	return billing.PlanInput{Key: p.Key, Name: p.Name, Description: p.Description, Currency: p.Currency,
		Cadence: p.Cadence, BaseFee: p.BaseFee, Charges: p.Charges, ProrateIncluded: p.ProrateIncluded}
}

// errPlanMoved is savePlan's answer when the plan's latest version
// changed after it was read and the write must be made again on it.
var errPlanMoved = errors.New("the plan changed while it was written")

// savePlan writes in as the plan's draft, based on latest (its latest
// version as read): it replaces latest when that is a draft (200), and
// adds the next version as a draft when latest is published (201), since
// a published version never changes. The write is conditional, in the
// store's transaction: with im, the stored latest version must be one im
// names (else 412); with strict (a patch, made of latest), it must be
// latest still (else errPlanMoved, to be made again). It returns the
// version as stored.
func (s *Server) savePlan(r *http.Request, in billing.PlanInput, latest billing.Plan, im *ifMatch, strict bool) (billing.Plan, int, error) {
	if in.Key == "" {
		in.Key = latest.Key
	}
	if in.Key != latest.Key {
		return latest, 0, &billing.ValidationError{What: "plan", Err: fmt.Errorf("key: a plan's key can't change (it is %q); create a new plan instead", latest.Key)}
	}
	if err := s.validatePlan(r, in); err != nil {
		return latest, 0, err
	}
	now := s.Now().UTC()
	p := in.Plan(latest.ID, latest.Version, latest.CreatedAt, now)
	status := http.StatusOK
	if latest.Published() {
		p = in.Plan(latest.ID, latest.Version+1, now, now)
		status = http.StatusCreated
	}
	read := planETag(latest)
	err := s.Store.SavePlanDraftIf(r.Context(), p, func(stored billing.Plan) error {
		tag := planETag(stored)
		switch {
		case im != nil && !im.matches(tag):
			return &preconditionError{etag: tag, msg: fmt.Sprintf("plan %q is at version %d as ETag %s, not the one If-Match names (%s): it changed since it was read. Read it again (GET), check the change still makes sense and retry with the new ETag",
				stored.Key, stored.Version, tag, im.header)}
		case strict && tag != read:
			return errPlanMoved
		}
		return nil
	})
	if err != nil {
		return latest, 0, err
	}
	stored, err := s.Store.GetPlan(r.Context(), p.ID, p.Version)
	return stored, status, err
}

// answerPlan answers a plan version written by savePlan.
func (s *Server) answerPlan(w http.ResponseWriter, r *http.Request, p billing.Plan, status int) {
	if status == http.StatusCreated {
		w.Header().Set("Location", fmt.Sprintf("/api/v1/plans/%s?version=%d", p.Key, p.Version))
	}
	w.Header().Set("ETag", planETag(p))
	s.writeJSON(w, r, status, viewPlan(p))
}

// patchPlan changes the members of the plan's draft a JSON Merge Patch
// names (RFC 7386), as PUT would with the rest as it is: on a published
// latest version the patch applies to it and makes the next version's
// draft (201). Without If-Match a concurrent write makes it apply the
// patch again to what is stored then, up to maxSubscriptionWrites times.
func (s *Server) patchPlan(w http.ResponseWriter, r *http.Request) {
	patch, err := readMergePatch[billing.PlanInput](w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	im, err := parseIfMatch(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for attempt := 1; ; attempt++ {
		latest, err := s.Store.GetPlan(r.Context(), r.PathValue("idOrKey"), 0)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		in, err := applyMergePatch(patch, planInputOf(latest))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p, status, err := s.savePlan(r, in, latest, im, true)
		if errors.Is(err, errPlanMoved) && attempt < maxSubscriptionWrites {
			continue
		}
		if errors.Is(err, errPlanMoved) {
			err = &conflictError{fmt.Sprintf("plan %q changed %d times while this patch was applied; retry", latest.Key, attempt)}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.answerPlan(w, r, p, status)
		return
	}
}
