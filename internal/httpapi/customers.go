package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request) {
	var in billing.CustomerInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	if err := in.ValidateAt(now); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := newID()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A customer imported with its history was created before now: its
	// subjects are its own, and its subscriptions may start, from then.
	created := now
	if in.CreatedAt != nil {
		created = in.CreatedAt.UTC()
	}
	c := in.Customer(id, created, now)
	if err := s.Store.CreateCustomer(r.Context(), c); err != nil {
		s.writeError(w, r, err)
		return
	}
	if c, err = s.Store.GetCustomer(r.Context(), c.ID); err != nil { // with its subject history
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/customers/"+c.ID)
	w.Header().Set("ETag", customerETag(c))
	s.writeJSON(w, r, http.StatusCreated, c)
}

// customerSortKey is a customer's place in GET /api/v1/customers: by key,
// then id (a deleted customer shares its key with a later live one).
func customerSortKey(c billing.Customer) []string { return []string{c.Key, c.ID} }

// listCustomers pages through the customers, the limit and cursor pushed
// into the store query.
func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request) {
	all := false
	if v := r.URL.Query().Get("includeDeleted"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeError(w, r, &queryError{fmt.Errorf("includeDeleted: %q is not true or false", v)})
			return
		}
		all = b
	}
	p, err := parsePage(r, "customers", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pr := principalOf(r); pr.Bound() {
		// A bound caller's list is its own customer at most.
		c, err := s.Store.GetCustomer(r.Context(), pr.CustomerID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		cs := []billing.Customer{c}
		if c.DeletedAt != nil && !all {
			cs = nil
		}
		s.writeJSON(w, r, http.StatusOK, paginate("customers", cs, customerSortKey, p))
		return
	}
	q := store.CustomerPage{IncludeDeleted: all, Limit: p.Limit + 1}
	if p.After != nil {
		q.AfterKey, q.AfterID = p.After[0], p.After[1]
	}
	cs, err := s.Store.ListCustomerPage(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, cutPage("customers", cs, customerSortKey, p.Limit))
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) {
	c, err := s.Store.GetCustomer(r.Context(), r.PathValue("idOrKey"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", customerETag(c))
	s.writeJSON(w, r, http.StatusOK, c)
}

// updateCustomer replaces a live customer's fields (all of them: an omitted
// optional field is cleared), keeping its id and createdAt (which the body
// may repeat, not change).
func (s *Server) updateCustomer(w http.ResponseWriter, r *http.Request) {
	var in billing.CustomerInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeCustomer(w, r, func(billing.Customer) (billing.CustomerInput, error) { return in, nil }, false)
}

// patchCustomer changes the members of a live customer a JSON Merge Patch
// names (RFC 7386): the others stay, a null clears one.
func (s *Server) patchCustomer(w http.ResponseWriter, r *http.Request) {
	// The patch's own mistakes are 400 before the customer is looked up,
	// as a PUT body's are.
	patch, err := readMergePatch[billing.CustomerInput](w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeCustomer(w, r, func(old billing.Customer) (billing.CustomerInput, error) {
		return applyMergePatch(patch, customerInputOf(old))
	}, true)
}

// customerInputOf is a customer's input representation: the body of a
// PUT that would leave it as it is.
func customerInputOf(c billing.Customer) billing.CustomerInput {
	return billing.CustomerInput{Key: c.Key, Name: c.Name, Email: c.Email, Currency: c.Currency,
		Metadata: c.Metadata, Subjects: c.Subjects, External: c.External}
}

// customerETag is the entity tag of a customer's stored version.
func customerETag(c billing.Customer) string { return `"` + strconv.Itoa(c.Version) + `"` }

// writeCustomer writes the live customer of the request's path as input
// makes it from the stored one and answers it. With If-Match, the stored
// version must be one it names, and stay so until the write (412
// otherwise). A patch is never applied over a write it did not see:
// without If-Match it is made again on the customer as stored after a
// concurrent write, as updateSubscription does; a PUT replaces whatever
// is stored.
func (s *Server) writeCustomer(w http.ResponseWriter, r *http.Request, input func(old billing.Customer) (billing.CustomerInput, error), patch bool) {
	im, err := parseIfMatch(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for attempt := 1; ; attempt++ {
		old, err := s.Store.GetCustomer(r.Context(), r.PathValue("idOrKey"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if old.DeletedAt != nil {
			s.writeError(w, r, &conflictError{fmt.Sprintf("customer %q was deleted at %s; a deleted customer can't change", old.Key, old.DeletedAt.Format(time.RFC3339))})
			return
		}
		in, err := input(old)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if in.Key == "" {
			in.Key = old.Key
		}
		if err := in.Validate(); err != nil {
			s.writeError(w, r, err)
			return
		}
		// createdAt may be sent back as read, but never changes: moving it
		// would rewrite whose usage the customer's subjects were.
		if in.CreatedAt != nil && !in.CreatedAt.Equal(old.CreatedAt) {
			s.writeError(w, r, &billing.ValidationError{What: "customer", Err: fmt.Errorf("createdAt: %s differs from the customer's %s; a customer's createdAt can't change (omit it)",
				in.CreatedAt.UTC().Format(time.RFC3339Nano), old.CreatedAt.UTC().Format(time.RFC3339Nano))})
			return
		}
		tag := customerETag(old)
		if im != nil && !im.matches(tag) {
			s.writeError(w, r, &preconditionError{etag: tag, msg: fmt.Sprintf("customer %q is at version %d (ETag %s), not the one If-Match names (%s): it changed since it was read. Read it again (GET), check the change still makes sense and retry with the new ETag",
				old.Key, old.Version, tag, im.header)})
			return
		}
		c := in.Customer(old.ID, old.CreatedAt, s.Now().UTC())
		if im != nil || patch {
			c.Version = old.Version
		}
		err = s.Store.UpdateCustomer(r.Context(), c)
		var stale *store.StaleError
		switch {
		case errors.As(err, &stale) && im != nil:
			s.writeError(w, r, &preconditionError{etag: `"` + strconv.Itoa(stale.Stored) + `"`, msg: fmt.Sprintf("customer %q changed while this change was made (it is at version %d now, If-Match names %s). Read it again (GET), check the change still makes sense and retry with the new ETag",
				old.Key, stale.Stored, im.header)})
			return
		case errors.As(err, &stale) && attempt < maxSubscriptionWrites:
			continue
		case err != nil:
			s.writeError(w, r, err)
			return
		}
		if c, err = s.Store.GetCustomer(r.Context(), c.ID); err != nil { // with its subject history
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("ETag", customerETag(c))
		s.writeJSON(w, r, http.StatusOK, c)
		return
	}
}

// deleteCustomer soft-deletes: the customer stays readable by id with its
// history, and its key and subjects are freed.
func (s *Server) deleteCustomer(w http.ResponseWriter, r *http.Request) {
	c, err := s.Store.GetCustomer(r.Context(), r.PathValue("idOrKey"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now()
	if err := s.Store.DeleteCustomer(r.Context(), c.ID, now); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Its subscriptions end with it (cancelled now, their history kept):
	// its subjects are free for another customer, whose usage they would
	// otherwise bill a second time. A failure here is mended by deleting
	// again.
	subs, err := s.Store.ListSubscriptions(r.Context(), store.SubscriptionFilter{CustomerID: c.ID})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, sub := range subs {
		if sub.StatusAt(now) == billing.SubscriptionCanceled {
			continue
		}
		// Read again if it changed concurrently (a plan change): the
		// cancellation must not undo that change, nor be undone by it.
		_, err := s.updateSubscription(r.Context(), sub.ID, nil, func(sub billing.Subscription) (billing.Subscription, bool, error) {
			if sub.StatusAt(now) == billing.SubscriptionCanceled {
				return sub, false, nil
			}
			canceled, err := sub.Cancel(billing.CancelNow, now)
			return canceled, err == nil, err
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// listCustomerUsers pages through a customer's users, oldest first
// (a customer has few: they are paged in memory).
func (s *Server) listCustomerUsers(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "users", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.Store.GetCustomer(r.Context(), r.PathValue("idOrKey"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	us, err := s.Store.ListUsers(r.Context(), c.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, paginate("users", us, func(u billing.User) []string { return []string{sortKeyTime(u.CreatedAt), u.ID} }, p))
}

func (s *Server) createCustomerUser(w http.ResponseWriter, r *http.Request) {
	var in billing.UserInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := in.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.Store.GetCustomer(r.Context(), r.PathValue("idOrKey"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.DeletedAt != nil {
		s.writeError(w, r, &conflictError{fmt.Sprintf("customer %q is deleted; a deleted customer can't get users", c.Key)})
		return
	}
	id, err := newID()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u := billing.User{ID: id, CustomerID: c.ID, Key: in.Key, Email: in.Email, Name: in.Name, CreatedAt: s.Now().UTC()}
	if err := s.Store.CreateUser(r.Context(), u); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusCreated, u)
}

// conflictError is a request that clashes with the state of what it names
// (a deleted customer, a published plan version): 409, with its message.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }
