// Package usage answers usage queries: it turns a meter's per-minute rollups
// into rows per window, subject and group (OpenMeter v1 compatible). The core,
// Compute, is pure; Service reads the store and calls it.
package usage

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/meter"
)

// SubjectGroup is the GroupBy name that groups rows by subject. Meters can't
// declare a group-by key of that name.
const SubjectGroup = "subject"

// Query asks for one meter's usage.
type Query struct {
	Meter meter.Meter
	// From and To bound event time to [From, To) when set. They must be on
	// whole minutes, as usage is rolled up per minute.
	From, To *time.Time
	// WindowSize splits usage into windows; "" gives one row per group for
	// the whole range.
	WindowSize WindowSize
	// TimeZone is the calendar windows follow; nil means UTC.
	TimeZone *time.Location
	// Subjects keeps only these subjects (all when empty).
	Subjects []string
	// Within narrows the subjects it has an entry for to the minutes of
	// their spans (a customer's subjects to the minutes the customer owned
	// them: billing.Customer.UsageSubjects); a subject without an entry is
	// not narrowed.
	Within map[string][]billing.Span
	// GroupBy lists the meter's group-by keys, or SubjectGroup, to split
	// rows by. Other groups are merged together. Duplicates are ignored.
	GroupBy []string
	// FilterGroupBy keeps only usage whose group value for each key (a key
	// of Meter.GroupBy) equals the given value. Usage without a value for
	// the key is left out.
	FilterGroupBy map[string]string
}

// Validate checks the query and joins every problem found; each names the
// field at fault.
func (q Query) Validate() error {
	var errs []error
	if !q.Meter.Aggregation.Valid() {
		errs = append(errs, fmt.Errorf("meter: aggregation %q of meter %s is not valid", q.Meter.Aggregation, q.Meter.Slug))
	}
	if q.WindowSize != "" && !q.WindowSize.Valid() {
		errs = append(errs, fmt.Errorf("windowSize: %q is not one of %s", string(q.WindowSize), joinWindowSizes()))
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", q.From}, {"to", q.To}} {
		if f.t == nil {
			continue
		}
		if err := bounds.CheckTime(*f.t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			continue
		}
		if !f.t.Truncate(time.Minute).Equal(*f.t) {
			errs = append(errs, fmt.Errorf("%s: %s is not on a whole minute; usage is rolled up per minute, so from and to must have zero seconds", f.name, f.t.Format(time.RFC3339Nano)))
		}
	}
	if q.From != nil && q.To != nil && !q.From.Before(*q.To) {
		errs = append(errs, fmt.Errorf("from: %s is not before to %s", q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano)))
	}
	// Every key of the meter and subject, each once, is as many as a
	// query can use; more only lengthen the list of unknown keys.
	groupBy := q.GroupBy
	if limit := max(meter.MaxGroupBy, len(q.Meter.GroupBy)) + 1; len(groupBy) > limit {
		errs = append(errs, fmt.Errorf("groupBy: %d entries, at most %d allowed (the meter's keys and subject)", len(groupBy), limit))
		groupBy = nil
	}
	for _, k := range groupBy {
		if k == SubjectGroup {
			continue
		}
		if _, ok := q.Meter.GroupBy[k]; !ok {
			errs = append(errs, fmt.Errorf("groupBy: unknown key %q: %s", k, q.groupKeysHint(true)))
		}
	}
	for _, k := range sortedKeys(q.FilterGroupBy) {
		if _, ok := q.Meter.GroupBy[k]; !ok {
			msg := fmt.Sprintf("filterGroupBy: unknown key %q: %s", k, q.groupKeysHint(false))
			if k == SubjectGroup {
				msg += " (filter subjects with the subject parameter)"
			}
			errs = append(errs, errors.New(msg))
		}
	}
	return errors.Join(errs...)
}

func (q Query) groupKeysHint(withSubject bool) string {
	keys := sortedKeys(q.Meter.GroupBy)
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%q", k)
	}
	if withSubject {
		keys = append(keys, fmt.Sprintf("%q", SubjectGroup))
	}
	if len(keys) == 0 {
		return fmt.Sprintf("meter %s has no group-by keys", q.Meter.Slug)
	}
	return fmt.Sprintf("meter %s allows %s", q.Meter.Slug, strings.Join(keys, ", "))
}

// Row is one result row: the usage of one window (or the whole range) for
// one subject and group. JSON field names follow OpenMeter v1 (a
// decimal.Decimal marshals as a quoted string unless the caller says
// otherwise).
type Row struct {
	Value       decimal.Decimal `json:"value"`
	WindowStart time.Time       `json:"windowStart"`
	WindowEnd   time.Time       `json:"windowEnd"`
	// Subject is set when the query groups by subject.
	Subject *string `json:"subject"`
	// GroupBy has one entry per requested group-by key other than
	// "subject"; the value is nil for usage that had no value for the key.
	// It is never nil.
	GroupBy map[string]*string `json:"groupBy"`
}

// Result is a query's answer.
type Result struct {
	From, To   *time.Time
	WindowSize WindowSize
	Rows       []Row
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
