package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// subscriptionETag is the entity tag of a subscription's stored version:
// it changes with every write of the subscription, not with what the API
// derives from the clock (status, currentPeriod).
func subscriptionETag(sub billing.Subscription) string {
	return `"` + strconv.Itoa(sub.Version) + `"`
}

// ifMatch is a request's If-Match header (RFC 9110, section 13.1.1): the
// entity tags a change is based on. A nil *ifMatch is no header, or "*"
// (any current version: what it changes exists).
type ifMatch struct {
	header string
	tags   []string // the strong tags, quotes included
}

// parseIfMatch reads the If-Match header; nil when there is none or it
// is "*". A value that is not a list of entity tags is a 400.
func parseIfMatch(h http.Header) (*ifMatch, error) {
	values := h.Values("If-Match")
	if len(values) == 0 {
		return nil, nil
	}
	im := &ifMatch{header: strings.Join(values, ", ")}
	for _, v := range strings.Split(im.header, ",") {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case v == "*":
			return nil, nil
		case strings.HasPrefix(v, `W/"`) && len(v) >= 4 && strings.HasSuffix(v, `"`):
			// A weak tag never matches: If-Match compares strongly.
		case strings.HasPrefix(v, `"`) && len(v) >= 2 && strings.HasSuffix(v, `"`) && !strings.Contains(v[1:len(v)-1], `"`):
			im.tags = append(im.tags, v)
		default:
			return nil, &queryError{fmt.Errorf(`If-Match: %q is not an entity tag; send the ETag of a GET of what you change as it came, quotes included (such as "3")`, v)}
		}
	}
	return im, nil
}

// matches reports whether tag is one of im's.
func (im *ifMatch) matches(tag string) bool {
	for _, t := range im.tags {
		if t == tag {
			return true
		}
	}
	return false
}

// preconditionError is a change refused (412) because the If-Match header
// does not name the current version of what it changes.
type preconditionError struct {
	msg string
	// etag is the current entity tag, sent back with the 412.
	etag string
}

func (e *preconditionError) Error() string { return e.msg }

// maxSubscriptionWrites bounds how often updateSubscription reads a
// subscription again after a concurrent write.
const maxSubscriptionWrites = 5

// updateSubscription reads subscription id, lets change derive its new
// state (and say whether there is anything to write) and writes it with a
// compare-and-swap on the version it read (see
// store.Subscriptions.UpdateSubscription). It returns the subscription as
// stored afterwards.
//
// With im (an If-Match header), the version read must be one im names,
// else a *preconditionError (412); a write by someone else between that
// read and the write is one too: the client's change was based on a state
// that is no longer current. Without im, a concurrent write makes it read
// the subscription again and redo change on what is now stored, as if the
// requests had come one after the other, up to maxSubscriptionWrites
// times; then the *store.StaleError (409). Either way no write is lost.
func (s *Server) updateSubscription(ctx context.Context, id string, im *ifMatch,
	change func(billing.Subscription) (billing.Subscription, bool, error)) (billing.Subscription, error) {
	for attempt := 1; ; attempt++ {
		sub, err := s.Store.GetSubscription(ctx, id)
		if err != nil {
			return sub, err
		}
		tag := subscriptionETag(sub)
		if im != nil && !im.matches(tag) {
			return sub, &preconditionError{etag: tag, msg: fmt.Sprintf("subscription %s is at version %d (ETag %s), not the one If-Match names (%s): it changed since it was read. Read it again (GET), check the change still makes sense and retry with the new ETag",
				sub.ID, sub.Version, tag, im.header)}
		}
		next, write, err := change(sub)
		if err != nil || !write {
			return next, err
		}
		err = s.Store.UpdateSubscription(ctx, next)
		var stale *store.StaleError
		switch {
		case err == nil:
			next.Version = sub.Version + 1
			return next, nil
		case errors.As(err, &stale) && im != nil:
			return sub, &preconditionError{etag: `"` + strconv.Itoa(stale.Stored) + `"`, msg: fmt.Sprintf("subscription %s changed while this change was made (it is at version %d now, If-Match names %s). Read it again (GET), check the change still makes sense and retry with the new ETag",
				sub.ID, stale.Stored, im.header)}
		case errors.As(err, &stale) && attempt < maxSubscriptionWrites:
			continue
		default:
			return sub, err
		}
	}
}
