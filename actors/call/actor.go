package call

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/internal/sipstatus"
)

// Internal messages.
type (
	legResponse struct {
		leg uint32
		res *sip.Response
		err error
	}
	relayResponse struct {
		seq uint64 // which relay
		res *sip.Response
		err error
	}
	timerMsg struct {
		kind string // "noanswer", "session", "retx-a", "retx-b", "linger"
		gen  uint64
	}
)

// relay is an in-dialog request being relayed to the other side.
type relay struct {
	seq    uint64
	side   string // where it came from
	in     *sip.Request
	tx     Responder
	done   chan struct{}
	offer  []byte // SDP of the request, for hold
	method string
	// resumed: taken up again after a restart (resumeRelay); nothing was
	// sent for it by this activation.
	resumed bool
}

// owedAck is a far side's 2xx whose ACK waits for the answer in the
// requesting side's ACK (inCSeq: the requester's INVITE CSeq).
type owedAck struct {
	res    *sip.Response
	leg    *Leg // the answering leg, for the initial INVITE; nil for a relay
	inCSeq uint32
}

// retx is a 2xx to an INVITE Tandem keeps retransmitting until its ACK.
type retx struct {
	res      *sip.Response
	interval time.Duration
	deadline time.Time
	gen      uint64
	timer    clock.Timer
}

// callActor is one call. Everything but the fields marked "memory" is
// derived from the events (state); memory is what a live activation knows
// of transactions in flight and is lost in a crash by design.
type callActor struct {
	m      *Manager
	cfg    *Config
	id     string
	stream string // StreamName(id)
	aTag   string // ALegTag(id)
	state  *State

	broken error // load or append failed: answer 500, then retire

	// memory
	aReq        *sip.Request // the caller's INVITE, while its transaction lives
	aTx         Responder
	aDone       chan struct{}
	aContactHdr string // aContact's value, once built
	relay       *relay
	relaySeq    uint64
	retx        map[string]*retx // by side
	// owed: 2xx answers to an INVITE that carried no offer (delayed offer,
	// RFC 3261 13.2.1): the far side's ACK must carry the answer, which
	// comes in the ACK of the side named by the key.
	owed map[string]*owedAck
	// acks: the ACKs sent for 2xx answers, by branch (ackBranch), to be
	// sent again, unchanged, for a retransmitted 2xx.
	acks     map[string]*sip.Request
	timers   map[string]clock.Timer
	timerGen uint64
	lastMsg  time.Time
	retired  bool
	// loaded: the stream has been read (or skipped for a new call's first
	// INVITE: optimistic).
	loaded, optimistic bool
}

func newCallActor(m *Manager, id string) *callActor {
	return &callActor{m: m, cfg: &m.cfg, id: id, stream: StreamName(id), aTag: ALegTag(id), state: NewState(id), retx: map[string]*retx{}, timers: map[string]clock.Timer{},
		owed: map[string]*owedAck{}, acks: map[string]*sip.Request{}}
}

// Receive handles one message.
func (a *callActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *recoverMsg, *Invite, *InDialog, *Cancel, *Stray, *legResponse, *relayResponse, *timerMsg:
	case *actor.Stopping:
		a.stopTimers()
		return
	default:
		return // Started and other system messages: the stream is read with the first message
	}
	a.ensureLoaded(ctx)
	switch msg := ctx.Message().(type) {
	case *recoverMsg:
	case *Invite:
		a.onInvite(ctx, msg)
	case *InDialog:
		a.onInDialog(ctx, msg)
	case *Cancel:
		a.onCancel(ctx, msg)
	case *Stray:
		a.onStray(ctx, msg)
	case *legResponse:
		a.onLegResponse(ctx, msg)
	case *relayResponse:
		a.onRelayResponse(ctx, msg)
	case *timerMsg:
		a.onTimer(ctx, msg)
	default:
		return
	}
	if tm, ok := ctx.Message().(*timerMsg); !ok || tm.kind != "linger" {
		a.lastMsg = a.cfg.Clock.Now() // the linger timer is not activity
	}
	a.maybeRetire(ctx)
}

// recoverMsg activates a call after a restart (Manager.Activate).
type recoverMsg struct{}

// ensureLoaded replays the stream before the first message is handled and
// reconciles the call with the world (recover). A first INVITE skips the
// read: a new call's stream is empty, and the append of CallStarted with
// "no stream" as the expected version proves it (optimistic; a
// retransmission after a restart finds the stream there, see onInvite).
func (a *callActor) ensureLoaded(ctx actor.Context) {
	if a.loaded {
		return
	}
	a.loaded = true
	if _, ok := ctx.Message().(*Invite); ok {
		a.optimistic = true
		return
	}
	a.broken = a.load()
	if a.broken == nil {
		a.recover(ctx)
	}
}

// load replays the call's stream.
func (a *callActor) load() error {
	stream := a.stream
	from := uint64(1)
	for {
		evs, err := a.cfg.Store.ReadStream(context.Background(), stream, from, 256)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		for _, env := range evs {
			msg, err := events.Unwrap(env)
			if err != nil {
				if errors.Is(err, events.ErrUnknownType) {
					a.state.Version = env.GetVersion()
					continue
				}
				return fmt.Errorf("replay %s: %w", stream, err)
			}
			if err := a.state.Apply(env.GetVersion(), env.GetTime().AsTime(), msg); err != nil {
				return fmt.Errorf("replay %s: %w", stream, err)
			}
		}
		if len(evs) < 256 {
			return nil
		}
		from = a.state.Version + 1
	}
}

// recover reconciles a replayed call with the world: an answered call
// re-arms its session timer; a call that was still ringing when the last
// activation died has lost the caller's transaction, so it is ended
// cleanly: CANCEL to every pending B leg and 487 to the caller.
func (a *callActor) recover(ctx actor.Context) {
	switch a.state.Phase {
	case PhaseTrying:
		a.cfg.Logger.Warn("call was ringing when its last activation stopped; ending it", "call", a.id)
		a.fail(ctx, "error", 487, "Request Terminated", CauseTemporary, "call recovered after a restart while ringing", nil)
	case PhaseAnswered:
		a.armSession()
		// The 2xx to the caller may not have been ACKed before the crash:
		// retransmit it for what is left of 64*T1 after the answer
		// (B2BUA-PITFALLS 2). If the ACK did come, the caller ACKs the
		// retransmission again (13.2.2.4), which stops it.
		if left := a.state.AnswerAt.Add(64 * a.cfg.T1).Sub(a.cfg.Clock.Now()); left > 0 {
			if ok := a.okToA(); ok != nil {
				a.startRetx("a", ok)
				a.retx["a"].deadline = a.state.AnswerAt.Add(64 * a.cfg.T1)
			}
		}
	}
}

// persist appends evs, applies them, and on failure breaks the actor (a
// version conflict means another activation owns the stream: invariant 1).
func (a *callActor) persist(cause *eventpb.Cause, evs ...proto.Message) error {
	if a.broken != nil {
		return a.broken
	}
	if len(evs) == 0 {
		return nil
	}
	now := a.cfg.Clock.Now()
	envs := make([]*eventpb.Envelope, 0, len(evs))
	for _, e := range evs {
		env, err := events.Wrap(e, now, a.cfg.Node, cause)
		if err != nil {
			return err
		}
		envs = append(envs, env)
	}
	res, err := a.cfg.Store.Append(context.Background(), a.stream, int64(a.state.Version), envs)
	if err != nil {
		if errors.Is(err, events.ErrVersionConflict) {
			a.cfg.Logger.Error("call actor fenced: another activation owns the stream", "call", a.id, "err", err)
		} else {
			a.cfg.Logger.Error("call event not persisted", "call", a.id, "err", err)
		}
		a.broken = err
		return err
	}
	v := res.Version - uint64(len(evs))
	for _, e := range evs {
		v++
		if err := a.state.Apply(v, now, e); err != nil {
			// A decision that does not fold is a bug; the events are
			// durable, so the next activation will refuse them too.
			a.cfg.Logger.Error("call event does not apply", "call", a.id, "err", err)
			a.broken = err
			return err
		}
	}
	return nil
}

func causeOf(req *sip.Request) *eventpb.Cause {
	c := &eventpb.Cause{Method: string(req.Method), Source: strings.ToLower(req.Transport()) + ":" + req.Source()}
	if h := req.CallID(); h != nil {
		c.CallId = h.Value()
	}
	if cs := req.CSeq(); cs != nil {
		c.Cseq = cs.SeqNo
	}
	if v := req.Via(); v != nil {
		c.Branch, _ = v.Params.Get("branch")
	}
	return c
}

func responseCause(res *sip.Response, leg uint32) *eventpb.Cause {
	c := &eventpb.Cause{Method: sipstatus.Text(res.StatusCode), Source: "leg-b" + strconv.FormatUint(uint64(leg), 10)}
	if h := res.CallID(); h != nil {
		c.CallId = h.Value()
	}
	if cs := res.CSeq(); cs != nil {
		c.Cseq = cs.SeqNo
	}
	if v := res.Via(); v != nil {
		c.Branch, _ = v.Params.Get("branch")
	}
	return c
}

func timerCause(kind string) *eventpb.Cause { return &eventpb.Cause{Method: "timer", Source: kind} }

// ---------------------------------------------------------------- INVITE
