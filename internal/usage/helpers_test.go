package usage

import (
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

const testMeterID = "m1"

// testMeter returns a valid meter with the given aggregation and group-by
// keys.
func testMeter(agg meter.Aggregation, groupKeys ...string) meter.Meter {
	m := meter.Meter{
		ID:          testMeterID,
		Slug:        "api_calls",
		EventType:   "request",
		Aggregation: agg,
	}
	if agg.NeedsValue() {
		m.ValueProperty = "$.value"
	}
	if len(groupKeys) > 0 {
		m.GroupBy = map[string]string{}
		for _, k := range groupKeys {
			m.GroupBy[k] = "$." + k
		}
	}
	return m
}

// ev is an event as it reaches the rollups.
type ev struct {
	subject string
	groups  map[string]string
	at      string // RFC 3339
	value   string // decimal (or the unique value)
	seq     int64  // ingestion order; 0 = position in the list
}

// rollupsOf builds the per-minute rollups and distinct values the ingest
// pipeline would store for events of a meter with aggregation agg.
func rollupsOf(t testing.TB, agg meter.Aggregation, events []ev) ([]store.Rollup, []store.UniqueValue) {
	t.Helper()
	type key struct {
		subject, group string
		minute         int64
	}
	states := map[key]*meter.State{}
	uniq := map[key]map[string]bool{}
	var keys []key
	for i, e := range events {
		at := ts(t, e.at)
		k := key{e.subject, meter.EncodeGroupKey(e.groups), at.Truncate(time.Minute).Unix()}
		s, ok := states[k]
		if !ok {
			s = &meter.State{}
			states[k] = s
			uniq[k] = map[string]bool{}
			keys = append(keys, k)
		}
		seq := e.seq
		if seq == 0 {
			seq = int64(i + 1)
		}
		switch agg {
		case meter.Count:
			s.AddCount()
		case meter.UniqueCount:
			s.AddCount()
			uniq[k][e.value] = true
		default:
			s.Add(decimal.RequireFromString(e.value), at.UnixMicro(), seq)
		}
	}
	var rollups []store.Rollup
	var uniques []store.UniqueValue
	for _, k := range keys {
		rollups = append(rollups, store.Rollup{MeterID: testMeterID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, State: *states[k]})
		vals := make([]string, 0, len(uniq[k]))
		for v := range uniq[k] {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		for _, v := range vals {
			uniques = append(uniques, store.UniqueValue{MeterID: testMeterID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, Value: v})
		}
	}
	return rollups, uniques
}

func ptr[T any](v T) *T { return &v }

func tp(t testing.TB, s string) *time.Time {
	t.Helper()
	v := ts(t, s)
	return &v
}
