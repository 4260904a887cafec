package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// BenchmarkAppendEvents measures the ingest transaction alone: batches of
// 2,000 events over 1,000 subjects, counted by three meters or none.
func BenchmarkAppendEvents(b *testing.B) {
	b.Run("meters=3", func(b *testing.B) { benchAppend(b, 3) })
	b.Run("meters=0", func(b *testing.B) { benchAppend(b, 0) })
}

func benchAppend(b *testing.B, meters int) {
	ctx := context.Background()
	db, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const batch = 2000
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	batches := make([][]store.NewEvent, b.N)
	n := 0
	for i := range batches {
		evs := make([]store.NewEvent, batch)
		for j := range evs {
			n++
			v := decimal.New(int64(n%10000), -2)
			subj := "subject-" + strconv.Itoa(n%1000)
			evs[j] = store.NewEvent{
				ID: "run-" + strconv.Itoa(n), Source: "loadgen", Type: "request", Subject: subj,
				Time: base.Add(time.Duration(n) * time.Millisecond),
				Raw:  []byte(fmt.Sprintf(`{"specversion":"1.0","id":"run-%d","source":"loadgen","type":"request","subject":"%s","time":"2026-11-22T10:00:00.123Z","data":{"value":%s,"route":"/api/v3/items"}}`, n, subj, v)),
			}
			all := []store.Contribution{
				{MeterID: "m1", Aggregation: meter.Sum, Contribution: meter.Contribution{Value: v}},
				{MeterID: "m2", Aggregation: meter.Count, Contribution: meter.Contribution{GroupKey: `{"route":"/api/v3/items"}`}},
				{MeterID: "m3", Aggregation: meter.Max, Contribution: meter.Contribution{Value: v}},
			}
			evs[j].Contributions = all[:meters]
		}
		batches[i] = evs
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.AppendEvents(ctx, batches[i], base); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
