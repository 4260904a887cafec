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
// It does not apply the bounds of ValidateDefinition, so that a meter
// stored before them still loads.
func (m Meter) Validate() error { return errors.Join(m.problems()...) }

func (m Meter) problems() []error {
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
		if err := checkPath(m.ValueProperty); err != nil {
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
		if err := checkPath(m.GroupBy[name]); err != nil {
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

func checkPath(p string) error {
	if !strings.HasPrefix(p, "$") {
		return fmt.Errorf("%q is not a JSONPath: it must start with $", p)
	}
	if _, err := jp.ParseString(p); err != nil {
		return fmt.Errorf("%q is not a valid JSONPath: %v", p, err)
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
