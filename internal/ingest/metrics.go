package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-metering/tally/internal/store"
)

// Metrics are the pipeline's Prometheus instruments.
type Metrics struct {
	accepted   prometheus.Counter
	duplicates prometheus.Counter
	invalid    *prometheus.CounterVec
	failed     prometheus.Counter
	commit     prometheus.Histogram
	batch      prometheus.Histogram
}

// NewMetrics creates the instruments and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_events_accepted_total", Help: "Events stored (first time seen).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_events_duplicate_total", Help: "Events skipped because their source and id were already stored.",
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_events_invalid_total", Help: "Stored events a meter could not count, by meter slug.",
		}, []string{"meter"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_commit_failures_total", Help: "Ingest transactions that failed.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tally_commit_duration_seconds", Help: "Time to append and durably commit one ingest transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tally_commit_batch_events", Help: "Events per ingest transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
	}
	reg.MustRegister(m.accepted, m.duplicates, m.invalid, m.failed, m.commit, m.batch)
	return m
}

func (m *Metrics) observeCommit(res store.AppendResult, total int, d time.Duration, err error, set *MeterSet) {
	m.commit.Observe(d.Seconds())
	m.batch.Observe(float64(total))
	if err != nil {
		m.failed.Inc()
		return
	}
	m.accepted.Add(float64(res.Inserted))
	m.duplicates.Add(float64(res.Duplicates))
	for id, n := range res.InvalidByMeter {
		slug := id
		for _, c := range set.all {
			if c.ID == id {
				slug = c.Slug
				break
			}
		}
		m.invalid.WithLabelValues(slug).Add(float64(n))
	}
}
