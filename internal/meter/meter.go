// Package meter defines meters — the rules that turn usage events into numbers —
// and the aggregation states that rollups keep. Everything here is pure: no
// I/O, no clock.
package meter

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ohler55/ojg/jp"

	"github.com/tally-metering/tally/internal/bounds"
)

// Aggregation says how a meter combines the values of its events.
type Aggregation string

// The aggregations a meter can use.
const (
	Sum         Aggregation = "SUM"
	Count       Aggregation = "COUNT"
	UniqueCount Aggregation = "UNIQUE_COUNT"
	Avg         Aggregation = "AVG"
	Min         Aggregation = "MIN"
	Max         Aggregation = "MAX"
	Latest      Aggregation = "LATEST"
)

// Aggregations lists every valid aggregation, in documentation order.
var Aggregations = []Aggregation{Sum, Count, UniqueCount, Avg, Min, Max, Latest}

// Valid reports whether a is one of the known aggregations.
func (a Aggregation) Valid() bool {
	for _, x := range Aggregations {
		if a == x {
			return true
		}
	}
	return false
}

// NeedsValue reports whether the aggregation reads a value from each event.
func (a Aggregation) NeedsValue() bool { return a != Count }

// Meter is a meter definition as users write it (API or config file).
type Meter struct {
	ID            string            `json:"id"`
	Slug          string            `json:"slug"`
	Name          string            `json:"name,omitempty"`
	Description   string            `json:"description,omitempty"`
	EventType     string            `json:"eventType"`
	Aggregation   Aggregation       `json:"aggregation"`
	ValueProperty string            `json:"valueProperty,omitempty"`
	GroupBy       map[string]string `json:"groupBy,omitempty"`
	EventFrom     *time.Time        `json:"eventFrom,omitempty"`
	// ManagedBy is "config" for meters declared in the config file (they
	// can't be changed or deleted through the API) and "api" otherwise.
	ManagedBy string    `json:"managedBy"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Managers of a meter definition.
const (
	ManagedByAPI    = "api"
	ManagedByConfig = "config"
)

var (
	slugRE     = regexp.MustCompile(`^[a-z0-9]+(?:_[a-z0-9]+)*$`)
	groupKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// MaxSlugLen is the longest meter slug.
const MaxSlugLen = 64

// Validate checks the user-settable fields and joins every problem found.
// Paths must also keep to the rule that bounds their cost (see
// checkPathCost). It does not apply the bounds of ValidateDefinition, so
// that a meter stored before them still loads.
func (m Meter) Validate() error { return m.validate(true) }

// validate is Validate; with costRule false, paths need only be valid
// JSONPath, as they had to be before the cost rule, so that meters stored
// then still load.
func (m Meter) validate(costRule bool) error { return errors.Join(m.problems(costRule)...) }

func (m Meter) problems(costRule bool) []error {
	var errs []error
	switch {
	case m.Slug == "":
		errs = append(errs, errors.New("slug: required"))
	case len(m.Slug) > MaxSlugLen:
		errs = append(errs, fmt.Errorf("slug: %d characters, at most %d allowed", len(m.Slug), MaxSlugLen))
	case !slugRE.MatchString(m.Slug):
		errs = append(errs, fmt.Errorf("slug: %q must be lowercase letters and digits in words joined by single underscores (^[a-z0-9]+(?:_[a-z0-9]+)*$)", m.Slug))
	}
	if strings.TrimSpace(m.EventType) == "" {
		errs = append(errs, errors.New("eventType: required"))
	}
	if !m.Aggregation.Valid() {
		errs = append(errs, fmt.Errorf("aggregation: %q is not one of %s", m.Aggregation, joinAggs()))
	}
	if m.Aggregation.Valid() && m.Aggregation.NeedsValue() && m.ValueProperty == "" {
		errs = append(errs, fmt.Errorf("valueProperty: required for aggregation %s", m.Aggregation))
	}
	if m.ValueProperty != "" {
		if err := checkPath(m.ValueProperty, costRule); err != nil {
			errs = append(errs, fmt.Errorf("valueProperty: %w", err))
		}
	}
	if m.EventFrom != nil {
		if err := bounds.CheckTime(*m.EventFrom); err != nil {
			errs = append(errs, fmt.Errorf("eventFrom: %w", err))
		}
	}
	for _, name := range sortedKeys(m.GroupBy) {
		if !groupKeyRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("groupBy: key %q must match ^[A-Za-z_][A-Za-z0-9_]*$", name))
		}
		if name == "subject" {
			errs = append(errs, errors.New(`groupBy: key "subject" is reserved (every query can group by subject)`))
		}
		if err := checkPath(m.GroupBy[name], costRule); err != nil {
			errs = append(errs, fmt.Errorf("groupBy.%s: %w", name, err))
		}
	}
	return errs
}

// SameComputation reports whether a and b count events the same way, so that
// rollups built for one are valid for the other.
func SameComputation(a, b Meter) bool {
	if a.EventType != b.EventType || a.Aggregation != b.Aggregation || a.ValueProperty != b.ValueProperty {
		return false
	}
	if (a.EventFrom == nil) != (b.EventFrom == nil) || (a.EventFrom != nil && !a.EventFrom.Equal(*b.EventFrom)) {
		return false
	}
	if len(a.GroupBy) != len(b.GroupBy) {
		return false
	}
	for k, v := range a.GroupBy {
		if w, ok := b.GroupBy[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func checkPath(p string, costRule bool) error {
	if !strings.HasPrefix(p, "$") {
		return fmt.Errorf("%q is not a JSONPath: it must start with $", p)
	}
	x, err := jp.ParseString(p)
	if err != nil {
		return fmt.Errorf("%q is not a valid JSONPath: %v", p, err)
	}
	if !costRule {
		return nil
	}
	if err := checkPathCost(x); err != nil {
		return fmt.Errorf("%q %w", p, err)
	}
	return nil
}

// checkPathCost refuses the paths whose cost on an event's data can't be
// bounded by a small multiple of the data's size. Every step of a path
// that passes maps a set of distinct nodes to a set of distinct nodes, so
// no step handles more nodes than the data has:
//
//   - at most one recursive descent (..): each further one visits the
//     subtree under every node the previous one found, which is depth
//     times the data (measured: 2.4 s for $..x..tokens on a 1 MiB event
//     nested 31 deep; see docs/api.md);
//   - no filter expressions ([?(...)]) or procedures: they evaluate
//     paths, with descents or from the root, once per node;
//   - a union names each member once and lists indices of one sign only,
//     so that it can't select the same element twice ($[0,-1] does, on a
//     one-element array): repeated, each such union would double the
//     results, 2^32 at the data's greatest depth.
func checkPathCost(x jp.Expr) error {
	descents := 0
	for _, f := range x {
		switch f := f.(type) {
		case jp.Root, jp.At, jp.Bracket, jp.Child, jp.Nth, jp.Wildcard, jp.Slice:
		case jp.Descent:
			descents++
			if descents > 1 {
				return errors.New("uses recursive descent (..) more than once; a meter path may use it at most once")
			}
		case jp.Union:
			if err := checkUnion(f); err != nil {
				return err
			}
		case *jp.Filter:
			return errors.New("uses a filter expression ([?(...)]), which meter paths don't support: its cost can't be bounded")
		default:
			return fmt.Errorf("uses %s, which meter paths don't support", jp.Expr{f})
		}
	}
	return nil
}

// checkUnion refuses a union that could select one element twice.
func checkUnion(u jp.Union) error {
	seen := make(map[any]bool, len(u))
	neg, nonNeg := false, false
	for _, m := range u {
		if seen[m] {
			return fmt.Errorf("lists %s twice in the union %s; a union may list each member once", jp.Expr{jp.Union{m}}, jp.Expr{u})
		}
		seen[m] = true
		if i, ok := m.(int64); ok {
			if i < 0 {
				neg = true
			} else {
				nonNeg = true
			}
		}
	}
	if neg && nonNeg {
		return fmt.Errorf("mixes negative and non-negative indices in the union %s, which could select one element twice; use indices of one sign", jp.Expr{u})
	}
	return nil
}

func joinAggs() string {
	s := make([]string, len(Aggregations))
	for i, a := range Aggregations {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// sortedKeys lists a map's keys in order.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
