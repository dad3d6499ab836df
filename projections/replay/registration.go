package replay

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// RegistrationLadder replays the events of aor's registration (its stream,
// in version order) with the registrar's Apply.
func RegistrationLadder(aor string, envs []*eventpb.Envelope) *Ladder {
	f := newRegFold(aor)
	l := &Ladder{Kind: "registration", Name: aor, Stream: registrar.StreamName(aor), Lanes: []string{laneUA, laneRegistrar}}
	for _, env := range envs {
		r := row(env)
		msg, err := f.apply(env)
		if err != nil {
			r.Summary, r.Skipped = skipSummary(env, err), true
			if errors.Is(err, events.ErrUnknownType) {
				r.Event = "unknown"
			}
		} else {
			r.Summary = regSummary(msg)
		}
		r.State = regState(f.reg)
		if m := env.GetCause().GetMethod(); m == "" || m == "timer" {
			r.arrow(dirTimer, "", laneRegistrar)
		} else {
			r.arrow(laneUA, "", laneRegistrar)
		}
		l.Rows = append(l.Rows, r)
	}
	return l
}

func bindingNote(b *eventpb.Binding) string {
	s := b.GetContact() + " until " + formatTime(b.GetExpiresAt().AsTime())
	if q := b.GetQMilli(); q >= 0 {
		s += fmt.Sprintf(" q=%g", float64(q)/1000)
	}
	return s
}

// regSummary is the payload of a registration event in short.
func regSummary(msg proto.Message) string {
	switch e := msg.(type) {
	case *eventpb.BindingAdded:
		return "add " + bindingNote(e.Binding)
	case *eventpb.BindingRefreshed:
		return "refresh " + bindingNote(e.Binding)
	case *eventpb.BindingRemoved:
		if e.Wildcard {
			return "remove " + e.Contact + " (Contact: *)"
		}
		return "remove " + e.Contact
	case *eventpb.BindingExpired:
		return "expire " + e.Contact + " (expiry " + formatTime(e.ExpiredAt.AsTime()) + ")"
	}
	return fmt.Sprintf("%T (not a registration event)", msg)
}

// regState is a registration's bindings in one line: "2 bound:
// sip:a@h until T; sip:b@h until T", or "none bound".
func regState(st *registrar.State) string {
	if len(st.Binds) == 0 {
		return "none bound"
	}
	parts := make([]string, 0, len(st.Binds))
	for _, b := range st.Binds {
		parts = append(parts, b.Contact+" until "+formatTime(b.ExpiresAt))
	}
	return fmt.Sprintf("%d bound: %s", len(st.Binds), strings.Join(parts, "; "))
}
