package ingest

import (
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/meter"
)

// BenchmarkContributions measures what the ingest handlers compute per event
// for three meters on its type.
func BenchmarkContributions(b *testing.B) {
	set, err := NewMeterSet(1, []meter.Meter{
		{ID: "1", Slug: "sum", EventType: "request", Aggregation: meter.Sum, ValueProperty: "$.value"},
		{ID: "2", Slug: "count", EventType: "request", Aggregation: meter.Count, GroupBy: map[string]string{"route": "$.route"}},
		{ID: "3", Slug: "max", EventType: "request", Aggregation: meter.Max, ValueProperty: "$.value"},
	})
	if err != nil {
		b.Fatal(err)
	}
	ev := event.Event{Type: "request", Time: time.Now(), Data: []byte(`{"value":12.5,"route":"/api/v3/items"}`)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if cs := set.Contributions(&ev); len(cs) != 3 || cs[0].Err != "" {
			b.Fatal(cs)
		}
	}
}
