package replay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// CallLadder replays the events of call id (its stream, in version order)
// with the call actor's Apply.
func CallLadder(id string, envs []*eventpb.Envelope) *Ladder {
	f := newCallFold(id)
	l := &Ladder{Kind: "call", Name: id, Stream: call.StreamName(id)}
	legs := uint32(0)
	for _, env := range envs {
		r := row(env)
		msg, err := f.apply(env)
		st := f.call
		switch {
		case msg == nil:
			r.Summary, r.State, r.Skipped = skipSummary(env, err), callState(st), true
			if errors.Is(err, events.ErrUnknownType) {
				r.Event = "unknown"
			}
		case err != nil:
			r.Summary, r.State, r.Skipped = callSummary(msg), callState(st)+" [not applied: "+err.Error()+"]", true
		default:
			r.Summary, r.State = callSummary(msg), callState(st)
		}
		callArrow(&r, st, msg, env.GetCause())
		for _, lane := range []string{r.From, r.To} {
			if n, ok := laneLeg(lane); ok && n > legs {
				legs = n
			}
		}
		l.Rows = append(l.Rows, r)
	}
	l.Lanes = []string{laneCaller, laneTandem}
	for n := uint32(1); n <= legs; n++ {
		l.Lanes = append(l.Lanes, legLane(n))
	}
	return l
}

// laneLeg is the leg number of a callee lifeline.
func laneLeg(lane string) (uint32, bool) {
	s, ok := strings.CutPrefix(lane, "callee (leg ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, ")"), 10, 32)
	return uint32(n), err == nil
}

// sender is the lifeline that sent the cause of an event: a B leg for a
// response on it ("leg-b<n>") or a request in its dialog (its Call-ID), the
// caller for any other request, "timer" for an internal trigger.
func sender(st *call.State, c *eventpb.Cause) string {
	if m := c.GetMethod(); m == "" || m == "timer" {
		return dirTimer
	}
	if s, ok := strings.CutPrefix(c.GetSource(), "leg-b"); ok {
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return legLane(uint32(n))
		}
	}
	for _, l := range st.Legs {
		if id := l.Attempt.GetCallId(); id != "" && id == c.GetCallId() {
			return legLane(l.N)
		}
	}
	return laneCaller
}

// side is the lifeline of side "a" (the caller) or "b" (leg n, or the
// answered leg when n is 0).
func side(st *call.State, s string, n uint32) string {
	if s == "a" {
		return laneCaller
	}
	if n == 0 {
		n = st.Winner
	}
	return legLane(n)
}

// callArrow derives who spoke to whom from the event and its cause.
func callArrow(r *Row, st *call.State, msg proto.Message, cause *eventpb.Cause) {
	from := sender(st, cause)
	switch e := msg.(type) {
	case *eventpb.CallStarted:
		r.arrow(laneCaller, "", laneTandem)
	case *eventpb.LegAttempted:
		r.arrow(laneTandem, "", legLane(e.Leg))
	case *eventpb.LegProgress:
		r.arrow(legLane(e.Leg), "", laneTandem)
	case *eventpb.LegAnswered:
		r.arrow(legLane(e.Leg), "", laneTandem)
	case *eventpb.LegFailed:
		if from == dirTimer {
			r.arrow(dirTimer, "", laneTandem)
		} else {
			r.arrow(legLane(e.Leg), "", laneTandem)
		}
	case *eventpb.CallAnswered:
		r.arrow(laneTandem, "", laneCaller)
	case *eventpb.InDialogRelayed:
		r.arrow(side(st, e.FromSide, e.Leg), laneTandem, side(st, otherSide(e.FromSide), e.Leg))
	case *eventpb.HoldChanged:
		r.arrow(side(st, e.By, 0), laneTandem, side(st, otherSide(e.By), 0))
	case *eventpb.SessionRefreshed:
		r.arrow(side(st, e.By, 0), laneTandem, side(st, otherSide(e.By), 0))
	case *eventpb.CallEnded:
		switch e.By {
		case "caller":
			r.arrow(laneCaller, "", laneTandem)
		case "callee":
			r.arrow(legLane(st.Winner), "", laneTandem)
		default:
			r.arrow(dirTimer, "", laneTandem)
		}
	case *eventpb.CallFailed:
		switch {
		case from == laneCaller: // the caller's CANCEL
			r.arrow(laneCaller, "", laneTandem)
		case from == dirTimer:
			r.arrow(dirTimer, "", laneTandem)
		default: // the best response of the legs goes to the caller
			r.arrow(laneTandem, "", laneCaller)
		}
	default: // unknown: what its cause tells
		r.arrow(from, "", laneTandem)
	}
}

func otherSide(s string) string {
	if s == "a" {
		return "b"
	}
	return "a"
}

func sdpNote(sdp []byte) string {
	if len(sdp) > 0 {
		return " with SDP"
	}
	return ""
}

// callSummary is the payload of a call event in short.
func callSummary(msg proto.Message) string {
	switch e := msg.(type) {
	case *eventpb.CallStarted:
		s := e.Caller + " calls " + e.Callee + sdpNote(e.Offer)
		if e.SessionExpires > 0 {
			s += fmt.Sprintf(", session timer %ds", e.SessionExpires)
		}
		return s
	case *eventpb.LegAttempted:
		return fmt.Sprintf("leg %d: INVITE to %s", e.Leg, e.RequestUri)
	case *eventpb.LegProgress:
		s := fmt.Sprintf("leg %d: %d %s%s", e.Leg, e.Code, e.Reason, sdpNote(e.Sdp))
		if e.Rseq > 0 {
			s += fmt.Sprintf(", reliable (RSeq %d, %d to the caller)", e.Rseq, e.ARseq)
		}
		return s
	case *eventpb.LegAnswered:
		s := fmt.Sprintf("leg %d: %d%s", e.Leg, e.Code, sdpNote(e.Sdp))
		if e.SessionExpires > 0 {
			s += fmt.Sprintf(", session timer %ds refresher %s", e.SessionExpires, e.Refresher)
		}
		return s
	case *eventpb.LegFailed:
		return fmt.Sprintf("leg %d: %d %s", e.Leg, e.Code, e.Reason)
	case *eventpb.CallAnswered:
		return fmt.Sprintf("leg %d wins; 200 to the caller", e.Leg)
	case *eventpb.InDialogRelayed:
		s := fmt.Sprintf("%s relayed, cseq %d -> %d", e.Method, e.InCseq, e.OutCseq)
		if e.Leg != 0 {
			s += fmt.Sprintf(" (leg %d)", e.Leg)
		}
		if len(e.Sdp) > 0 {
			s += ", with the caller's answer to the delayed offer"
		}
		return s
	case *eventpb.HoldChanged:
		what := "resumed"
		if e.Held {
			what = "held"
		}
		return fmt.Sprintf("%s by the %s (a=%s)", what, sideName(e.By), e.Direction)
	case *eventpb.SessionRefreshed:
		return fmt.Sprintf("session refreshed by the %s, %ds", sideName(e.By), e.Interval)
	case *eventpb.CallEnded:
		s := fmt.Sprintf("by %s: %s, %s", e.By, e.Reason, q850(e.Q850Cause))
		if e.Text != "" {
			s += fmt.Sprintf(" (%s)", e.Text)
		}
		return s
	case *eventpb.CallFailed:
		s := fmt.Sprintf("%s: %d %s to the caller, %s", e.Reason, e.SipStatus, e.SipReason, q850(e.Q850Cause))
		if e.Text != "" {
			s += fmt.Sprintf(" (%s)", e.Text)
		}
		return s
	}
	return fmt.Sprintf("%T", msg)
}

func sideName(s string) string {
	if s == "a" {
		return "caller"
	}
	return "callee"
}

// callState is a call's state in one line: "ringing; legs: 1=180
// 2=trying", "answered by leg 1", "ended by caller (normal clearing,
// Q.850 16)".
func callState(st *call.State) string {
	switch st.Phase {
	case call.PhaseTrying:
		if len(st.Legs) == 0 {
			return st.StateName()
		}
		parts := make([]string, 0, len(st.Legs))
		for _, l := range st.Legs {
			parts = append(parts, fmt.Sprintf("%d=%s", l.N, legState(l)))
		}
		return st.StateName() + "; legs: " + strings.Join(parts, " ")
	case call.PhaseAnswered:
		s := fmt.Sprintf("answered by leg %d", st.Winner)
		var held []string
		for _, by := range []string{"a", "b"} {
			if st.HeldBy[by] {
				held = append(held, sideName(by))
			}
		}
		if len(held) > 0 {
			s += "; held by " + strings.Join(held, " and ")
		}
		if st.SessionInterval > 0 {
			s += fmt.Sprintf("; session timer %ds", st.SessionInterval)
		}
		return s
	case call.PhaseEnded:
		e := st.Ended
		if e.By == "system" {
			return fmt.Sprintf("ended by system: %s (%s)", e.Reason, q850(e.Q850Cause))
		}
		return fmt.Sprintf("ended by %s (%s)", e.By, q850(e.Q850Cause))
	case call.PhaseFailed:
		e := st.Failed
		return fmt.Sprintf("failed: %s, %d %s (%s)", e.Reason, e.SipStatus, e.SipReason, q850(e.Q850Cause))
	}
	return st.StateName()
}

func legState(l *call.Leg) string {
	switch {
	case l.Answered != nil:
		return "answered"
	case l.Failed != nil:
		return fmt.Sprintf("failed:%d", l.Failed.Code)
	case l.Progress > 0:
		return strconv.Itoa(int(l.Progress))
	}
	return "trying"
}
