package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/internal/clock"
)

// holding answers every INVITE 200, as answering does, and holds the
// calls it answered (callHolder).
type holding struct {
	answering
	mu    sync.Mutex
	calls map[string]bool
}

func (h *holding) Deliver(id string, msg any) error {
	if _, ok := msg.(*call.Invite); ok {
		h.mu.Lock()
		h.calls[id] = true
		h.mu.Unlock()
	}
	return h.answering.Deliver(id, msg)
}

func (h *holding) Has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

// A node takes at most calls.max_rate new calls a second and
// calls.max_active calls in progress: a new INVITE beyond gets 503 with a
// Retry-After and a Warning saying which; a retransmitted INVITE of a call
// the node has is never refused; the rate's tokens come back with time.
func TestCallAdmission(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	active := 0
	var mu sync.Mutex
	refused := &refusalCounter{by: map[string]int{}}
	r := &holding{answering: answering{strays: make(chan *call.Stray, 4)}, calls: map[string]bool{}}
	_, addr := startDualGateway(t, func(g *Gateway) {
		g.SetCalls(r)
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
		g.admit = newAdmission(Options{MaxCallRate: 2, MaxActiveCalls: 3, Clock: clk, Metrics: refused,
			ActiveCalls: func() int { mu.Lock(); defer mu.Unlock(); return active }})
	})
	c := dialUDP(t, addr)
	invite := func(branch string) (*sip.Response, string) {
		cred := c.authorize(t, "INVITE", "sip:bob@example.test", branch+"-c")
		raw := c.request("INVITE", "sip:bob@example.test", branch, 2, cred)
		c.send(t, raw)
		return c.final(t, "INVITE"), raw
	}
	var first string
	for i, branch := range []string{"z9hG4bK-ad1", "z9hG4bK-ad2"} {
		res, raw := invite(branch)
		if res.StatusCode != 200 {
			t.Fatalf("call %d within the rate answered %d", i+1, res.StatusCode)
		}
		if i == 0 {
			first = raw
		}
	}
	res, _ := invite("z9hG4bK-ad3")
	if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil || res.GetHeader("Retry-After").Value() != "5" {
		t.Fatalf("a third call in the same second: %s, want 503 with Retry-After: 5", res.Short())
	}
	if w := res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), "Call Rate Exceeded") {
		t.Fatalf("503 without the Warning saying why: %v", w)
	}

	// The first call's INVITE again: a call the node has, not a new one.
	c.send(t, first)
	if res := c.final(t, "INVITE"); res.StatusCode != 200 {
		t.Fatalf("a retransmitted INVITE of a call in progress answered %d", res.StatusCode)
	}

	clk.Advance(time.Second)
	if res, _ := invite("z9hG4bK-ad4"); res.StatusCode != 200 {
		t.Fatalf("a call a second later answered %d", res.StatusCode)
	}

	mu.Lock()
	active = 3
	mu.Unlock()
	clk.Advance(time.Second)
	res, _ = invite("z9hG4bK-ad5")
	if res.StatusCode != 503 {
		t.Fatalf("a call beyond calls.max_active answered %d", res.StatusCode)
	}
	if w := res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), "Too Many Calls") {
		t.Fatalf("503 without the Warning saying why: %v", w)
	}
	refused.mu.Lock()
	defer refused.mu.Unlock()
	if refused.by["rate"] != 1 || refused.by["active"] != 1 || len(refused.by) != 2 {
		t.Fatalf("refusals counted %v, want one for each limit", refused.by)
	}
}

// refusalCounter is a Metrics that keeps the refusals counted.
type refusalCounter struct {
	mu sync.Mutex
	by map[string]int
}

func (r *refusalCounter) SIPRequest(string) {}
func (r *refusalCounter) SIPResponse(int)   {}
func (r *refusalCounter) CallRefused(limit string) {
	r.mu.Lock()
	r.by[limit]++
	r.mu.Unlock()
}

// Without limits nothing is refused, and nothing is asked of the router.
func TestNoAdmissionLimitsByDefault(t *testing.T) {
	a := newAdmission(Options{Clock: clock.Real{}})
	for i := 0; i < 1000; i++ {
		if e := a.check("c", nil); e != nil {
			t.Fatalf("refused without limits: %+v", e)
		}
	}
	if a := newAdmission(Options{MaxActiveCalls: 1, Clock: clock.Real{}}); a.check("c", nil) != nil {
		t.Fatal("max_active without a count of the calls refused a call")
	}
}
