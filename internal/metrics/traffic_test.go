package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/projections/traffic/traffictest"
)

// The traffic metrics are the projection's figures at scrape time: counts
// since the first event, calls up, and ASR/ACD over the last 15 minutes
// (absent when undefined).
func TestTrafficMetrics(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	p := traffictest.Folded(t,
		traffictest.Event{At: sec(0), Call: "a1", Msg: &eventpb.CallStarted{Caller: "sip:alice@a.test"}},
		traffictest.Event{At: sec(5), Call: "a1", Msg: &eventpb.CallAnswered{Leg: 1}},
		traffictest.Event{At: sec(35), Call: "a1", Msg: &eventpb.CallEnded{By: "caller"}},
		traffictest.Event{At: sec(70), Call: "b1", Msg: &eventpb.CallStarted{Caller: "sip:bob@b.test"}},
		traffictest.Event{At: sec(71), Call: "b1", Msg: &eventpb.CallFailed{Reason: "rejected", SipStatus: 486}},
		traffictest.Event{At: sec(120), Call: "a2", Msg: &eventpb.CallStarted{Caller: "sip:alice@a.test"}},
	)
	clk := clock.NewFake(t0.Add(5 * time.Minute))
	s := New(func() float64 { return 0 })
	s.Traffic(p, clk.Now)

	counters := `
# HELP tandem_traffic_answered_total Calls answered, by caller domain (traffic projection, since the first event).
# TYPE tandem_traffic_answered_total counter
tandem_traffic_answered_total{domain="a.test"} 1
tandem_traffic_answered_total{domain="b.test"} 0
# HELP tandem_traffic_attempts_total Calls started, by caller domain (traffic projection, since the first event).
# TYPE tandem_traffic_attempts_total counter
tandem_traffic_attempts_total{domain="a.test"} 2
tandem_traffic_attempts_total{domain="b.test"} 1
# HELP tandem_traffic_billable_seconds_total Billable seconds of the answered calls that ended, by caller domain (traffic projection, since the first event).
# TYPE tandem_traffic_billable_seconds_total counter
tandem_traffic_billable_seconds_total{domain="a.test"} 30
tandem_traffic_billable_seconds_total{domain="b.test"} 0
# HELP tandem_traffic_calls_ended_total Calls that ended, by caller domain and CDR disposition (traffic projection, since the first event).
# TYPE tandem_traffic_calls_ended_total counter
tandem_traffic_calls_ended_total{disposition="ANSWERED",domain="a.test"} 1
tandem_traffic_calls_ended_total{disposition="ANSWERED",domain="b.test"} 0
tandem_traffic_calls_ended_total{disposition="BUSY",domain="a.test"} 0
tandem_traffic_calls_ended_total{disposition="BUSY",domain="b.test"} 1
tandem_traffic_calls_ended_total{disposition="CANCELLED",domain="a.test"} 0
tandem_traffic_calls_ended_total{disposition="CANCELLED",domain="b.test"} 0
tandem_traffic_calls_ended_total{disposition="FAILED",domain="a.test"} 0
tandem_traffic_calls_ended_total{disposition="FAILED",domain="b.test"} 0
tandem_traffic_calls_ended_total{disposition="NO ANSWER",domain="a.test"} 0
tandem_traffic_calls_ended_total{disposition="NO ANSWER",domain="b.test"} 0
# HELP tandem_traffic_concurrent_calls Calls up (started, not ended or failed), by caller domain.
# TYPE tandem_traffic_concurrent_calls gauge
tandem_traffic_concurrent_calls{domain="a.test"} 1
tandem_traffic_concurrent_calls{domain="b.test"} 0
# HELP tandem_projection_skipped_events_total Events of a type this binary does not know, skipped by a projection.
# TYPE tandem_projection_skipped_events_total counter
tandem_projection_skipped_events_total{projection="traffic"} 0
`
	rates := `
# HELP tandem_traffic_acd_seconds Average billable seconds of the answered calls that ended in the last 15 minutes, by caller domain; absent when none did.
# TYPE tandem_traffic_acd_seconds gauge
tandem_traffic_acd_seconds{domain="a.test"} 30
# HELP tandem_traffic_asr Answer-seizure ratio (answered / attempts) over the last 15 minutes, by caller domain; absent without attempts.
# TYPE tandem_traffic_asr gauge
tandem_traffic_asr{domain="a.test"} 0.5
tandem_traffic_asr{domain="b.test"} 0
`
	names := []string{"tandem_traffic_answered_total", "tandem_traffic_attempts_total", "tandem_traffic_billable_seconds_total",
		"tandem_traffic_calls_ended_total", "tandem_traffic_concurrent_calls", "tandem_projection_skipped_events_total",
		"tandem_traffic_acd_seconds", "tandem_traffic_asr"}
	if err := testutil.GatherAndCompare(s.Registry(), strings.NewReader(counters+rates), names...); err != nil {
		t.Fatal(err)
	}
	// 15 minutes on (10:17): the calls left the window; the counts stay.
	clk.Advance(12 * time.Minute)
	if err := testutil.GatherAndCompare(s.Registry(), strings.NewReader(counters), names...); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(s.Registry(), names...)
	if err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}
