package usage

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// want is an expected row, written compactly.
type want struct {
	v, start, end string
	subject       *string
	groups        map[string]*string
}

func wantRows(t testing.TB, ws []want) []Row {
	t.Helper()
	rows := make([]Row, 0, len(ws))
	for _, w := range ws {
		g := w.groups
		if g == nil {
			g = map[string]*string{}
		}
		rows = append(rows, Row{
			Value:       decimal.RequireFromString(w.v),
			WindowStart: ts(t, w.start),
			WindowEnd:   ts(t, w.end),
			Subject:     w.subject,
			GroupBy:     g,
		})
	}
	return rows
}

func TestCompute(t *testing.T) {
	// Events of a meter grouped by model and region.
	grouped := []ev{
		{subject: "s1", groups: map[string]string{"model": "gpt", "region": "eu"}, at: "2026-01-15T10:00:00Z", value: "1"},
		{subject: "s1", groups: map[string]string{"model": "gpt", "region": "us"}, at: "2026-01-15T10:10:00Z", value: "2"},
		{subject: "s2", groups: map[string]string{"model": "gpt", "region": "eu"}, at: "2026-01-15T11:00:00Z", value: "4"},
		{subject: "s2", groups: map[string]string{"model": "claude"}, at: "2026-01-15T11:05:00Z", value: "8"},
		{subject: "s1", groups: nil, at: "2026-01-15T11:30:00Z", value: "16"},
		{subject: "s3", groups: map[string]string{"model": "claude", "region": ""}, at: "2026-01-15T10:20:00Z", value: "32"},
	}

	tests := []struct {
		name    string
		agg     meter.Aggregation
		groups  []string // meter group-by keys
		events  []ev
		q       Query // Meter is filled in
		want    []want
		wantErr string
	}{
		// Aggregations.
		{
			name: "sum over whole range",
			agg:  meter.Sum,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:10Z", value: "1.5"},
				{subject: "s1", at: "2026-01-15T10:05:00Z", value: "2.25"},
				{subject: "s2", at: "2026-01-15T11:30:59Z", value: "3"},
			},
			want: []want{{v: "6.75", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:31:00Z"}},
		},
		{
			name: "sum keeps many decimal places",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "0.1"},
				{at: "2026-01-15T10:01:00Z", value: "0.2"},
				{at: "2026-01-15T10:02:00Z", value: "0.000000000000000000000000001"},
			},
			want: []want{{v: "0.300000000000000000000000001", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:03:00Z"}},
		},
		{
			name: "count",
			agg:  meter.Count,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:10Z"},
				{subject: "s1", at: "2026-01-15T10:00:20Z"},
				{subject: "s2", at: "2026-01-15T11:30:00Z"},
			},
			want: []want{{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:31:00Z"}},
		},
		{
			name: "unique count across minutes of an hour",
			agg:  meter.UniqueCount,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "a"},
				{subject: "s1", at: "2026-01-15T10:00:30Z", value: "b"},
				{subject: "s1", at: "2026-01-15T10:01:00Z", value: "a"},
				{subject: "s2", at: "2026-01-15T10:59:00Z", value: "a"},
				{subject: "s1", at: "2026-01-15T11:00:00Z", value: "a"},
			},
			q: Query{WindowSize: WindowSizeHour},
			want: []want{
				{v: "2", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "1", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z"},
			},
		},
		{
			name: "within narrows a subject to its spans",
			agg:  meter.Sum,
			events: []ev{
				{subject: "s1", at: "2026-01-15T09:59:59Z", value: "1"},
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "2"},
				{subject: "s1", at: "2026-01-15T10:09:59Z", value: "4"},
				{subject: "s1", at: "2026-01-15T10:10:00Z", value: "8"},
				{subject: "s1", at: "2026-01-15T10:30:00Z", value: "16"},
				{subject: "s2", at: "2026-01-15T10:10:00Z", value: "32"},
			},
			q: Query{Subjects: []string{"s1", "s2"}, GroupBy: []string{SubjectGroup}, Within: map[string][]billing.Span{
				"s1": {{From: ts(t, "2026-01-15T10:00:00Z"), To: ts(t, "2026-01-15T10:10:00Z")}, {From: ts(t, "2026-01-15T10:30:00Z"), To: ts(t, "2026-01-15T10:31:00Z")}},
			}},
			want: []want{
				{v: "22", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:31:00Z", subject: ptr("s1")},
				{v: "32", start: "2026-01-15T10:10:00Z", end: "2026-01-15T10:11:00Z", subject: ptr("s2")},
			},
		},
		{
			name: "within: unique count of the owned minutes only",
			agg:  meter.UniqueCount,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "a"},
				{subject: "s1", at: "2026-01-15T10:05:00Z", value: "b"},
				{subject: "s1", at: "2026-01-15T10:06:00Z", value: "a"},
			},
			q:    Query{Within: map[string][]billing.Span{"s1": {{From: ts(t, "2026-01-15T10:05:00Z"), To: ts(t, "2026-01-15T11:00:00Z")}}}},
			want: []want{{v: "2", start: "2026-01-15T10:05:00Z", end: "2026-01-15T10:07:00Z"}},
		},
		{
			name: "unique count across days",
			agg:  meter.UniqueCount,
			events: []ev{
				{at: "2026-01-01T10:00:00Z", value: "a"},
				{at: "2026-01-01T23:59:00Z", value: "a"},
				{at: "2026-01-02T00:00:00Z", value: "a"},
				{at: "2026-01-02T12:00:00Z", value: "b"},
				{at: "2026-01-03T12:00:00Z", value: "b"},
			},
			q: Query{WindowSize: WindowSizeDay},
			want: []want{
				{v: "1", start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z"},
				{v: "2", start: "2026-01-02T00:00:00Z", end: "2026-01-03T00:00:00Z"},
				{v: "1", start: "2026-01-03T00:00:00Z", end: "2026-01-04T00:00:00Z"},
			},
		},
		{
			name: "unique count across days without window",
			agg:  meter.UniqueCount,
			events: []ev{
				{at: "2026-01-01T10:00:00Z", value: "a"},
				{at: "2026-01-02T12:00:00Z", value: "b"},
				{at: "2026-01-03T12:00:00Z", value: "b"},
				{at: "2026-01-09T12:00:00Z", value: "a"},
			},
			want: []want{{v: "2", start: "2026-01-01T10:00:00Z", end: "2026-01-09T12:01:00Z"}},
		},
		{
			name: "unique count across months",
			agg:  meter.UniqueCount,
			events: []ev{
				{at: "2026-01-31T23:59:00Z", value: "a"},
				{at: "2026-02-01T00:00:00Z", value: "a"},
				{at: "2026-02-15T00:00:00Z", value: "b"},
				{at: "2026-02-28T23:59:00Z", value: "a"},
			},
			q: Query{WindowSize: WindowSizeMonth},
			want: []want{
				{v: "1", start: "2026-01-01T00:00:00Z", end: "2026-02-01T00:00:00Z"},
				{v: "2", start: "2026-02-01T00:00:00Z", end: "2026-03-01T00:00:00Z"},
			},
		},
		{
			name: "unique count by subject",
			agg:  meter.UniqueCount,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "a"},
				{subject: "s1", at: "2026-01-16T10:00:00Z", value: "b"},
				{subject: "s2", at: "2026-01-15T10:00:00Z", value: "a"},
			},
			q: Query{GroupBy: []string{"subject"}},
			want: []want{
				{v: "2", start: "2026-01-15T10:00:00Z", end: "2026-01-16T10:01:00Z", subject: ptr("s1")},
				{v: "1", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:01:00Z", subject: ptr("s2")},
			},
		},
		{
			name: "avg of thirds rounds at AvgScale",
			agg:  meter.Avg,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-15T10:01:00Z", value: "0"},
				{at: "2026-01-15T10:02:00Z", value: "0"},
			},
			want: []want{{v: "0.33333333333333333333", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:03:00Z"}},
		},
		{
			name: "avg is merged sum over merged count, not a mean of means",
			agg:  meter.Avg,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-15T10:00:10Z", value: "2"},
				{at: "2026-01-15T10:01:00Z", value: "6"},
				{at: "2026-01-15T11:00:00Z", value: "0.1"},
				{at: "2026-01-15T11:59:00Z", value: "0.2"},
			},
			q: Query{WindowSize: WindowSizeHour},
			want: []want{
				{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "0.15", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z"},
			},
		},
		{
			name: "min",
			agg:  meter.Min,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "5"},
				{subject: "s2", at: "2026-01-15T10:00:00Z", value: "-2.5"},
				{subject: "s1", at: "2026-01-15T10:03:00Z", value: "3"},
			},
			want: []want{{v: "-2.5", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:04:00Z"}},
		},
		{
			name: "max",
			agg:  meter.Max,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "5"},
				{subject: "s2", at: "2026-01-15T10:00:00Z", value: "5.000001"},
				{subject: "s1", at: "2026-01-15T10:03:00Z", value: "-3"},
			},
			want: []want{{v: "5.000001", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:04:00Z"}},
		},
		{
			name: "latest by event time then ingestion order",
			agg:  meter.Latest,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:05:00Z", value: "5", seq: 10},
				{subject: "s2", at: "2026-01-15T10:05:00Z", value: "9", seq: 11},
				{subject: "s3", at: "2026-01-15T10:05:00Z", value: "4", seq: 3},
				{subject: "s1", at: "2026-01-15T10:03:00Z", value: "7", seq: 20}, // arrived late
				{subject: "s1", at: "2026-01-15T11:01:00Z", value: "1", seq: 21},
			},
			q: Query{WindowSize: WindowSizeHour},
			want: []want{
				{v: "9", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "1", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z"},
			},
		},

		// Window sizes in UTC.
		{
			name: "minute windows omit empty minutes",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:00:10Z", value: "1"},
				{at: "2026-01-15T10:00:50Z", value: "2"},
				{at: "2026-01-15T10:02:00Z", value: "4"},
			},
			q: Query{WindowSize: WindowSizeMinute},
			want: []want{
				{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:01:00Z"},
				{v: "4", start: "2026-01-15T10:02:00Z", end: "2026-01-15T10:03:00Z"},
			},
		},
		{
			name: "hour windows",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-15T10:59:00Z", value: "2"},
				{at: "2026-01-15T13:00:00Z", value: "4"},
			},
			q: Query{WindowSize: WindowSizeHour},
			want: []want{
				{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "4", start: "2026-01-15T13:00:00Z", end: "2026-01-15T14:00:00Z"},
			},
		},
		{
			name: "day windows",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T00:00:00Z", value: "1"},
				{at: "2026-01-15T23:59:00Z", value: "2"},
				{at: "2026-01-16T00:00:00Z", value: "4"},
			},
			q: Query{WindowSize: WindowSizeDay},
			want: []want{
				{v: "3", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z"},
				{v: "4", start: "2026-01-16T00:00:00Z", end: "2026-01-17T00:00:00Z"},
			},
		},
		{
			name: "month windows",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-31T23:59:00Z", value: "1"},
				{at: "2026-02-01T00:00:00Z", value: "2"},
				{at: "2026-02-28T23:59:00Z", value: "4"},
				{at: "2026-12-31T23:59:00Z", value: "8"},
			},
			q: Query{WindowSize: WindowSizeMonth},
			want: []want{
				{v: "1", start: "2026-01-01T00:00:00Z", end: "2026-02-01T00:00:00Z"},
				{v: "6", start: "2026-02-01T00:00:00Z", end: "2026-03-01T00:00:00Z"},
				{v: "8", start: "2026-12-01T00:00:00Z", end: "2027-01-01T00:00:00Z"},
			},
		},

		// Time zones.
		{
			name: "berlin day windows across spring forward",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-03-28T22:59:00Z", value: "1"}, // 23:59 CET on the 28th
				{at: "2026-03-28T23:00:00Z", value: "2"}, // 00:00 CET on the 29th
				{at: "2026-03-29T21:59:00Z", value: "4"}, // 23:59 CEST on the 29th
				{at: "2026-03-29T22:00:00Z", value: "8"}, // 00:00 CEST on the 30th
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "Europe/Berlin")},
			want: []want{
				{v: "1", start: "2026-03-28T00:00:00+01:00", end: "2026-03-29T00:00:00+01:00"},
				{v: "6", start: "2026-03-29T00:00:00+01:00", end: "2026-03-30T00:00:00+02:00"},
				{v: "8", start: "2026-03-30T00:00:00+02:00", end: "2026-03-31T00:00:00+02:00"},
			},
		},
		{
			name: "berlin day windows across fall back",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-10-24T21:59:00Z", value: "1"}, // 23:59 CEST on the 24th
				{at: "2026-10-24T22:00:00Z", value: "2"}, // 00:00 CEST on the 25th
				{at: "2026-10-25T22:59:00Z", value: "4"}, // 23:59 CET on the 25th
				{at: "2026-10-25T23:00:00Z", value: "8"}, // 00:00 CET on the 26th
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "Europe/Berlin")},
			want: []want{
				{v: "1", start: "2026-10-24T00:00:00+02:00", end: "2026-10-25T00:00:00+02:00"},
				{v: "6", start: "2026-10-25T00:00:00+02:00", end: "2026-10-26T00:00:00+01:00"},
				{v: "8", start: "2026-10-26T00:00:00+01:00", end: "2026-10-27T00:00:00+01:00"},
			},
		},
		{
			name: "berlin repeated hour is two hour windows",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-10-25T00:30:00Z", value: "1"}, // 02:30 CEST
				{at: "2026-10-25T01:30:00Z", value: "2"}, // 02:30 CET
			},
			q: Query{WindowSize: WindowSizeHour, TimeZone: mustLoc(t, "Europe/Berlin")},
			want: []want{
				{v: "1", start: "2026-10-25T02:00:00+02:00", end: "2026-10-25T02:00:00+01:00"},
				{v: "2", start: "2026-10-25T02:00:00+01:00", end: "2026-10-25T03:00:00+01:00"},
			},
		},
		{
			name: "new york day windows across spring forward",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-03-08T04:59:00Z", value: "1"}, // 23:59 EST on the 7th
				{at: "2026-03-08T05:00:00Z", value: "2"}, // 00:00 EST on the 8th
				{at: "2026-03-09T03:59:00Z", value: "4"}, // 23:59 EDT on the 8th
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "America/New_York")},
			want: []want{
				{v: "1", start: "2026-03-07T00:00:00-05:00", end: "2026-03-08T00:00:00-05:00"},
				{v: "6", start: "2026-03-08T00:00:00-05:00", end: "2026-03-09T00:00:00-04:00"},
			},
		},
		{
			name: "kolkata hour windows start at local :00",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T09:29:00Z", value: "1"},
				{at: "2026-01-15T09:30:00Z", value: "2"},
				{at: "2026-01-15T10:29:00Z", value: "4"},
				{at: "2026-01-15T10:30:00Z", value: "8"},
			},
			q: Query{WindowSize: WindowSizeHour, TimeZone: mustLoc(t, "Asia/Kolkata")},
			want: []want{
				{v: "1", start: "2026-01-15T08:30:00Z", end: "2026-01-15T09:30:00Z"},
				{v: "6", start: "2026-01-15T09:30:00Z", end: "2026-01-15T10:30:00Z"},
				{v: "8", start: "2026-01-15T10:30:00Z", end: "2026-01-15T11:30:00Z"},
			},
		},
		{
			name: "kathmandu day windows",
			agg:  meter.Count,
			events: []ev{
				{at: "2026-01-15T18:14:00Z"},
				{at: "2026-01-15T18:15:00Z"},
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "Asia/Kathmandu")},
			want: []want{
				{v: "1", start: "2026-01-15T00:00:00+05:45", end: "2026-01-16T00:00:00+05:45"},
				{v: "1", start: "2026-01-16T00:00:00+05:45", end: "2026-01-17T00:00:00+05:45"},
			},
		},
		{
			name: "berlin month windows",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-02-28T22:59:00Z", value: "1"}, // Feb 28 23:59 CET
				{at: "2026-02-28T23:00:00Z", value: "2"}, // Mar 1 00:00 CET
				{at: "2026-03-31T21:59:00Z", value: "4"}, // Mar 31 23:59 CEST
				{at: "2026-03-31T22:00:00Z", value: "8"}, // Apr 1 00:00 CEST
			},
			q: Query{WindowSize: WindowSizeMonth, TimeZone: mustLoc(t, "Europe/Berlin")},
			want: []want{
				{v: "1", start: "2026-02-01T00:00:00+01:00", end: "2026-03-01T00:00:00+01:00"},
				{v: "6", start: "2026-03-01T00:00:00+01:00", end: "2026-04-01T00:00:00+02:00"},
				{v: "8", start: "2026-04-01T00:00:00+02:00", end: "2026-05-01T00:00:00+02:00"},
			},
		},
		{
			name: "unique count across berlin days",
			agg:  meter.UniqueCount,
			events: []ev{
				{at: "2026-03-28T23:00:00Z", value: "a"},
				{at: "2026-03-29T21:59:00Z", value: "a"},
				{at: "2026-03-29T22:00:00Z", value: "a"},
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "Europe/Berlin")},
			want: []want{
				{v: "1", start: "2026-03-29T00:00:00+01:00", end: "2026-03-30T00:00:00+02:00"},
				{v: "1", start: "2026-03-30T00:00:00+02:00", end: "2026-03-31T00:00:00+02:00"},
			},
		},

		// Clipping to [from, to).
		{
			name: "hour windows clipped to from and to",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:14:59Z", value: "100"},
				{at: "2026-01-15T10:15:00Z", value: "1"},
				{at: "2026-01-15T11:00:00Z", value: "2"},
				{at: "2026-01-15T12:44:59Z", value: "4"},
				{at: "2026-01-15T12:45:00Z", value: "100"},
			},
			q: Query{WindowSize: WindowSizeHour, From: tp(t, "2026-01-15T10:15:00Z"), To: tp(t, "2026-01-15T12:45:00Z")},
			want: []want{
				{v: "1", start: "2026-01-15T10:15:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "2", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z"},
				{v: "4", start: "2026-01-15T12:00:00Z", end: "2026-01-15T12:45:00Z"},
			},
		},
		{
			name: "day windows in a zone clipped",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-03-29T09:59:00Z", value: "100"},
				{at: "2026-03-29T10:00:00Z", value: "1"},
				{at: "2026-03-29T22:00:00Z", value: "2"},
				{at: "2026-03-30T10:00:00Z", value: "100"},
			},
			q: Query{WindowSize: WindowSizeDay, TimeZone: mustLoc(t, "Europe/Berlin"), From: tp(t, "2026-03-29T10:00:00Z"), To: tp(t, "2026-03-30T10:00:00Z")},
			want: []want{
				{v: "1", start: "2026-03-29T10:00:00Z", end: "2026-03-29T22:00:00Z"},
				{v: "2", start: "2026-03-29T22:00:00Z", end: "2026-03-30T10:00:00Z"},
			},
		},
		{
			name: "no window with from and to",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-14T23:59:00Z", value: "100"},
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-16T10:00:00Z", value: "2"},
			},
			q:    Query{From: tp(t, "2026-01-15T00:00:00Z"), To: tp(t, "2026-02-01T00:00:00Z")},
			want: []want{{v: "3", start: "2026-01-15T00:00:00Z", end: "2026-02-01T00:00:00Z"}},
		},
		{
			name: "no window with from only",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-14T23:59:00Z", value: "100"},
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-16T10:00:30Z", value: "2"},
			},
			q:    Query{From: tp(t, "2026-01-15T00:00:00Z")},
			want: []want{{v: "3", start: "2026-01-15T00:00:00Z", end: "2026-01-16T10:01:00Z"}},
		},
		{
			name: "no window with to only",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "1"},
				{at: "2026-01-16T10:00:00Z", value: "100"},
			},
			q:    Query{To: tp(t, "2026-01-16T10:00:00Z")},
			want: []want{{v: "1", start: "2026-01-15T10:00:00Z", end: "2026-01-16T10:00:00Z"}},
		},
		{
			name: "no window per group bounds",
			agg:  meter.Sum,
			events: []ev{
				{subject: "s1", at: "2026-01-15T10:00:00Z", value: "1"},
				{subject: "s2", at: "2026-01-15T11:00:00Z", value: "2"},
				{subject: "s2", at: "2026-01-15T12:00:00Z", value: "4"},
			},
			q: Query{GroupBy: []string{"subject"}},
			want: []want{
				{v: "1", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:01:00Z", subject: ptr("s1")},
				{v: "6", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:01:00Z", subject: ptr("s2")},
			},
		},

		// Group by.
		{
			name:   "groups not requested are merged",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			want:   []want{{v: "63", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:31:00Z"}},
		},
		{
			name:   "group by one key without window: each group's own bounds",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"model"}},
			want: []want{
				{v: "7", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:01:00Z", groups: map[string]*string{"model": ptr("gpt")}},
				{v: "40", start: "2026-01-15T10:20:00Z", end: "2026-01-15T11:06:00Z", groups: map[string]*string{"model": ptr("claude")}},
				{v: "16", start: "2026-01-15T11:30:00Z", end: "2026-01-15T11:31:00Z", groups: map[string]*string{"model": nil}},
			},
		},
		{
			name:   "group by one key, missing value first",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"model"}, From: tp(t, "2026-01-15T00:00:00Z"), To: tp(t, "2026-01-16T00:00:00Z")},
			want: []want{
				{v: "16", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"model": nil}},
				{v: "40", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"model": ptr("claude")}},
				{v: "7", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"model": ptr("gpt")}},
			},
		},
		{
			name:   "group by one key with windows",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"model"}, WindowSize: WindowSizeHour},
			want: []want{
				{v: "32", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z", groups: map[string]*string{"model": ptr("claude")}},
				{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z", groups: map[string]*string{"model": ptr("gpt")}},
				{v: "16", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", groups: map[string]*string{"model": nil}},
				{v: "8", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", groups: map[string]*string{"model": ptr("claude")}},
				{v: "4", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", groups: map[string]*string{"model": ptr("gpt")}},
			},
		},
		{
			name:   "group by two keys in request order",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"region", "model"}, WindowSize: WindowSizeDay},
			want: []want{
				{v: "16", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"region": nil, "model": nil}},
				{v: "8", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"region": nil, "model": ptr("claude")}},
				{v: "32", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"region": ptr(""), "model": ptr("claude")}},
				{v: "5", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"region": ptr("eu"), "model": ptr("gpt")}},
				{v: "2", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", groups: map[string]*string{"region": ptr("us"), "model": ptr("gpt")}},
			},
		},
		{
			name:   "group by subject",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"subject"}, WindowSize: WindowSizeDay},
			want: []want{
				{v: "19", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", subject: ptr("s1")},
				{v: "12", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", subject: ptr("s2")},
				{v: "32", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z", subject: ptr("s3")},
			},
		},
		{
			name:   "group by key and subject, duplicates ignored",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{GroupBy: []string{"model", "subject", "model", "subject"}, WindowSize: WindowSizeHour},
			want: []want{
				{v: "3", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z", subject: ptr("s1"), groups: map[string]*string{"model": ptr("gpt")}},
				{v: "32", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z", subject: ptr("s3"), groups: map[string]*string{"model": ptr("claude")}},
				{v: "16", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", subject: ptr("s1"), groups: map[string]*string{"model": nil}},
				{v: "8", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", subject: ptr("s2"), groups: map[string]*string{"model": ptr("claude")}},
				{v: "4", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", subject: ptr("s2"), groups: map[string]*string{"model": ptr("gpt")}},
			},
		},
		{
			name:   "subject with empty key is grouped apart from others",
			agg:    meter.Count,
			events: []ev{{subject: "", at: "2026-01-15T10:00:00Z"}, {subject: "a", at: "2026-01-15T10:00:00Z"}},
			q:      Query{GroupBy: []string{"subject"}},
			want: []want{
				{v: "1", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:01:00Z", subject: ptr("")},
				{v: "1", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:01:00Z", subject: ptr("a")},
			},
		},

		// Filters.
		{
			name:   "filter group by",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{FilterGroupBy: map[string]string{"model": "gpt"}, GroupBy: []string{"region"}},
			want: []want{
				{v: "5", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:01:00Z", groups: map[string]*string{"region": ptr("eu")}},
				{v: "2", start: "2026-01-15T10:10:00Z", end: "2026-01-15T10:11:00Z", groups: map[string]*string{"region": ptr("us")}},
			},
		},
		{
			name:   "filter group by two keys",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{FilterGroupBy: map[string]string{"model": "gpt", "region": "eu"}},
			want:   []want{{v: "5", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:01:00Z"}},
		},
		{
			name:   "filter on empty value does not match a missing value",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{FilterGroupBy: map[string]string{"region": ""}},
			want:   []want{{v: "32", start: "2026-01-15T10:20:00Z", end: "2026-01-15T10:21:00Z"}},
		},
		{
			name:   "filter matching nothing",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{FilterGroupBy: map[string]string{"model": "llama"}},
			want:   []want{},
		},
		{
			name:   "subject filter",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{Subjects: []string{"s1", "s3", "nobody"}},
			want:   []want{{v: "51", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:31:00Z"}},
		},
		{
			name:   "subject filter grouped by subject",
			agg:    meter.Sum,
			groups: []string{"model", "region"},
			events: grouped,
			q:      Query{Subjects: []string{"s2"}, GroupBy: []string{"subject"}, WindowSize: WindowSizeHour},
			want: []want{
				{v: "12", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z", subject: ptr("s2")},
			},
		},

		// Empty results.
		{
			name: "no usage",
			agg:  meter.Sum,
			q:    Query{WindowSize: WindowSizeDay},
			want: []want{},
		},
		{
			name: "no usage in range",
			agg:  meter.Sum,
			events: []ev{
				{at: "2026-01-15T10:00:00Z", value: "1"},
			},
			q:    Query{From: tp(t, "2026-01-15T10:01:00Z"), To: tp(t, "2026-01-16T00:00:00Z")},
			want: []want{},
		},

		// Errors.
		{
			name:    "invalid query",
			agg:     meter.Sum,
			q:       Query{WindowSize: "WEEK"},
			wantErr: "windowSize",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Meter = testMeter(tt.agg, tt.groups...)
			rollups, uniques := rollupsOf(t, tt.agg, tt.events)
			got, err := Compute(q, rollups, uniques)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Compute() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compute() error = %v", err)
			}
			if diff := cmp.Diff(wantRows(t, tt.want), got); diff != "" {
				t.Errorf("Compute() rows (-want +got):\n%s", diff)
			}
			// Input order must not matter.
			for i, j := 0, len(rollups)-1; i < j; i, j = i+1, j-1 {
				rollups[i], rollups[j] = rollups[j], rollups[i]
			}
			for i, j := 0, len(uniques)-1; i < j; i, j = i+1, j-1 {
				uniques[i], uniques[j] = uniques[j], uniques[i]
			}
			again, err := Compute(q, rollups, uniques)
			if err != nil {
				t.Fatalf("Compute() reversed error = %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("Compute() on reversed input differs (-first +reversed):\n%s", diff)
			}
		})
	}
}

func TestComputeRowTimesInZone(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	for _, q := range []Query{
		{WindowSize: WindowSizeDay, TimeZone: berlin},
		{TimeZone: berlin},
		{WindowSize: WindowSizeHour, TimeZone: berlin, From: tp(t, "2026-01-15T10:15:00Z"), To: tp(t, "2026-01-15T12:00:00Z")},
		{WindowSize: WindowSizeHour},
	} {
		t.Run(string(q.WindowSize)+"/"+orUTC(q.TimeZone).String(), func(t *testing.T) {
			q.Meter = testMeter(meter.Count)
			rollups, _ := rollupsOf(t, meter.Count, []ev{{at: "2026-01-15T10:30:00Z"}})
			rows, err := Compute(q, rollups, nil)
			if err != nil || len(rows) != 1 {
				t.Fatalf("Compute() = %v, %v; want one row", rows, err)
			}
			want := orUTC(q.TimeZone)
			if rows[0].WindowStart.Location() != want || rows[0].WindowEnd.Location() != want {
				t.Errorf("row times in %s, %s; want %s", rows[0].WindowStart.Location(), rows[0].WindowEnd.Location(), want)
			}
		})
	}
}

func TestComputeInputs(t *testing.T) {
	m := testMeter(meter.Sum, "model")
	state := func(v string) meter.State {
		var s meter.State
		s.Add(decimal.RequireFromString(v), 0, 1)
		return s
	}
	tests := []struct {
		name    string
		agg     meter.Aggregation
		rollups []store.Rollup
		uniques []store.UniqueValue
		want    []want
		wantErr string
	}{
		{
			name: "empty states are ignored",
			rollups: []store.Rollup{
				{MeterID: testMeterID, Minute: 60, State: meter.State{}},
				{MeterID: testMeterID, Minute: 120, State: state("2")},
			},
			want: []want{{v: "2", start: "1970-01-01T00:02:00Z", end: "1970-01-01T00:03:00Z"}},
		},
		{
			name:    "uniques are ignored for SUM",
			rollups: []store.Rollup{{MeterID: testMeterID, Minute: 60, State: state("2")}},
			uniques: []store.UniqueValue{{MeterID: testMeterID, Minute: 60, Value: "x"}, {MeterID: testMeterID, Minute: 60, Value: "y"}},
			want:    []want{{v: "2", start: "1970-01-01T00:01:00Z", end: "1970-01-01T00:02:00Z"}},
		},
		{
			name:    "rollups are ignored for UNIQUE_COUNT",
			agg:     meter.UniqueCount,
			rollups: []store.Rollup{{MeterID: testMeterID, Minute: 0, State: state("2")}},
			uniques: []store.UniqueValue{{MeterID: testMeterID, Minute: 60, Value: "x"}, {MeterID: testMeterID, Minute: 60, Value: "y"}},
			want:    []want{{v: "2", start: "1970-01-01T00:01:00Z", end: "1970-01-01T00:02:00Z"}},
		},
		{
			name:    "rollup of another meter",
			rollups: []store.Rollup{{MeterID: "other", Minute: 60, State: state("2")}},
			wantErr: `usage of meter "other" for a query of meter "m1"`,
		},
		{
			name:    "unique value of another meter",
			agg:     meter.UniqueCount,
			uniques: []store.UniqueValue{{MeterID: "other", Minute: 60, Value: "x"}},
			wantErr: `usage of meter "other"`,
		},
		{
			name:    "malformed group key",
			rollups: []store.Rollup{{MeterID: testMeterID, GroupKey: "{not json", Minute: 60, State: state("2")}},
			wantErr: "decode group key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := Query{Meter: m, GroupBy: nil}
			if tt.agg != "" {
				q.Meter.Aggregation = tt.agg
			}
			got, err := Compute(q, tt.rollups, tt.uniques)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Compute() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compute() error = %v", err)
			}
			if diff := cmp.Diff(wantRows(t, tt.want), got); diff != "" {
				t.Errorf("Compute() rows (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComputeRowsDoNotShareGroupValues guards against rows aliasing the same
// *string: callers may edit rows.
func TestComputeRowsDoNotShareGroupValues(t *testing.T) {
	q := Query{Meter: testMeter(meter.Count, "model"), GroupBy: []string{"model"}, WindowSize: WindowSizeMinute}
	rollups, _ := rollupsOf(t, meter.Count, []ev{
		{groups: map[string]string{"model": "gpt"}, at: "2026-01-15T10:00:00Z"},
		{groups: map[string]string{"model": "gpt"}, at: "2026-01-15T10:01:00Z"},
	})
	rows, err := Compute(q, rollups, nil)
	if err != nil || len(rows) != 2 {
		t.Fatalf("Compute() = %v, %v; want two rows", rows, err)
	}
	*rows[0].GroupBy["model"] = "changed"
	if got := *rows[1].GroupBy["model"]; got != "gpt" {
		t.Errorf("second row's model = %q after editing the first, want gpt", got)
	}
}

// TestComputeLastMinuteOfTime checks that usage in the last minute tally
// accepts (9999-12-31T23:59Z) gives rows whose times encode as JSON: the
// window holding it ends at 10000-01-01T00:00:00Z, which RFC 3339 can't
// write, and once made every query of the meter without "to" answer an
// empty body.
func TestComputeLastMinuteOfTime(t *testing.T) {
	kiritimati := mustLoc(t, "Pacific/Kiritimati") // +14:00
	for _, q := range []Query{
		{},
		{TimeZone: kiritimati},
		{WindowSize: WindowSizeMinute},
		{WindowSize: WindowSizeHour, TimeZone: kiritimati},
		{WindowSize: WindowSizeDay},
		{WindowSize: WindowSizeDay, TimeZone: kiritimati},
		{WindowSize: WindowSizeMonth, From: tp(t, "9999-12-01T00:00:00Z")},
	} {
		t.Run(string(q.WindowSize)+"/"+orUTC(q.TimeZone).String(), func(t *testing.T) {
			q.Meter = testMeter(meter.Count)
			rollups, _ := rollupsOf(t, meter.Count, []ev{{at: "9999-12-31T23:59:59Z"}, {at: "9999-12-31T10:00:00Z"}})
			rows, err := Compute(q, rollups, nil)
			if err != nil || len(rows) == 0 {
				t.Fatalf("Compute() = %v, %v; want rows", rows, err)
			}
			total := decimal.Zero
			for _, r := range rows {
				if _, err := json.Marshal(r); err != nil {
					t.Errorf("row %v..%v does not encode: %v", r.WindowStart, r.WindowEnd, err)
				}
				total = total.Add(r.Value)
			}
			if !total.Equal(decimal.NewFromInt(2)) {
				t.Errorf("rows add up to %s, want 2", total)
			}
			last := rows[len(rows)-1]
			if !last.WindowEnd.Equal(bounds.MaxTime) {
				t.Errorf("last row ends at %s, want %s", last.WindowEnd.Format(time.RFC3339Nano), bounds.MaxTime.Format(time.RFC3339Nano))
			}
		})
	}
}

func TestQueryValidateTimeBounds(t *testing.T) {
	late := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	early := time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)
	err := Query{Meter: testMeter(meter.Count), From: &early, To: &late}.Validate()
	if err == nil || !strings.Contains(err.Error(), "from: 0000-12-31T00:00:00Z is out of range") || !strings.Contains(err.Error(), "to: 10000-01-01T00:00:00Z is out of range") {
		t.Errorf("Validate() = %v, want from and to out of range", err)
	}
}
