package e2e

import (
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// A node at calls.max_active refuses a new call with 503 Service
// Unavailable and keeps the call it has: the held call's caller and callee
// both succeed, and the refused caller gets its 503 (and ACKs it).
func TestCallAdmissionLimit(t *testing.T) {
	h := newHarness(t, callUsers(), func(c *peers.TandemConfig) { c.MaxActiveCalls = 1 })
	h.start()

	held := h.caller("bob", "call_uac.xml")
	held.Hold = 4 * time.Second
	callee := h.callee("bob", "call_uas.xml", 1)
	type outcome struct {
		res peers.CallResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := peers.RunCall(held, 15*time.Second, callee)
		if err == nil {
			err = res.Check()
		}
		done <- outcome{res, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		calls, err := h.tandem.Calls()
		if err == nil && len(calls) == 1 && calls[0].State == "answered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held call never showed answered: %+v (err %v)", calls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	h.call(h.caller("carol", "call_uac_refused.xml"))

	o := <-done
	for _, r := range o.res.All() {
		if r != nil {
			h.runs = append(h.runs, r)
		}
	}
	if o.err != nil {
		t.Fatalf("the call in progress: %v", o.err)
	}
	h.noLiveCalls()
}
