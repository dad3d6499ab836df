package replay

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// fold is one stream's state as the actors build it: exactly one of call
// and reg is set.
type fold struct {
	version uint64 // the last version folded or left out
	call    *call.State
	reg     *registrar.State
}

func newCallFold(id string) *fold { return &fold{call: call.NewState(id)} }

func newRegFold(aor string) *fold { return &fold{reg: &registrar.State{AOR: aor}} }

// apply decodes env and folds it with the actor's own Apply. It returns the
// payload (nil when it does not decode) and, when the event is left out of
// the fold, why: an error wrapping events.ErrUnknownType or
// events.ErrCorrupt, or the Apply error of an event that does not fold.
func (f *fold) apply(env *eventpb.Envelope) (proto.Message, error) {
	f.version = env.GetVersion()
	msg, err := events.Unwrap(env)
	if err != nil {
		return nil, err
	}
	if f.call != nil {
		return msg, f.call.Apply(env.GetVersion(), env.GetTime().AsTime(), msg)
	}
	f.reg.Apply(msg)
	f.reg.Version = env.GetVersion()
	return msg, nil
}

// skipSummary says why the event env was left out of the fold.
func skipSummary(env *eventpb.Envelope, err error) string {
	switch {
	case errors.Is(err, events.ErrUnknownType):
		return "unknown event type " + env.GetType() + "; not folded"
	case errors.Is(err, events.ErrCorrupt):
		return "payload does not decode; not folded"
	}
	return "does not apply: " + err.Error()
}
