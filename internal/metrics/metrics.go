// Package metrics defines Tandem's Prometheus metrics in one place, on a
// registry of their own (no package globals), using the Prometheus client
// library rather than a hand-written exposition format.
//
// Label values that come from the network (SIP methods) are folded into a
// fixed set, so that a hostile peer cannot grow the metric cardinality.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemswitch/tandem/internal/sipmethod"
)

// Set holds every metric of a node. Its methods are safe for concurrent use.
type Set struct {
	reg *prometheus.Registry

	sipRequests   *prometheus.CounterVec
	sipResponses  *prometheus.CounterVec
	appendLatency prometheus.Histogram
	appendErrors  prometheus.Counter
	activeRegs    prometheus.GaugeFunc
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
	s.sipResponses.WithLabelValues(strconv.Itoa(code)).Inc()
}

// StoreAppend records one append; it matches the embedded store's OnAppend
// hook and is called concurrently.
func (s *Set) StoreAppend(latency time.Duration, _ int, err error) {
	s.appendLatency.Observe(latency.Seconds())
	if err != nil {
		s.appendErrors.Inc()
	}
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

// Registry exposes the registry, for components that add their own metrics.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// Handler serves the Prometheus text format.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}
