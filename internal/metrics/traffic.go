package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemswitch/tandem/projections/traffic"
)

// TrafficWindowMinutes is the window of the ASR and ACD gauges: the
// current minute and the 14 before it.
const TrafficWindowMinutes = 15

// Traffic exports the traffic projection p, read at scrape time: counts
// since the first event and calls up, by caller domain, and ASR and ACD
// over the last TrafficWindowMinutes minutes by now. It also exports the
// projection's skipped events.
//
// The domain label comes from the events (the caller AOR's host, which
// the gateway builds from the configured domain), not from the network.
func (s *Set) Traffic(p *traffic.Projection, now func() time.Time) {
	s.reg.MustRegister(newTrafficCollector(p, now))
	s.ProjectionSkipped("traffic", func() float64 { return float64(p.Skipped()) })
}

// trafficCollector turns the projection into metrics at each scrape; it
// is called concurrently with the fold (the projection's readers are safe).
type trafficCollector struct {
	p   *traffic.Projection
	now func() time.Time

	attempts, answered, ended, billable, concurrent, asr, acd *prometheus.Desc
}

func newTrafficCollector(p *traffic.Projection, now func() time.Time) *trafficCollector {
	domain := []string{"domain"}
	return &trafficCollector{
		p: p, now: now,
		attempts: prometheus.NewDesc("tandem_traffic_attempts_total",
			"Calls started, by caller domain (traffic projection, since the first event).", domain, nil),
		answered: prometheus.NewDesc("tandem_traffic_answered_total",
			"Calls answered, by caller domain (traffic projection, since the first event).", domain, nil),
		ended: prometheus.NewDesc("tandem_traffic_calls_ended_total",
			"Calls that ended, by caller domain and CDR disposition (traffic projection, since the first event).",
			[]string{"domain", "disposition"}, nil),
		billable: prometheus.NewDesc("tandem_traffic_billable_seconds_total",
			"Billable seconds of the answered calls that ended, by caller domain (traffic projection, since the first event).", domain, nil),
		concurrent: prometheus.NewDesc("tandem_traffic_concurrent_calls",
			"Calls up (started, not ended or failed), by caller domain.", domain, nil),
		asr: prometheus.NewDesc("tandem_traffic_asr", fmt.Sprintf(
			"Answer-seizure ratio (answered / attempts) over the last %d minutes, by caller domain; absent without attempts.",
			TrafficWindowMinutes), domain, nil),
		acd: prometheus.NewDesc("tandem_traffic_acd_seconds", fmt.Sprintf(
			"Average billable seconds of the answered calls that ended in the last %d minutes, by caller domain; absent when none did.",
			TrafficWindowMinutes), domain, nil),
	}
}

// Describe is called concurrently.
func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.attempts, c.answered, c.ended, c.billable, c.concurrent, c.asr, c.acd} {
		ch <- d
	}
}

// Collect is called concurrently.
func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.p.Lifetimes() {
		d := l.Key.Domain
		ch <- prometheus.MustNewConstMetric(c.attempts, prometheus.CounterValue, float64(l.Attempts), d)
		ch <- prometheus.MustNewConstMetric(c.answered, prometheus.CounterValue, float64(l.Answered), d)
		for _, disp := range traffic.Dispositions() {
			ch <- prometheus.MustNewConstMetric(c.ended, prometheus.CounterValue, float64(l.Ended[disp]), d, disp)
		}
		ch <- prometheus.MustNewConstMetric(c.billable, prometheus.CounterValue, float64(l.Billable), d)
		ch <- prometheus.MustNewConstMetric(c.concurrent, prometheus.GaugeValue, float64(l.Up), d)
	}
	from, to := traffic.Last(c.now(), TrafficWindowMinutes)
	for _, dr := range c.p.Stats(from, to, "").Domains {
		if v := dr.Totals.ASR; v != nil {
			ch <- prometheus.MustNewConstMetric(c.asr, prometheus.GaugeValue, *v, dr.Domain)
		}
		if v := dr.Totals.ACD; v != nil {
			ch <- prometheus.MustNewConstMetric(c.acd, prometheus.GaugeValue, *v, dr.Domain)
		}
	}
}
