// Package call is the call actor: one back-to-back user agent per call
// (stream "call-<id>"). It owns leg A (the caller's dialog, where Tandem is
// the UAS) and one B leg per contact it forks to (dialogs where Tandem is
// the UAC). Every state change is an event appended, and durable, before the
// SIP message that reveals it goes out (ARCHITECTURE.md invariant 2); state
// is the pure fold of those events (Apply, invariant 3), so an actor
// re-activated after a crash knows every answered call and can end it
// normally.
//
// The package builds the SIP messages of both legs itself (from an
// allow-list of headers: nothing of one leg's addresses leaks to the
// other) and sends them through a Transport the gateway provides.
package call

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Phase of a call.
type Phase int

// Phases, in order.
const (
	PhaseNone     Phase = iota // no CallStarted yet
	PhaseTrying                // B legs attempted, none answered
	PhaseAnswered              // a B leg answered; talking
	PhaseEnded                 // answered, then ended
	PhaseFailed                // ended without an answer
)

func (p Phase) String() string {
	switch p {
	case PhaseTrying:
		return "trying"
	case PhaseAnswered:
		return "answered"
	case PhaseEnded:
		return "ended"
	case PhaseFailed:
		return "failed"
	}
	return "none"
}

// Over tells whether the call has ended, answered or not.
func (p Phase) Over() bool { return p == PhaseEnded || p == PhaseFailed }

// Leg is one B leg as the events tell it.
type Leg struct {
	N         uint32
	Attempt   *eventpb.LegAttempted
	Progress  uint32 // highest provisional code seen, 0 for none
	RemoteTag string
	Answered  *eventpb.LegAnswered
	Failed    *eventpb.LegFailed
	CSeq      uint32 // last local CSeq used on the leg
	// The early dialog (from the last provisional with a Contact), for
	// PRACK.
	EarlyContact string
	EarlyRoute   []string
}

// Reliable is a reliable provisional relayed to the caller (RFC 3262):
// the leg it came from and the callee's RSeq.
type Reliable struct {
	Leg  uint32
	RSeq uint32
}

// Pending tells whether the leg's INVITE has no final answer yet.
func (l *Leg) Pending() bool { return l.Answered == nil && l.Failed == nil }

// State is the fold of a call's events. It is built only by Apply.
type State struct {
	ID        string
	Version   uint64 // stream version of the last event applied
	Phase     Phase
	Started   *eventpb.CallStarted
	StartedAt time.Time
	Legs      []*Leg
	Winner    uint32 // the answered leg
	AnswerAt  time.Time
	ACSeq     uint32 // last local CSeq Tandem used on leg A
	Ended     *eventpb.CallEnded
	Failed    *eventpb.CallFailed
	EndedAt   time.Time
	// HeldBy: the sides whose last offer put the call on hold.
	HeldBy map[string]bool
	// Session timer (RFC 4028): interval in seconds and the last refresh.
	SessionInterval uint32
	RefreshedAt     time.Time
	// Reliable provisionals relayed to the caller, by the RSeq Tandem gave
	// them; ARSeq is the last such RSeq.
	Reliables map[uint32]Reliable
	ARSeq     uint32
	// CallerAnswer: for a delayed offer (the caller's INVITE had no SDP),
	// the caller's ACK that brought the answer, once relayed; nil before.
	CallerAnswer *eventpb.InDialogRelayed
	// Reinvite: the last re-INVITE relayed, when it had no offer (nil when
	// it had one), and ReinviteAnswer the requester's ACK that brought the
	// answer, once relayed; nil before.
	Reinvite, ReinviteAnswer *eventpb.InDialogRelayed
}

// DelayedOffer tells whether the caller's INVITE carried no offer, so that
// the answered leg's 2xx brings the offer and its ACK the caller's answer
// (RFC 3261 13.2.1).
func (s *State) DelayedOffer() bool { return s.Started != nil && len(s.Started.GetOffer()) == 0 }

// AwaitedAnswer returns the event that would record the answer an ACK from
// side with CSeq cseq brings to a delayed offer, without its SDP: for the
// caller's INVITE, or for the last re-INVITE relayed without an offer,
// while the answer is not yet recorded; nil when the ACK answers none.
func (s *State) AwaitedAnswer(side string, cseq uint32) *eventpb.InDialogRelayed {
	if s.Phase != PhaseAnswered {
		return nil
	}
	if side == "a" && s.DelayedOffer() && s.CallerAnswer == nil && cseq == s.Started.GetALeg().GetCseq() {
		l := s.WinningLeg()
		return &eventpb.InDialogRelayed{FromSide: "a", Method: "ACK", InCseq: cseq, OutCseq: l.Attempt.GetCseq(), Leg: l.N}
	}
	if ri := s.Reinvite; ri != nil && s.ReinviteAnswer == nil && side == ri.FromSide && cseq == ri.InCseq {
		return &eventpb.InDialogRelayed{FromSide: side, Method: "ACK", InCseq: cseq, OutCseq: ri.OutCseq, Leg: ri.Leg}
	}
	return nil
}

// NewState is the state of a call with no events.
func NewState(id string) *State {
	return &State{ID: id, HeldBy: map[string]bool{}, Reliables: map[uint32]Reliable{}}
}

// Leg returns leg n, or nil.
func (s *State) Leg(n uint32) *Leg {
	if n == 0 || int(n) > len(s.Legs) {
		return nil
	}
	return s.Legs[n-1]
}

// WinningLeg returns the answered leg, or nil.
func (s *State) WinningLeg() *Leg { return s.Leg(s.Winner) }

// Apply folds one event into the state. It reads no clock and does no I/O
// (invariant 3); t is the event's envelope time.
func (s *State) Apply(version uint64, t time.Time, ev proto.Message) error {
	switch e := ev.(type) {
	case *eventpb.CallStarted:
		if s.Phase != PhaseNone {
			return fmt.Errorf("call %s: CallStarted at phase %s", s.ID, s.Phase)
		}
		s.Phase, s.Started, s.StartedAt = PhaseTrying, e, t
		s.ACSeq = 0
	case *eventpb.LegAttempted:
		if int(e.Leg) != len(s.Legs)+1 {
			return fmt.Errorf("call %s: leg %d attempted after %d legs", s.ID, e.Leg, len(s.Legs))
		}
		s.Legs = append(s.Legs, &Leg{N: e.Leg, Attempt: e, CSeq: e.Cseq})
	case *eventpb.LegProgress:
		l := s.Leg(e.Leg)
		if l == nil {
			return fmt.Errorf("call %s: progress on unknown leg %d", s.ID, e.Leg)
		}
		if e.Code > l.Progress {
			l.Progress = e.Code
		}
		if e.RemoteTag != "" {
			l.RemoteTag = e.RemoteTag
		}
		if e.Contact != "" {
			l.EarlyContact, l.EarlyRoute = e.Contact, e.RouteSet
		}
		if e.ARseq > 0 {
			s.Reliables[e.ARseq] = Reliable{Leg: e.Leg, RSeq: e.Rseq}
			if e.ARseq > s.ARSeq {
				s.ARSeq = e.ARseq
			}
		}
	case *eventpb.LegAnswered:
		l := s.Leg(e.Leg)
		if l == nil {
			return fmt.Errorf("call %s: answer on unknown leg %d", s.ID, e.Leg)
		}
		l.Answered, l.RemoteTag = e, e.RemoteTag
		if e.SessionExpires > 0 {
			s.SessionInterval = e.SessionExpires
		}
	case *eventpb.LegFailed:
		l := s.Leg(e.Leg)
		if l == nil {
			return fmt.Errorf("call %s: failure on unknown leg %d", s.ID, e.Leg)
		}
		l.Failed = e
	case *eventpb.CallAnswered:
		if s.Phase != PhaseTrying || s.Leg(e.Leg) == nil {
			return fmt.Errorf("call %s: CallAnswered(leg %d) at phase %s", s.ID, e.Leg, s.Phase)
		}
		s.Phase, s.Winner, s.AnswerAt, s.RefreshedAt = PhaseAnswered, e.Leg, t, t
		if s.SessionInterval == 0 && s.Started.GetSessionExpires() > 0 {
			s.SessionInterval = s.Started.GetSessionExpires() // the caller's own timer
		}
	case *eventpb.InDialogRelayed:
		if e.Method == "ACK" && e.FromSide == "a" && s.Phase != PhaseNone && e.InCseq == s.Started.GetALeg().GetCseq() {
			s.CallerAnswer = e
		}
		switch {
		case e.Method == "INVITE": // the next re-INVITE ends the last one's exchange
			s.Reinvite, s.ReinviteAnswer = nil, nil
			if e.DelayedOffer {
				s.Reinvite = e
			}
		case e.Method == "ACK" && s.Reinvite != nil && e.FromSide == s.Reinvite.FromSide && e.InCseq == s.Reinvite.InCseq:
			s.ReinviteAnswer = e
		}
		if e.FromSide == "a" {
			l := s.WinningLeg()
			if e.Leg != 0 {
				l = s.Leg(e.Leg)
			}
			if l != nil && e.OutCseq > l.CSeq {
				l.CSeq = e.OutCseq
			}
		} else if e.OutCseq > s.ACSeq {
			s.ACSeq = e.OutCseq
		}
	case *eventpb.HoldChanged:
		s.HeldBy[e.By] = e.Held
	case *eventpb.SessionRefreshed:
		s.SessionInterval, s.RefreshedAt = e.Interval, t
	case *eventpb.CallEnded:
		if s.Phase != PhaseAnswered {
			return fmt.Errorf("call %s: CallEnded at phase %s", s.ID, s.Phase)
		}
		s.Phase, s.Ended, s.EndedAt = PhaseEnded, e, t
		if e.AByeCseq > s.ACSeq {
			s.ACSeq = e.AByeCseq
		}
		if l := s.WinningLeg(); l != nil && e.BByeCseq > l.CSeq {
			l.CSeq = e.BByeCseq
		}
	case *eventpb.CallFailed:
		if s.Phase != PhaseTrying {
			return fmt.Errorf("call %s: CallFailed at phase %s", s.ID, s.Phase)
		}
		s.Phase, s.Failed, s.EndedAt = PhaseFailed, e, t
	default:
		return fmt.Errorf("call %s: unexpected event %T", s.ID, ev)
	}
	s.Version = version
	return nil
}

// Held tells whether either side has the call on hold.
func (s *State) Held() bool {
	for _, h := range s.HeldBy {
		if h {
			return true
		}
	}
	return false
}

// StateName is the API's name for the call's state.
func (s *State) StateName() string {
	switch s.Phase {
	case PhaseTrying:
		for _, l := range s.Legs {
			if l.Progress >= 180 {
				return "ringing"
			}
		}
		return "trying"
	case PhaseAnswered:
		if s.Held() {
			return "held"
		}
		return "answered"
	}
	return s.Phase.String()
}
