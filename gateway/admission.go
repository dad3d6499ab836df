package gateway

import (
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/tandemswitch/tandem/internal/clock"
)

// Call admission: a node takes at most calls.max_rate new calls a second
// and holds at most calls.max_active calls in progress. A new INVITE beyond
// either gets 503 Service Unavailable with a Retry-After (RFC 3261 21.5.4,
// 20.33), the static limits a carrier sets per node as it sets
// FreeSWITCH's sessions-per-second and max-sessions: the calls the node
// has taken keep its capacity, and an upstream proxy takes the 503 as the
// cue to try another node. Only a call the node does not already have is
// counted; a retransmitted INVITE of a call in progress reaches its call
// (which answers it from state) whatever the load.
//
// The rate is a token bucket holding one second's worth of calls
// (golang.org/x/time/rate, read against the gateway's clock); the calls in
// progress are the live-calls projection's count, which follows the store
// a few milliseconds behind, so a burst can overshoot max_active by the
// calls of those milliseconds.
type admission struct {
	rate       *rate.Limiter // nil: no rate limit
	maxActive  int
	active     func() int
	clock      clock.Clock
	retryAfter string
	metrics    refusalMetrics // nil: not counted
}

// refusalMetrics counts refused calls (tandem_calls_refused_total), when
// the gateway's Metrics can.
type refusalMetrics interface {
	CallRefused(limit string)
}

// callHolder is what a call router may tell: whether a call is live on
// this node (call.Manager).
type callHolder interface {
	Has(id string) bool
}

func newAdmission(opts Options) *admission {
	a := &admission{maxActive: opts.MaxActiveCalls, active: opts.ActiveCalls, clock: opts.Clock}
	a.metrics, _ = opts.Metrics.(refusalMetrics)
	if opts.MaxCallRate > 0 {
		a.rate = rate.NewLimiter(rate.Limit(opts.MaxCallRate), opts.MaxCallRate)
	}
	if a.active == nil {
		a.maxActive = 0
	}
	retry := opts.OverloadRetryAfter
	if retry <= 0 {
		retry = 5 * time.Second
	}
	a.retryAfter = strconv.Itoa(int((retry + time.Second - 1) / time.Second))
	return a
}

// check admits the call id (nil) or says how to refuse it. calls is asked
// whether the call is already live, so that its retransmitted INVITE is
// not counted again.
func (a *admission) check(id string, calls CallRouter) *sipError {
	if a.rate == nil && a.maxActive == 0 {
		return nil
	}
	if h, ok := calls.(callHolder); ok && h.Has(id) {
		return nil
	}
	if a.maxActive > 0 && a.active() >= a.maxActive {
		return a.refuse("active", "Too Many Calls")
	}
	if a.rate != nil && !a.rate.AllowN(a.clock.Now(), 1) {
		return a.refuse("rate", "Call Rate Exceeded")
	}
	return nil
}

func (a *admission) refuse(limit, why string) *sipError {
	if a.metrics != nil {
		a.metrics.CallRefused(limit)
	}
	return &sipError{code: 503, reason: "Service Unavailable", headers: [][2]string{
		{"Retry-After", a.retryAfter},
		{"Warning", `399 tandem "` + why + `"`},
	}}
}
