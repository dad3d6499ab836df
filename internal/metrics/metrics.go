// Package metrics defines Tandem's Prometheus metrics in one place, on a
// registry of their own (no package globals), using the Prometheus client
// library rather than a hand-written exposition format.
//
// Label values that come from the network (SIP methods) are folded into a
// fixed set, so that a hostile peer cannot grow the metric cardinality.
package metrics

import (
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/tandemswitch/tandem/internal/sipmethod"
	"github.com/tandemswitch/tandem/internal/sipstatus"
)

// Set holds every metric of a node. Its methods are safe for concurrent use.
type Set struct {
	reg *prometheus.Registry

	sipRequests   *prometheus.CounterVec
	sipResponses  *prometheus.CounterVec
	appendLatency prometheus.Histogram
	appendErrors  prometheus.Counter
	activeRegs    prometheus.GaugeFunc

	callAttempts prometheus.Counter
	callAnswered prometheus.Counter
	callFailed   *prometheus.CounterVec
	callRefused  *prometheus.CounterVec
	callSetup    prometheus.Histogram
}

// New creates the metrics. activeRegistrations reports the current number
// of bindings (read at scrape time).
func New(activeRegistrations func() float64) *Set {
	s := &Set{reg: prometheus.NewRegistry()}
	s.sipRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_sip_requests_total",
		Help: "SIP requests received, by method (unknown methods count as OTHER).",
	}, []string{"method"})
	s.sipResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_sip_responses_total",
		Help: "SIP responses sent, by status code.",
	}, []string{"code"})
	s.appendLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tandem_store_append_duration_seconds",
		Help:    "Latency of durable event store appends (queue, write and fsync).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 us .. 3.3 s
	})
	s.appendErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_store_append_errors_total",
		Help: "Event store appends that failed (version conflicts included).",
	})
	s.activeRegs = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_registrations_active",
		Help: "Registration bindings currently active.",
	}, activeRegistrations)
	s.callAttempts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_call_attempts_total",
		Help: "Calls started (authenticated INVITEs routed to at least one contact).",
	})
	s.callAnswered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_calls_answered_total",
		Help: "Calls answered.",
	})
	s.callFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_calls_failed_total",
		Help: "Calls that ended unanswered, by the final SIP status the caller got.",
	}, []string{"code"})
	s.callRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_calls_refused_total",
		Help: "New calls answered 503 by call admission, by the limit they met (rate: calls.max_rate, active: calls.max_active).",
	}, []string{"limit"})
	s.callSetup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tandem_call_setup_seconds",
		Help:    "Time from the caller's INVITE being accepted to the call being answered.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms .. 41 s
	})
	s.reg.MustRegister(s.callAttempts, s.callAnswered, s.callFailed, s.callRefused, s.callSetup)
	s.reg.MustRegister(s.sipRequests, s.sipResponses, s.appendLatency, s.appendErrors, s.activeRegs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// SIPRequest counts one received request.
func (s *Set) SIPRequest(method string) {
	if !sipmethod.Known(method) {
		method = "OTHER"
	}
	s.sipRequests.WithLabelValues(method).Inc()
}

// SIPResponse counts one sent response.
func (s *Set) SIPResponse(code int) {
	s.sipResponses.WithLabelValues(sipstatus.Text(code)).Inc()
}

// StoreAppend records one append; it matches the embedded store's OnAppend
// hook and is called concurrently.
func (s *Set) StoreAppend(latency time.Duration, _ int, err error) {
	s.appendLatency.Observe(latency.Seconds())
	if err != nil {
		s.appendErrors.Inc()
	}
}

// CallAttempt counts a started call.
func (s *Set) CallAttempt() { s.callAttempts.Inc() }

// CallAnswered counts an answered call and its setup time.
func (s *Set) CallAnswered(setup time.Duration) {
	s.callAnswered.Inc()
	s.callSetup.Observe(setup.Seconds())
}

// CallFailed counts an unanswered call by its final status.
func (s *Set) CallFailed(code int) { s.callFailed.WithLabelValues(sipstatus.Text(code)).Inc() }

// CallRefused counts a new call refused by call admission; limit is
// "rate" or "active".
func (s *Set) CallRefused(limit string) { s.callRefused.WithLabelValues(limit).Inc() }

// ActiveCalls exports the number of live calls (read at scrape time).
func (s *Set) ActiveCalls(n func() float64) {
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_calls_active",
		Help: "Calls started and not yet ended (ringing or answered).",
	}, n))
}

// ProjectionSkipped exports how many events of unknown type projection
// name has skipped (read at scrape time from skipped).
func (s *Set) ProjectionSkipped(name string, skipped func() float64) {
	s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "tandem_projection_skipped_events_total",
		Help:        "Events of a type this binary does not know, skipped by a projection.",
		ConstLabels: prometheus.Labels{"projection": name},
	}, skipped))
}

// StoreFsync exports h, the event store's histogram of write-ahead-log
// fsyncs in nanoseconds (embedded.Store.WALFsyncLatency), as
// tandem_store_fsync_duration_seconds, read at scrape time: the disk's
// share of tandem_store_append_duration_seconds. A nil h exports nothing.
func (s *Set) StoreFsync(h prometheus.Histogram) {
	if h == nil {
		return
	}
	s.reg.MustRegister(&nanosHistogram{h: h, desc: prometheus.NewDesc("tandem_store_fsync_duration_seconds",
		"Latency of the event store's write-ahead-log fsyncs (one per group commit).", nil, nil)})
}

// nanosHistogram re-exports a histogram observed in nanoseconds (Pebble's
// own, which it creates without a name) in seconds, on a subset of its
// bucket bounds, each at least twice the one before (about 20 of Pebble's
// 100): a cumulative histogram stays exact on any subset of its bounds.
type nanosHistogram struct {
	h    prometheus.Histogram
	desc *prometheus.Desc
}

func (c *nanosHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nanosHistogram) Collect(ch chan<- prometheus.Metric) {
	var m dto.Metric
	if err := c.h.Write(&m); err != nil || m.Histogram == nil {
		return
	}
	hist := m.Histogram
	buckets := map[float64]uint64{}
	last := 0.0
	for i, b := range hist.Bucket {
		le := b.GetUpperBound()
		if le <= 0 || (le < 2*last && i < len(hist.Bucket)-1) {
			continue
		}
		// to the microsecond: Pebble's top bound is 9.99999999999e9 ns
		buckets[math.Round(le/1e3)/1e6] = b.GetCumulativeCount()
		last = le
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, hist.GetSampleCount(), hist.GetSampleSum()/1e9, buckets)
}

// Registry exposes the registry, for components that add their own metrics.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// Handler serves the Prometheus text format.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}
