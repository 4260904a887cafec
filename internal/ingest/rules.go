package ingest

import (
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// rule is a cancellation rule compiled for matching.
type rule struct {
	store.CancellationRule
	// subjects is nil when the rule selects every subject.
	subjects map[string]bool
}

func compileRule(r store.CancellationRule) *rule {
	c := &rule{CancellationRule: r}
	if r.CustomerID != "" || len(r.Subjects) > 0 {
		c.subjects = make(map[string]bool, len(r.Subjects))
		for _, s := range r.Subjects {
			c.subjects[s] = true
		}
	}
	return c
}

// selects reports whether the rule selects an event's usage for a meter:
// the event of subject, timed t, ingested at ingested, in the group
// groupKey of that meter.
func (r *rule) selects(meterID, subject string, t, ingested time.Time, groupKey string) bool {
	if r.MeterID != "" && r.MeterID != meterID {
		return false
	}
	if r.subjects != nil && !r.subjects[subject] {
		return false
	}
	if spans, ok := r.Within[subject]; ok {
		in := false
		for _, sp := range spans {
			if !t.Before(sp.From) && t.Before(sp.To) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if !inRange(t, r.EventFrom, r.EventTo) || !inRange(ingested, r.IngestedFrom, r.IngestedTo) {
		return false
	}
	if len(r.GroupBy) > 0 {
		vals, err := meter.DecodeGroupKey(groupKey)
		if err != nil {
			return false
		}
		for k, v := range r.GroupBy {
			if got, ok := vals[k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}

// inRange reports whether t lies in [from, to), an open end not bounding.
func inRange(t time.Time, from, to *time.Time) bool {
	return (from == nil || !t.Before(*from)) && (to == nil || t.Before(*to))
}
