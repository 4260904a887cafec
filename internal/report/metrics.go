package report

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runner's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	planned    prometheus.Counter
	planErrors prometheus.Counter
	deliveries *prometheus.CounterVec
	alerts     *prometheus.CounterVec
	atRiskG    *prometheus.GaugeVec
	latency    *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		planned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_reports_planned_total", Help: "Usage reports planned."}),
		planErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_report_plan_errors_total", Help: "Subscriptions whose reports could not be planned."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_report_deliveries_total", Help: "Report delivery attempts by target and outcome (accepted, duplicate, expired, rejected, retry, error)."},
			[]string{"target", "outcome"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_report_alerts_total", Help: "Reporting alerts by kind (failed, expired, deadline, duplicate, refund)."},
			[]string{"kind"}),
		atRiskG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tally_reports_at_risk", Help: "Reports still unaccepted within the alert margin of their target's window."},
			[]string{"target"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tally_report_send_duration_seconds", Help: "Duration of one send call to a target.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"target"}),
	}
	if reg != nil {
		reg.MustRegister(m.planned, m.planErrors, m.deliveries, m.alerts, m.atRiskG, m.latency)
	}
	return m
}

func (m *Metrics) countPlanned(n int) {
	if m != nil {
		m.planned.Add(float64(n))
	}
}

func (m *Metrics) planError() {
	if m != nil {
		m.planErrors.Inc()
	}
}

func (m *Metrics) delivered(target, outcome string) {
	if m != nil {
		m.deliveries.WithLabelValues(target, outcome).Inc()
	}
}

func (m *Metrics) alerted(kind string) {
	if m != nil {
		m.alerts.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) atRisk(target string, n int) {
	if m != nil {
		m.atRiskG.WithLabelValues(target).Set(float64(n))
	}
}

func (m *Metrics) sendLatency(target string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(target).Observe(d.Seconds())
	}
}
