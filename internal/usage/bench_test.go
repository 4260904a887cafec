package usage

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// BenchmarkCompute: a month of per-minute rollups for 10 subjects (432,000
// rollups), DAY windows in Europe/Berlin, grouped by subject and model.
func BenchmarkCompute(b *testing.B) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	var rollups []store.Rollup
	for m := int64(0); m < 30*1440; m++ {
		for s := range 10 {
			var st meter.State
			st.Add(decimal.NewFromInt(m%7), (start+m*60)*1e6, m)
			rollups = append(rollups, store.Rollup{
				MeterID:  testMeterID,
				Subject:  fmt.Sprintf("s%d", s),
				GroupKey: meter.EncodeGroupKey(map[string]string{"model": fmt.Sprintf("m%d", s%3)}),
				Minute:   start + m*60,
				State:    st,
			})
		}
	}
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		b.Fatal(err)
	}
	q := Query{Meter: testMeter(meter.Sum, "model"), WindowSize: WindowSizeDay, TimeZone: loc, GroupBy: []string{"subject", "model"}}
	b.ReportAllocs()
	for b.Loop() {
		rows, err := Compute(q, rollups, nil)
		if err != nil || len(rows) != 310 {
			b.Fatalf("Compute() = %d rows, %v", len(rows), err)
		}
	}
}
