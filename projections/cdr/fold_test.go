package cdr

import (
	"testing"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Disposition and BillableSeconds are the rules the traffic projection
// shares with the CDRs; every branch, including the two odd endings (a
// CallFailed after an answer, a CallEnded without one).
func TestDispositionRules(t *testing.T) {
	for _, tc := range []struct {
		answered bool
		failed   *eventpb.CallFailed
		want     string
	}{
		{true, nil, Answered},
		{true, &eventpb.CallFailed{Reason: "error", SipStatus: 500}, Answered},
		{false, nil, Failed},
		{false, &eventpb.CallFailed{Reason: "cancel", SipStatus: 487}, Cancelled},
		{false, &eventpb.CallFailed{Reason: "no_answer", SipStatus: 480}, NoAnswer},
		{false, &eventpb.CallFailed{Reason: "rejected", SipStatus: 408}, NoAnswer},
		{false, &eventpb.CallFailed{Reason: "rejected", SipStatus: 486}, Busy},
		{false, &eventpb.CallFailed{Reason: "rejected", SipStatus: 600}, Busy},
		{false, &eventpb.CallFailed{Reason: "rejected", SipStatus: 503}, Failed},
		{false, &eventpb.CallFailed{Reason: "timeout", SipStatus: 504}, Failed},
	} {
		if got := Disposition(tc.answered, tc.failed); got != tc.want {
			t.Errorf("Disposition(%v, %v) = %q, want %q", tc.answered, tc.failed, got, tc.want)
		}
	}
	for _, tc := range []struct{ answer, end, want int64 }{
		{0, 0, 0}, {1000, 1001, 1}, {1000, 2000, 1}, {1000, 2001, 2}, {5000, 4000, 0},
	} {
		if got := BillableSeconds(tc.answer, tc.end); got != tc.want {
			t.Errorf("BillableSeconds(%d, %d) = %d, want %d", tc.answer, tc.end, got, tc.want)
		}
	}
}
