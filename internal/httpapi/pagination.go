package httpapi

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Every list of the billing and administration API pages the same way:
// ?limit= (default defaultPageLimit, at most maxPageLimit) and ?after= (a
// previous page's nextAfter), answered as page[T]. A cursor is the sort key
// of the last item of the page it ends, not an offset, so that items
// created or deleted between two requests neither repeat nor go missing
// from the pages after it.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// page is the body of a paginated list: the items in the list's order and,
// when there are more, the cursor to pass as ?after= for the next page.
type page[T any] struct {
	Items     []T    `json:"items"`
	NextAfter string `json:"nextAfter,omitempty"`
}

// pageRequest is a list's ?limit= and ?after=.
type pageRequest struct {
	// Limit is how many items a page holds at most.
	Limit int
	// After is the sort key the page starts after (nil: from the start),
	// without the list's name.
	After []string
}

// parsePage reads ?limit= and ?after= for the list named list (the
// cursor names its list, so that one list's cursor is refused by
// another). width is the number of elements of the list's sort key.
func parsePage(r *http.Request, list string, width int) (pageRequest, error) {
	q := r.URL.Query()
	p := pageRequest{Limit: defaultPageLimit}
	var errs []error
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLimit {
			errs = append(errs, fmt.Errorf("limit: %q is not a whole number from 1 to %d", v, maxPageLimit))
		} else {
			p.Limit = n
		}
	}
	if v := q.Get("after"); v != "" {
		key, err := decodeCursor(v, list, width)
		if err != nil {
			errs = append(errs, err)
		}
		p.After = key
	}
	if err := errors.Join(errs...); err != nil {
		return p, &queryError{err}
	}
	return p, nil
}

// encodeCursor is the opaque cursor of the sort key key in list: the
// list's name and the key as a JSON array, in unpadded base64url. Sort
// keys are stored text, UTF-8 by the input checks, so JSON keeps them
// exactly.
func encodeCursor(list string, key []string) string {
	b, _ := json.Marshal(append([]string{list}, key...))
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of list, with a sort key of width elements.
func decodeCursor(v, list string, width int) ([]string, error) {
	bad := fmt.Errorf("after: %q is not a cursor of %s; pass the nextAfter of the previous page as it came, or leave after out to start from the first page", v, list)
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, bad
	}
	var key []string
	if err := json.Unmarshal(b, &key); err != nil || len(key) != width+1 || key[0] != list {
		return nil, bad
	}
	return key[1:], nil
}

// sortKeyTime writes t so that times compare as their text does: UTC,
// nanoseconds, fixed width (years 0001–9999, as every time tally keeps).
func sortKeyTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

// parseSortKeyTime reads a time written by sortKeyTime, for a store query.
func parseSortKeyTime(list, v string) (time.Time, error) {
	t, err := time.Parse("2006-01-02T15:04:05.000000000Z", v)
	if err != nil {
		return t, &queryError{fmt.Errorf("after: not a cursor of %s; pass the nextAfter of the previous page as it came", list)}
	}
	return t, nil
}

// sortKeyInt writes a non-negative n so that numbers compare as their
// text does.
func sortKeyInt(n int64) string { return fmt.Sprintf("%020d", n) }

// compareKeys orders sort keys element by element.
func compareKeys(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// paginate pages a list held in memory (a short one, or the part of a
// long one a store query already narrowed): it orders items by key,
// keeps those after p.After and cuts the page at p.Limit.
func paginate[T any](list string, items []T, key func(T) []string, p pageRequest) page[T] {
	items = slices.Clone(items)
	slices.SortStableFunc(items, func(a, b T) int { return compareKeys(key(a), key(b)) })
	if p.After != nil {
		i, _ := slices.BinarySearchFunc(items, p.After, func(it T, after []string) int {
			if compareKeys(key(it), after) <= 0 {
				return -1
			}
			return 1
		})
		items = items[i:]
	}
	return cutPage(list, items, key, p.Limit)
}

// cutPage makes a page of items, the ones after the cursor in order, of
// which there may be more than limit (a store query asks for limit+1 to
// learn whether there is a next page).
func cutPage[T any](list string, items []T, key func(T) []string, limit int) page[T] {
	if items == nil {
		items = []T{}
	}
	if len(items) <= limit {
		return page[T]{Items: items}
	}
	items = items[:limit]
	return page[T]{Items: items, NextAfter: encodeCursor(list, key(items[limit-1]))}
}

// itemsOf is the body of a list that is not paged: {"items": [...]}, the
// shape of page without a cursor (the portal tokens a revocation ended,
// the audit trail, which pages by sequence number).
type itemsOf[T any] struct {
	Items []T `json:"items"`
}
