package meter

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Bounds of a meter definition made or changed through the API. They keep
// one admin request from making every ingest and query slow (a thousand
// group-by paths evaluated on each event) or the store hold megabytes of
// text per meter.
const (
	// MaxNameLen is the longest name, in characters.
	MaxNameLen = 256
	// MaxDescriptionLen is the longest description, in characters.
	MaxDescriptionLen = 4096
	// MaxEventTypeLen is the longest eventType, in bytes.
	MaxEventTypeLen = 256
	// MaxPathLen is the longest JSONPath (valueProperty, each groupBy
	// value), in bytes.
	MaxPathLen = 256
	// MaxGroupBy is the most groupBy keys a meter has.
	MaxGroupBy = 20
	// MaxGroupKeyLen is the longest groupBy key, in bytes.
	MaxGroupKeyLen = 64
)

// ValidateDefinition is Validate with the bounds above: what a new or
// changed definition must satisfy. It joins every problem found.
func (m Meter) ValidateDefinition() error {
	var errs []error
	if len(m.GroupBy) > MaxGroupBy {
		errs = append(errs, fmt.Errorf("groupBy: %d keys, at most %d allowed", len(m.GroupBy), MaxGroupBy))
		// Each key's own problems would only bury that one.
		m.GroupBy = nil
	}
	errs = append(errs, m.problems(true)...)
	if n := utf8.RuneCountInString(m.Name); n > MaxNameLen {
		errs = append(errs, fmt.Errorf("name: %d characters, at most %d allowed", n, MaxNameLen))
	}
	if n := utf8.RuneCountInString(m.Description); n > MaxDescriptionLen {
		errs = append(errs, fmt.Errorf("description: %d characters, at most %d allowed", n, MaxDescriptionLen))
	}
	if len(m.EventType) > MaxEventTypeLen {
		errs = append(errs, fmt.Errorf("eventType: %d bytes, at most %d allowed", len(m.EventType), MaxEventTypeLen))
	}
	if len(m.ValueProperty) > MaxPathLen {
		errs = append(errs, fmt.Errorf("valueProperty: %d bytes, at most %d allowed", len(m.ValueProperty), MaxPathLen))
	}
	for _, name := range sortedKeys(m.GroupBy) {
		if len(name) > MaxGroupKeyLen {
			errs = append(errs, fmt.Errorf("groupBy: a key of %d bytes, at most %d allowed", len(name), MaxGroupKeyLen))
		}
		if p := m.GroupBy[name]; len(p) > MaxPathLen {
			errs = append(errs, fmt.Errorf("groupBy.%.64s: %d bytes, at most %d allowed", name, len(p), MaxPathLen))
		}
	}
	return errors.Join(errs...)
}
