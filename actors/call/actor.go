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
	m     *Manager
	cfg   *Config
	id    string
	state *State

	broken error // load or append failed: answer 500, then retire

	// memory
	aReq     *sip.Request // the caller's INVITE, while its transaction lives
	aTx      Responder
	aDone    chan struct{}
	relay    *relay
	relaySeq uint64
	retx     map[string]*retx // by side
	// owed: 2xx answers to an INVITE that carried no offer (delayed offer,
	// RFC 3261 13.2.1): the far side's ACK must carry the answer, which
	// comes in the ACK of the side named by the key.
	owed     map[string]*owedAck
	timers   map[string]clock.Timer
	timerGen uint64
	lastMsg  time.Time
	retired  bool
}

func newCallActor(m *Manager, id string) *callActor {
	return &callActor{m: m, cfg: &m.cfg, id: id, state: NewState(id), retx: map[string]*retx{}, timers: map[string]clock.Timer{},
		owed: map[string]*owedAck{}}
}

// Receive handles one message.
func (a *callActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.broken = a.load()
		if a.broken == nil {
			a.recover(ctx)
		}
		if a.state.Phase == PhaseNone {
			return // a new call: its first message follows
		}
	case *actor.Stopping:
		a.stopTimers()
		return
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

// load replays the call's stream.
func (a *callActor) load() error {
	stream := StreamName(a.id)
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
	res, err := a.cfg.Store.Append(context.Background(), StreamName(a.id), int64(a.state.Version), envs)
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
	c := &eventpb.Cause{Method: fmt.Sprintf("%d", res.StatusCode), Source: fmt.Sprintf("leg-b%d", leg)}
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

func (a *callActor) onInvite(ctx actor.Context, m *Invite) {
	if a.broken != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		closeDone(m.Done)
		return
	}
	if a.state.Phase != PhaseNone {
		// A retransmission the transaction layer did not absorb (it came
		// after a restart): answer from state, no new event (invariant 5).
		a.answerFromState(m)
		return
	}
	offer := m.Req.Body()
	mf := uint32(70)
	if h := m.Req.MaxForwards(); h != nil {
		mf = uint32(h.Val())
		if mf > 0 {
			mf--
		}
	}
	se, _ := sessionExpires(headerValue(m.Req, "Session-Expires"))
	minSE, _ := sessionExpires(headerValue(m.Req, "Min-SE"))
	aleg := &eventpb.ALeg{
		CallId: m.Req.CallID().Value(), From: m.Req.From().Value(), To: m.Req.To().Value(),
		Cseq: m.Req.CSeq().SeqNo, LocalTag: ALegTag(a.id),
		Source: strings.ToLower(m.Req.Transport()) + ":" + m.Req.Source(),
	}
	for _, h := range m.Req.GetHeaders("Via") {
		aleg.Via = append(aleg.Via, h.Value())
	}
	if c := m.Req.Contact(); c != nil {
		aleg.Contact = c.Address.String()
	}
	for _, h := range m.Req.GetHeaders("Record-Route") {
		aleg.RecordRoute = append(aleg.RecordRoute, h.Value())
	}
	if v := m.Req.Via(); v != nil {
		aleg.Branch, _ = v.Params.Get("branch")
	}
	evs := []proto.Message{&eventpb.CallStarted{
		Caller: m.Caller, Callee: m.Callee, RequestUri: m.Req.Recipient.String(),
		Source: aleg.Source, Node: a.cfg.Node, ALeg: aleg,
		Offer: offer, OfferType: contentType(m.Req), MaxForwards: mf,
		SessionExpires: se, MinSe: minSE,
	}}
	targets := m.Targets
	if len(targets) > a.cfg.MaxForks {
		targets = targets[:a.cfg.MaxForks]
	}
	local := a.cfg.Transport.Local()
	for i, t := range targets {
		n := uint32(i + 1)
		tag := BLegTag(a.id, n)
		evs = append(evs, &eventpb.LegAttempted{
			Leg: n, RequestUri: t, CallId: tag, LocalTag: tag,
			Branch: "z9hG4bK" + a.cfg.NewBranch(), Cseq: 1,
			From: "<" + m.Caller + ">;tag=" + tag, To: "<" + m.Callee + ">",
		})
		evs[len(evs)-1].(*eventpb.LegAttempted).Via = local.via(evs[len(evs)-1].(*eventpb.LegAttempted).Branch)
	}
	a.aReq, a.aTx, a.aDone = m.Req, m.Tx, m.Done
	if err := a.persist(causeOf(m.Req), evs...); err != nil {
		a.respondA(500, "Server Internal Error", nil, "", nil)
		return
	}
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.CallAttempt()
	}
	a.arm("noanswer", a.cfg.NoAnswerTimeout)
	for _, l := range a.state.Legs {
		a.sendLegInvite(l)
	}
}

func (a *callActor) sendLegInvite(l *Leg) {
	st := a.state.Started
	at := l.Attempt
	m := newMsg("INVITE", at.RequestUri)
	m.h("Via", at.Via)
	m.h("Max-Forwards", strconv.Itoa(int(st.MaxForwards)))
	m.h("From", at.From)
	m.h("To", at.To)
	m.h("Call-ID", at.CallId)
	m.h("CSeq", fmt.Sprintf("%d INVITE", at.Cseq))
	m.h("Contact", a.cfg.Transport.Local().contact(at.LocalTag))
	m.h("Allow", allowMethods)
	if a.aReq != nil {
		copyHeaders(m, a.aReq, true, "Allow")
	}
	req, err := m.request(st.OfferType, st.Offer)
	if err != nil {
		a.deliverLater(&legResponse{leg: l.N, err: err})
		return
	}
	n := l.N
	if err := a.cfg.Transport.Request(req, func(res *sip.Response, err error) {
		_ = a.m.Deliver(a.id, &legResponse{leg: n, res: res, err: err})
	}); err != nil {
		a.deliverLater(&legResponse{leg: n, err: err})
	}
}

// allowMethods is the Allow header Tandem sends on both legs.
const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK"

func (a *callActor) deliverLater(msg any) {
	go func() { _ = a.m.Deliver(a.id, msg) }()
}

// answerFromState answers a retransmitted INVITE with what the call
// already said.
func (a *callActor) answerFromState(m *Invite) {
	defer closeDone(m.Done)
	st := a.state
	switch st.Phase {
	case PhaseTrying:
		if a.aTx != nil {
			return // the live transaction answers
		}
		a.respondTo(m.Tx, m.Req, 100, "Trying", nil)
	case PhaseAnswered, PhaseEnded:
		if res := a.okToA(); res != nil {
			a.send(m.Tx, res)
		}
	case PhaseFailed:
		f := st.Failed
		res := a.responseToA(int(f.SipStatus), f.SipReason, nil, "")
		a.send(m.Tx, res)
	}
}

// ------------------------------------------------------------ B legs

func (a *callActor) onLegResponse(ctx actor.Context, m *legResponse) {
	l := a.state.Leg(m.leg)
	if l == nil {
		return
	}
	if m.res == nil { // transaction failed: timeout or transport
		if l.Pending() {
			a.legFailed(ctx, l, 408, "Request Timeout ("+errText(m.err)+")", nil)
		}
		return
	}
	res := m.res
	if cs := res.CSeq(); cs == nil || cs.MethodName != sip.INVITE {
		return // the response to a CANCEL or BYE we sent: nothing to do
	}
	code := res.StatusCode
	switch {
	case code < 200:
		a.legProvisional(l, res)
	case code < 300:
		a.legAnswered(ctx, l, res)
	default:
		if l.Pending() {
			a.legFailed(ctx, l, uint32(code), res.Reason, res)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "no response"
	}
	return err.Error()
}

func (a *callActor) legProvisional(l *Leg, res *sip.Response) {
	if res.StatusCode == 100 || !l.Pending() || a.state.Phase != PhaseTrying {
		return
	}
	tag := toTag(res)
	body := res.Body()
	// A reliable provisional (RFC 3262) is relayed reliably when the caller
	// supports it, under an RSeq of Tandem's own (forks have RSeq spaces of
	// their own); a retransmission of one keeps its RSeq.
	var rseq, arseq uint32
	if hasOption(res, "Require", "100rel") && a.callerSupports100rel() {
		if n, err := strconv.ParseUint(strings.TrimSpace(headerValue(res, "RSeq")), 10, 32); err == nil && n > 0 {
			rseq = uint32(n)
			for k, r := range a.state.Reliables {
				if r.Leg == l.N && r.RSeq == rseq {
					arseq = k
				}
			}
		}
	}
	newReliable := rseq > 0 && arseq == 0
	// A provisional that tells nothing new (a repeated 180) is relayed
	// without an event; anything new is durable first.
	if uint32(res.StatusCode) > l.Progress || len(body) > 0 && arseq == 0 || tag != l.RemoteTag || newReliable {
		ev := &eventpb.LegProgress{Leg: l.N, Code: uint32(res.StatusCode), Reason: res.Reason,
			RemoteTag: tag, Sdp: body, ContentType: contentType(res)}
		if c := res.Contact(); c != nil {
			ev.Contact = c.Address.String()
			rr := res.GetHeaders("Record-Route")
			for i := len(rr) - 1; i >= 0; i-- {
				ev.RouteSet = append(ev.RouteSet, rr[i].Value())
			}
		}
		if newReliable {
			arseq = a.state.ARSeq + 1
			ev.Rseq, ev.ARseq = rseq, arseq
		}
		if err := a.persist(responseCause(res, l.N), ev); err != nil {
			return
		}
	}
	if a.aTx != nil {
		out := a.responseToA(res.StatusCode, res.Reason, body, contentType(res))
		copyAllowedResponse(out, res)
		if arseq > 0 {
			out.AppendHeader(sip.NewHeader("Require", "100rel"))
			out.AppendHeader(sip.NewHeader("RSeq", strconv.Itoa(int(arseq))))
		}
		a.send(a.aTx, out)
	}
}

// callerSupports100rel tells whether the caller's INVITE offered reliable
// provisionals.
func (a *callActor) callerSupports100rel() bool {
	return a.aReq != nil && (hasOption(a.aReq, "Supported", "100rel") || hasOption(a.aReq, "Require", "100rel"))
}

// hasOption tells whether a header (Supported, Require) lists opt.
func hasOption(m headered, name, opt string) bool {
	for _, h := range m.GetHeaders(name) {
		for _, p := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(p), opt) {
				return true
			}
		}
	}
	return false
}

// onPrack relays the caller's PRACK (RFC 3262) to the leg whose reliable
// provisional it acknowledges.
func (a *callActor) onPrack(m *InDialog) {
	fields := strings.Fields(headerValue(m.Req, "RAck"))
	var rel Reliable
	ok := len(fields) == 3
	if ok {
		n, err := strconv.ParseUint(fields[0], 10, 32)
		rel, ok = a.state.Reliables[uint32(n)]
		ok = ok && err == nil
	}
	l := a.state.Leg(rel.Leg)
	if !ok || l == nil || a.state.Phase.Over() || l.Failed != nil {
		a.respondTo(m.Tx, m.Req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	if a.relay != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", [][2]string{{"Retry-After", "1"}})
		return
	}
	out := l.CSeq + 1
	ev := &eventpb.InDialogRelayed{FromSide: "a", Method: "PRACK", InCseq: m.Req.CSeq().SeqNo, OutCseq: out, Leg: l.N}
	if err := a.persist(causeOf(m.Req), ev); err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	at := l.Attempt
	target := l.EarlyContact
	if target == "" {
		target = at.RequestUri
	}
	msg := newMsg("PRACK", target)
	msg.h("Via", a.cfg.Transport.Local().via("z9hG4bK"+a.cfg.NewBranch()))
	for _, r := range l.EarlyRoute {
		msg.h("Route", r)
	}
	msg.h("Max-Forwards", "70")
	msg.h("From", at.From)
	msg.h("To", at.To+";tag="+l.RemoteTag)
	msg.h("Call-ID", at.CallId)
	msg.h("CSeq", fmt.Sprintf("%d PRACK", out))
	msg.h("RAck", fmt.Sprintf("%d %d INVITE", rel.RSeq, at.Cseq))
	req, err := msg.request(contentType(m.Req), m.Req.Body())
	if err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	a.startRelay(m, req, "a")
}

func (a *callActor) legAnswered(ctx actor.Context, l *Leg, res *sip.Response) {
	st := a.state
	if st.Phase == PhaseAnswered && st.Winner == l.N {
		if a.owed["a"] == nil || a.owed["a"].leg == nil {
			a.ackLeg(l, res, nil, "") // a retransmitted 2xx: ACK it again (13.2.2.4)
		}
		return
	}
	if st.Phase != PhaseTrying || !l.Pending() {
		if l.Answered != nil {
			a.ackLeg(l, res, nil, "")
			return
		}
		// Another leg won, or the call is over: ACK then BYE this one
		// (B2BUA-PITFALLS 5).
		if l.Failed == nil || l.Failed.Code != 200 {
			if err := a.persist(responseCause(res, l.N), &eventpb.LegFailed{Leg: l.N, Code: uint32(res.StatusCode), Reason: "answered after the call was decided; ACK and BYE"}); err != nil {
				return
			}
		}
		a.ackAndBye(l, res)
		return
	}
	se, ref := sessionExpires(headerValue(res, "Session-Expires"))
	ans := &eventpb.LegAnswered{Leg: l.N, Code: uint32(res.StatusCode), RemoteTag: toTag(res),
		Sdp: res.Body(), ContentType: contentType(res), SessionExpires: se, Refresher: ref}
	if c := res.Contact(); c != nil {
		ans.Contact = c.Address.String()
	}
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		ans.RouteSet = append(ans.RouteSet, rr[i].Value())
	}
	if err := a.persist(responseCause(res, l.N), ans, &eventpb.CallAnswered{Leg: l.N}); err != nil {
		a.ackAndBye(l, res)
		a.respondA(500, "Server Internal Error", nil, "", nil)
		return
	}
	a.disarm("noanswer")
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.CallAnswered(a.state.AnswerAt.Sub(a.state.StartedAt))
	}
	if len(a.state.Started.GetOffer()) == 0 {
		// Delayed offer: the 2xx carries the callee's offer and the
		// caller's ACK the answer, which the callee's ACK must carry.
		a.owed["a"] = &owedAck{res: res, leg: l, inCSeq: a.state.Started.GetALeg().GetCseq()}
	} else {
		a.ackLeg(l, res, nil, "")
	}
	for _, o := range a.state.Legs {
		if o.N != l.N && o.Pending() {
			a.cancelLeg(o)
		}
	}
	ok := a.okToA()
	if a.aTx != nil {
		a.send(a.aTx, ok)
	} else {
		_ = a.cfg.Transport.Write(ok)
	}
	a.startRetx("a", ok)
	a.finishA()
	a.armSession()
}

// okToA is the 200 OK the caller gets (and gets again on a retransmitted
// INVITE), built from the winning leg's answer.
func (a *callActor) okToA() *sip.Response {
	l := a.state.WinningLeg()
	if l == nil || l.Answered == nil {
		return nil
	}
	ans := l.Answered
	res := a.responseToA(int(ans.Code), "OK", ans.Sdp, ans.ContentType)
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if ans.SessionExpires > 0 {
		ref := ans.Refresher
		if ref == "" {
			ref = "uas"
		}
		res.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", ans.SessionExpires, ref)))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	return res
}

func (a *callActor) legFailed(ctx actor.Context, l *Leg, code uint32, reason string, res *sip.Response) {
	cause := timerCause("leg")
	if res != nil {
		cause = responseCause(res, l.N)
	}
	if err := a.persist(cause, &eventpb.LegFailed{Leg: l.N, Code: code, Reason: reason}); err != nil {
		return
	}
	if a.state.Phase != PhaseTrying {
		return
	}
	for _, o := range a.state.Legs {
		if o.Pending() {
			return
		}
	}
	// Every branch failed: the best response goes to the caller (16.7).
	code, reason = bestResponse(a.state.Legs)
	a.fail(ctx, "rejected", code, reason, Q850(code), "", cause)
}

// bestResponse picks the response a caller gets when every leg failed
// (RFC 3261 16.7 step 6): a 6xx if any, else the lowest class, the first of
// it; 503 becomes 500; a challenge from a callee is not forwarded across
// the B2BUA (403).
func bestResponse(legs []*Leg) (uint32, string) {
	var best *eventpb.LegFailed
	for _, l := range legs {
		f := l.Failed
		if f == nil || f.Code == 200 {
			continue
		}
		switch {
		case best == nil:
			best = f
		case f.Code >= 600 && best.Code < 600:
			best = f
		case best.Code < 600 && f.Code/100 < best.Code/100:
			best = f
		}
	}
	if best == nil {
		return 480, "Temporarily Unavailable"
	}
	switch best.Code {
	case 503:
		return 500, "Server Internal Error"
	case 401, 407:
		return 403, "Forbidden"
	case 408:
		return 408, "Request Timeout"
	}
	reason := best.Reason
	if reason == "" {
		reason = "Call Failed"
	}
	return best.Code, reason
}

// fail ends an unanswered call: CallFailed, then the final response to the
// caller and CANCEL to every pending leg.
func (a *callActor) fail(ctx actor.Context, why string, code uint32, reason string, q850 uint32, text string, cause *eventpb.Cause) {
	if a.state.Phase != PhaseTrying {
		return
	}
	if cause == nil {
		cause = timerCause(why)
	}
	if err := a.persist(cause, &eventpb.CallFailed{Reason: why, SipStatus: code, SipReason: reason, Q850Cause: q850, Text: text}); err != nil {
		a.respondA(500, "Server Internal Error", nil, "", nil)
		return
	}
	a.disarm("noanswer")
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.CallFailed(int(code))
	}
	for _, l := range a.state.Legs {
		if l.Pending() {
			a.cancelLeg(l)
		}
	}
	var hdrs [][2]string
	if text != "" {
		hdrs = append(hdrs, [2]string{"Reason", fmt.Sprintf("Q.850;cause=%d;text=%q", q850, text)})
	}
	a.respondA(int(code), reason, nil, "", hdrs)
}

// ackLeg ACKs a 2xx on leg l (a new transaction, 13.2.2.4), along the
// route set of the answer.
func (a *callActor) ackLeg(l *Leg, res *sip.Response, body []byte, ctype string) {
	at := l.Attempt
	target := at.RequestUri
	if c := res.Contact(); c != nil {
		target = c.Address.String()
	}
	m := newMsg("ACK", target)
	m.h("Via", a.cfg.Transport.Local().via("z9hG4bK"+a.cfg.NewBranch()))
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		m.h("Route", rr[i].Value())
	}
	m.h("Max-Forwards", "70")
	m.h("From", at.From)
	m.h("To", res.To().Value())
	m.h("Call-ID", at.CallId)
	m.h("CSeq", fmt.Sprintf("%d ACK", res.CSeq().SeqNo))
	req, err := m.request(ctype, body)
	if err == nil {
		err = a.cfg.Transport.Write(req)
	}
	if err != nil {
		a.cfg.Logger.Warn("ACK not sent", "call", a.id, "leg", l.N, "err", err)
	}
}

// ackAndBye ACKs a 2xx that must not become a call, then hangs it up.
func (a *callActor) ackAndBye(l *Leg, res *sip.Response) {
	a.ackLeg(l, res, nil, "")
	target := l.Attempt.RequestUri
	if c := res.Contact(); c != nil {
		target = c.Address.String()
	}
	var route []string
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		route = append(route, rr[i].Value())
	}
	m := newMsg("BYE", target)
	m.h("Via", a.cfg.Transport.Local().via("z9hG4bK"+a.cfg.NewBranch()))
	for _, r := range route {
		m.h("Route", r)
	}
	m.h("Max-Forwards", "70")
	m.h("From", l.Attempt.From)
	m.h("To", res.To().Value())
	m.h("Call-ID", l.Attempt.CallId)
	m.h("CSeq", fmt.Sprintf("%d BYE", res.CSeq().SeqNo+1))
	m.h("Reason", `SIP;cause=200;text="Call completed elsewhere"`)
	if req, err := m.request("", nil); err == nil {
		_ = a.cfg.Transport.Request(req, func(*sip.Response, error) {})
	}
}

// cancelLeg sends CANCEL for leg l's INVITE (same branch, 9.1). Its 487
// then comes as the INVITE's final response.
func (a *callActor) cancelLeg(l *Leg) {
	at := l.Attempt
	m := newMsg("CANCEL", at.RequestUri)
	m.h("Via", at.Via)
	m.h("Max-Forwards", "70")
	m.h("From", at.From)
	m.h("To", at.To)
	m.h("Call-ID", at.CallId)
	m.h("CSeq", fmt.Sprintf("%d CANCEL", at.Cseq))
	req, err := m.request("", nil)
	if err != nil {
		return
	}
	if err := a.cfg.Transport.Request(req, func(*sip.Response, error) {}); err != nil {
		a.cfg.Logger.Warn("CANCEL not sent", "call", a.id, "leg", l.N, "err", err)
	}
}

// --------------------------------------------------------------- CANCEL

func (a *callActor) onCancel(ctx actor.Context, m *Cancel) {
	defer closeDone(m.Done)
	if a.broken != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	switch a.state.Phase {
	case PhaseNone:
		a.respondTo(m.Tx, m.Req, 481, "Call/Transaction Does Not Exist", nil)
		return
	case PhaseTrying:
		if err := a.persist(causeOf(m.Req), &eventpb.CallFailed{Reason: "cancel", SipStatus: 487,
			SipReason: "Request Terminated", Q850Cause: CauseOriginatorGone}); err != nil {
			a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
			return
		}
		a.disarm("noanswer")
		if a.cfg.Metrics != nil {
			a.cfg.Metrics.CallFailed(487)
		}
		a.respondTo(m.Tx, m.Req, 200, "OK", nil)
		for _, l := range a.state.Legs {
			if l.Pending() {
				a.cancelLeg(l)
			}
		}
		a.respondA(487, "Request Terminated", nil, "", nil)
	default:
		// The INVITE already has its final response: the CANCEL has no
		// effect (9.2), but the transaction exists, so 200.
		a.respondTo(m.Tx, m.Req, 200, "OK", nil)
	}
}

// --------------------------------------------------------- in dialog

func (a *callActor) onInDialog(ctx actor.Context, m *InDialog) {
	req := m.Req
	if req.IsAck() {
		a.onAck(m)
		return
	}
	defer func() {
		if a.relay == nil || a.relay.done != m.Done {
			closeDone(m.Done)
		}
	}()
	if a.broken != nil {
		a.respondTo(m.Tx, req, 500, "Server Internal Error", nil)
		return
	}
	st := a.state
	if req.Method == sip.PRACK && m.Side == "a" {
		a.onPrack(m)
		return
	}
	// The request must come from the side of the call's dialog it names.
	if m.Side == "b" && (st.Winner == 0 || m.Leg != st.Winner) {
		if l := st.Leg(m.Leg); l != nil && req.Method == sip.BYE {
			a.respondTo(m.Tx, req, 200, "OK", nil) // a losing leg hanging up
			return
		}
		a.respondTo(m.Tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	switch st.Phase {
	case PhaseAnswered:
	case PhaseEnded:
		if req.Method == sip.BYE && st.Ended.ByeCseq == req.CSeq().SeqNo && sideOf(st.Ended.By) == m.Side {
			a.respondTo(m.Tx, req, 200, "OK", nil) // retransmission
			return
		}
		a.respondTo(m.Tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	default:
		if req.Method == sip.BYE && m.Side == "a" && st.Phase == PhaseTrying {
			// A BYE before the 2xx (a caller giving up): like CANCEL.
			a.respondTo(m.Tx, req, 481, "Call/Transaction Does Not Exist", nil)
			return
		}
		a.respondTo(m.Tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	if req.Method == sip.BYE {
		a.onBye(m)
		return
	}
	switch req.Method {
	case sip.INVITE, sip.UPDATE, sip.INFO, sip.OPTIONS, sip.MESSAGE, sip.NOTIFY, sip.REFER:
	default:
		a.respondTo(m.Tx, req, 405, "Method Not Allowed", [][2]string{{"Allow", allowMethods}})
		return
	}
	if req.Method == sip.REFER || req.Method == sip.NOTIFY || req.Method == sip.MESSAGE {
		a.respondTo(m.Tx, req, 405, "Method Not Allowed", [][2]string{{"Allow", allowMethods}})
		return
	}
	if a.relay != nil {
		if req.Method == sip.INVITE || req.Method == sip.UPDATE {
			a.respondTo(m.Tx, req, 491, "Request Pending", nil) // 14.1 glare
		} else {
			a.respondTo(m.Tx, req, 500, "Server Internal Error", [][2]string{{"Retry-After", "1"}})
		}
		return
	}
	a.relayRequest(m)
}

func sideOf(by string) string {
	switch by {
	case "caller":
		return "a"
	case "callee":
		return "b"
	}
	return ""
}

func (a *callActor) onAck(m *InDialog) {
	if m.Req.CSeq() == nil {
		return
	}
	if r := a.retx[m.Side]; r != nil && r.res.CSeq() != nil && r.res.CSeq().SeqNo == m.Req.CSeq().SeqNo {
		a.stopRetx(m.Side)
	}
	if o := a.owed[m.Side]; o != nil && o.inCSeq == m.Req.CSeq().SeqNo {
		a.payOwed(m.Side, m.Req.Body(), contentType(m.Req))
	}
}

// payOwed sends the ACK owed to the side opposite to side, carrying body
// (the answer; nil when the call ends without one).
func (a *callActor) payOwed(side string, body []byte, ctype string) {
	o := a.owed[side]
	if o == nil {
		return
	}
	delete(a.owed, side)
	if o.leg != nil {
		a.ackLeg(o.leg, o.res, body, ctype)
		return
	}
	a.ackRelayedWith(o.res, otherSide(side), body, ctype)
}

func otherSide(side string) string {
	if side == "a" {
		return "b"
	}
	return "a"
}

// onBye ends an answered call: CallEnded is durable, then 200 to the
// sender and BYE to the other side.
func (a *callActor) onBye(m *InDialog) {
	st := a.state
	by, reason := "caller", "caller_bye"
	if m.Side == "b" {
		by, reason = "callee", "callee_bye"
	}
	ev := &eventpb.CallEnded{By: by, Reason: reason, SipStatus: 200, Q850Cause: CauseNormalClearing,
		ByeCseq: m.Req.CSeq().SeqNo, Text: headerValue(m.Req, "Reason")}
	if m.Side == "a" {
		ev.BByeCseq = st.WinningLeg().CSeq + 1
	} else {
		ev.AByeCseq = st.ACSeq + 1
	}
	if err := a.persist(causeOf(m.Req), ev); err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	a.respondTo(m.Tx, m.Req, 200, "OK", nil)
	a.afterEnd(m.Side)
}

// afterEnd sends the BYEs an ended call owes (to every side but from) and
// stops its timers.
func (a *callActor) afterEnd(from string) {
	e := a.state.Ended
	a.stopRetx("a")
	a.stopRetx("b")
	a.payOwed("a", nil, "")
	a.payOwed("b", nil, "")
	a.disarm("session")
	var hdrs []string
	if e.By == "system" {
		hdrs = append(hdrs, fmt.Sprintf("Q.850;cause=%d;text=%q", e.Q850Cause, e.Reason))
	}
	if from != "b" && e.BByeCseq > 0 {
		if req, err := a.requestToB("BYE", e.BByeCseq, nil, "", hdrs); err == nil {
			_ = a.cfg.Transport.Request(req, func(*sip.Response, error) {})
		}
	}
	if from != "a" && e.AByeCseq > 0 {
		if req, err := a.requestToA("BYE", e.AByeCseq, nil, "", hdrs); err == nil {
			_ = a.cfg.Transport.Request(req, func(*sip.Response, error) {})
		}
	}
}

// endBySystem ends an answered call on Tandem's own decision (session
// timer, missing ACK): BYE to both sides.
func (a *callActor) endBySystem(reason string, q850 uint32, text string) {
	if a.state.Phase != PhaseAnswered {
		return
	}
	ev := &eventpb.CallEnded{By: "system", Reason: reason, SipStatus: 200, Q850Cause: q850, Text: text,
		AByeCseq: a.state.ACSeq + 1, BByeCseq: a.state.WinningLeg().CSeq + 1}
	if err := a.persist(timerCause(reason), ev); err != nil {
		return
	}
	a.afterEnd("")
}

// relayRequest relays an in-dialog request to the other side.
func (a *callActor) relayRequest(m *InDialog) {
	st := a.state
	to := "b"
	var outCSeq uint32
	if m.Side == "a" {
		outCSeq = st.WinningLeg().CSeq + 1
	} else {
		to = "a"
		outCSeq = st.ACSeq + 1
	}
	ev := &eventpb.InDialogRelayed{FromSide: m.Side, Method: string(m.Req.Method), InCseq: m.Req.CSeq().SeqNo, OutCseq: outCSeq}
	if err := a.persist(causeOf(m.Req), ev); err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	var req *sip.Request
	var err error
	extra := []string(nil)
	if to == "b" {
		req, err = a.requestToB(string(m.Req.Method), outCSeq, m.Req.Body(), contentType(m.Req), extra, m.Req)
	} else {
		req, err = a.requestToA(string(m.Req.Method), outCSeq, m.Req.Body(), contentType(m.Req), extra, m.Req)
	}
	if err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	a.startRelay(m, req, m.Side)
}

// startRelay sends req, relayed from m, and keeps m's transaction until
// the far side's final answer.
func (a *callActor) startRelay(m *InDialog, req *sip.Request, side string) {
	a.relaySeq++
	r := &relay{seq: a.relaySeq, side: side, in: m.Req, tx: m.Tx, done: m.Done, offer: m.Req.Body(), method: string(m.Req.Method)}
	a.relay = r
	seq := r.seq
	if err := a.cfg.Transport.Request(req, func(res *sip.Response, err error) {
		_ = a.m.Deliver(a.id, &relayResponse{seq: seq, res: res, err: err})
	}); err != nil {
		a.relay = nil
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
	}
}

func (a *callActor) onRelayResponse(ctx actor.Context, m *relayResponse) {
	r := a.relay
	if m.res != nil && m.res.StatusCode >= 200 && m.res.StatusCode < 300 && m.res.CSeq() != nil && m.res.CSeq().MethodName == sip.INVITE {
		switch {
		case r != nil && r.seq == m.seq && len(r.offer) == 0:
			// A re-INVITE without an offer: the ACK carries the answer,
			// which comes in the requester's ACK.
			a.owed[r.side] = &owedAck{res: m.res, inCSeq: r.in.CSeq().SeqNo}
		case a.owed["a"] != nil && a.owed["a"].res.CSeq().SeqNo == m.res.CSeq().SeqNo && a.owed["a"].leg == nil,
			a.owed["b"] != nil && a.owed["b"].res.CSeq().SeqNo == m.res.CSeq().SeqNo && a.owed["b"].leg == nil:
			// a retransmission of a 2xx whose ACK is still owed
		default:
			// Every other 2xx to a relayed re-INVITE is ACKed at once,
			// even a retransmission arriving after the relay is done.
			a.ackRelayed(m.res, r)
		}
	}
	if r == nil || r.seq != m.seq {
		return
	}
	if m.res == nil {
		a.relay = nil
		a.respondTo(r.tx, r.in, 408, "Request Timeout", nil)
		closeDone(r.done)
		return
	}
	res := m.res
	if res.StatusCode < 200 {
		if res.StatusCode > 100 && r.method == "INVITE" {
			out := sip.NewResponseFromRequest(r.in, res.StatusCode, res.Reason, nil)
			a.send(r.tx, out)
		}
		return
	}
	a.relay = nil
	defer closeDone(r.done)
	if a.state.Phase != PhaseAnswered && !(r.method == "PRACK" && a.state.Phase == PhaseTrying) {
		a.respondTo(r.tx, r.in, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	if res.StatusCode < 300 && r.method != "PRACK" {
		var evs []proto.Message
		if len(r.offer) > 0 && (r.method == "INVITE" || r.method == "UPDATE") {
			dir := sdpDirection(r.offer)
			held := dir == "sendonly" || dir == "inactive"
			if held != a.state.HeldBy[r.side] {
				evs = append(evs, &eventpb.HoldChanged{By: r.side, Held: held, Direction: dir})
			}
		}
		if a.state.SessionInterval > 0 && (r.method == "INVITE" || r.method == "UPDATE") {
			iv := a.state.SessionInterval
			if se, _ := sessionExpires(headerValue(res, "Session-Expires")); se > 0 {
				iv = se
			}
			evs = append(evs, &eventpb.SessionRefreshed{Interval: iv, By: r.side})
		}
		if err := a.persist(causeOf(r.in), evs...); err != nil {
			a.respondTo(r.tx, r.in, 500, "Server Internal Error", nil)
			return
		}
		if len(evs) > 0 {
			a.armSession()
		}
	}
	out := sip.NewResponseFromRequest(r.in, res.StatusCode, res.Reason, res.Body())
	if ct := contentType(res); ct != "" && len(res.Body()) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", ct))
	}
	if res.StatusCode < 300 && r.method == "INVITE" {
		out.AppendHeader(sip.NewHeader("Contact", a.cfg.Transport.Local().contact(a.localTag(r.side))))
	}
	copyAllowedResponse(out, res)
	a.send(r.tx, out)
	if res.StatusCode < 300 && r.method == "INVITE" {
		a.startRetx(r.side, out)
	}
}

// ackRelayed ACKs a 2xx to a re-INVITE Tandem relayed.
func (a *callActor) ackRelayed(res *sip.Response, r *relay) {
	side := "b" // the side the re-INVITE went to
	if r != nil && r.side == "b" {
		side = "a"
	} else if r == nil {
		if _, s, _, ok := ParseTag(fromTag(res)); ok {
			side = s
		}
	}
	a.ackRelayedWith(res, side, nil, "")
}

// ackRelayedWith ACKs, on side, a 2xx to a re-INVITE Tandem relayed there.
func (a *callActor) ackRelayedWith(res *sip.Response, side string, body []byte, ctype string) {
	var req *sip.Request
	var err error
	if side == "b" {
		req, err = a.requestToB("ACK", res.CSeq().SeqNo, body, ctype, nil)
	} else {
		req, err = a.requestToA("ACK", res.CSeq().SeqNo, body, ctype, nil)
	}
	if err == nil {
		_ = a.cfg.Transport.Write(req)
	}
}

func (a *callActor) localTag(side string) string {
	if side == "a" {
		return ALegTag(a.id)
	}
	return BLegTag(a.id, a.state.Winner)
}

// requestToB builds an in-dialog request on the answered B leg.
func (a *callActor) requestToB(method string, cseq uint32, body []byte, ctype string, reasons []string, src ...*sip.Request) (*sip.Request, error) {
	l := a.state.WinningLeg()
	if l == nil || l.Answered == nil {
		return nil, errors.New("no answered leg")
	}
	ans := l.Answered
	target := ans.Contact
	if target == "" {
		target = l.Attempt.RequestUri
	}
	m := newMsg(method, target)
	m.h("Via", a.cfg.Transport.Local().via("z9hG4bK"+a.cfg.NewBranch()))
	for _, r := range ans.RouteSet {
		m.h("Route", r)
	}
	m.h("Max-Forwards", "70")
	m.h("From", l.Attempt.From)
	m.h("To", l.Attempt.To+";tag="+ans.RemoteTag)
	m.h("Call-ID", l.Attempt.CallId)
	m.h("CSeq", fmt.Sprintf("%d %s", cseq, method))
	if method == "INVITE" || method == "UPDATE" {
		m.h("Contact", a.cfg.Transport.Local().contact(l.Attempt.LocalTag))
	}
	for _, r := range reasons {
		m.h("Reason", r)
	}
	if len(src) > 0 && src[0] != nil {
		copyAllowed(m, src[0])
	}
	return m.request(ctype, body)
}

// requestToA builds an in-dialog request on leg A (Tandem is its UAS: the
// route set is the INVITE's Record-Route in order, 12.1.1).
func (a *callActor) requestToA(method string, cseq uint32, body []byte, ctype string, reasons []string, src ...*sip.Request) (*sip.Request, error) {
	al := a.state.Started.GetALeg()
	if al == nil {
		return nil, errors.New("no leg A")
	}
	target := al.Contact
	if target == "" {
		target = uriOf(al.From)
	}
	m := newMsg(method, target)
	m.h("Via", a.cfg.Transport.Local().via("z9hG4bK"+a.cfg.NewBranch()))
	for _, r := range al.RecordRoute {
		m.h("Route", r)
	}
	m.h("Max-Forwards", "70")
	m.h("From", al.To+";tag="+al.LocalTag)
	m.h("To", al.From)
	m.h("Call-ID", al.CallId)
	m.h("CSeq", fmt.Sprintf("%d %s", cseq, method))
	if method == "INVITE" || method == "UPDATE" {
		m.h("Contact", a.cfg.Transport.Local().contact(al.LocalTag))
	}
	for _, r := range reasons {
		m.h("Reason", r)
	}
	if len(src) > 0 && src[0] != nil {
		copyAllowed(m, src[0])
	}
	return m.request(ctype, body)
}

// ------------------------------------------------------------- strays

func (a *callActor) onStray(ctx actor.Context, m *Stray) {
	res := m.Res
	cs := res.CSeq()
	if cs == nil {
		return
	}
	if m.Side == "b" && cs.MethodName == sip.INVITE {
		l := a.state.Leg(m.Leg)
		if l == nil {
			return
		}
		if cs.SeqNo == l.Attempt.Cseq {
			if res.StatusCode >= 300 {
				a.ackNon2xx(l, res) // hop-by-hop ACK for a transaction we lost
				if l.Pending() {
					a.legFailed(ctx, l, uint32(res.StatusCode), res.Reason, res)
				}
				return
			}
			if res.StatusCode >= 200 {
				a.legAnswered(ctx, l, res)
			}
			return
		}
	}
	if cs.MethodName == sip.INVITE && res.StatusCode >= 200 && res.StatusCode < 300 {
		a.ackRelayed(res, nil) // a retransmitted 2xx to a re-INVITE
	}
}

// ackNon2xx ACKs a non-2xx final response to leg l's INVITE (17.1.1.3:
// same branch as the INVITE).
func (a *callActor) ackNon2xx(l *Leg, res *sip.Response) {
	at := l.Attempt
	m := newMsg("ACK", at.RequestUri)
	m.h("Via", at.Via)
	m.h("Max-Forwards", "70")
	m.h("From", at.From)
	m.h("To", res.To().Value())
	m.h("Call-ID", at.CallId)
	m.h("CSeq", fmt.Sprintf("%d ACK", at.Cseq))
	if req, err := m.request("", nil); err == nil {
		_ = a.cfg.Transport.Write(req)
	}
}

// -------------------------------------------------------------- timers

func (a *callActor) arm(kind string, d time.Duration) {
	a.disarm(kind)
	a.timerGen++
	a.timers[kind] = a.m.after(a.id, d, &timerMsg{kind: kind, gen: a.timerGen})
}

func (a *callActor) disarm(kind string) {
	if t := a.timers[kind]; t != nil {
		t.Stop()
		delete(a.timers, kind)
	}
}

func (a *callActor) stopTimers() {
	for k := range a.timers {
		a.disarm(k)
	}
	for s := range a.retx {
		a.stopRetx(s)
	}
}

// armSession arms the session timer (RFC 4028 10): with no refresh by
// interval - min(32 s, interval/3) after the last one, the call is ended.
func (a *callActor) armSession() {
	st := a.state
	if st.Phase != PhaseAnswered || st.SessionInterval == 0 {
		return
	}
	iv := time.Duration(st.SessionInterval) * time.Second
	slack := min(32*time.Second, iv/3)
	due := st.RefreshedAt.Add(iv - slack)
	a.arm("session", max(0, due.Sub(a.cfg.Clock.Now())))
}

func (a *callActor) onTimer(ctx actor.Context, m *timerMsg) {
	switch m.kind {
	case "noanswer":
		if a.state.Phase == PhaseTrying && a.broken == nil {
			a.fail(ctx, "no_answer", 480, "Temporarily Unavailable", CauseNoAnswer, "no answer", timerCause("noanswer"))
		}
	case "session":
		if a.state.Phase != PhaseAnswered || a.broken != nil {
			return
		}
		iv := time.Duration(a.state.SessionInterval) * time.Second
		slack := min(32*time.Second, iv/3)
		if a.cfg.Clock.Now().Before(a.state.RefreshedAt.Add(iv - slack)) {
			a.armSession() // refreshed meanwhile (a stale timer)
			return
		}
		a.endBySystem("session_expired", CauseRecoveryTimer, "session timer expired without a refresh")
	case "retx-a", "retx-b":
		a.onRetx(m.kind[5:], m.gen)
	case "linger":
		delete(a.timers, "linger") // maybeRetire decides
	}
}

// startRetx starts retransmitting a 2xx to side until its ACK (13.3.1.4).
func (a *callActor) startRetx(side string, res *sip.Response) {
	a.stopRetx(side)
	a.timerGen++
	r := &retx{res: res, interval: a.cfg.T1, deadline: a.cfg.Clock.Now().Add(64 * a.cfg.T1), gen: a.timerGen}
	r.timer = a.m.after(a.id, r.interval, &timerMsg{kind: "retx-" + side, gen: r.gen})
	a.retx[side] = r
}

func (a *callActor) stopRetx(side string) {
	if r := a.retx[side]; r != nil {
		r.timer.Stop()
		delete(a.retx, side)
	}
}

func (a *callActor) onRetx(side string, gen uint64) {
	r := a.retx[side]
	if r == nil || r.gen != gen {
		return
	}
	if !a.cfg.Clock.Now().Before(r.deadline) {
		delete(a.retx, side)
		// No ACK in 64*T1: the dialog is dead (13.3.1.4): end the call.
		a.endBySystem("timeout", CauseRecoveryTimer, "no ACK for the 2xx")
		return
	}
	_ = a.cfg.Transport.Write(r.res)
	r.interval = min(2*r.interval, 8*a.cfg.T1)
	r.timer = a.m.after(a.id, r.interval, &timerMsg{kind: "retx-" + side, gen: gen})
}

// maybeRetire stops an actor whose call is over once it has been quiet
// for Linger (or at once when broken).
func (a *callActor) maybeRetire(ctx actor.Context) {
	if a.retired {
		return
	}
	if a.broken != nil {
		a.finishA()
		a.retired = true
		a.stopTimers()
		a.m.retire(a.id, ctx.Self())
		return
	}
	if !a.state.Phase.Over() && a.state.Phase != PhaseNone {
		return
	}
	if a.relay != nil || len(a.retx) > 0 {
		return
	}
	quiet := a.cfg.Clock.Now().Sub(a.lastMsg)
	if a.state.Phase == PhaseNone || quiet >= a.cfg.Linger {
		a.retired = true
		a.stopTimers()
		a.m.retire(a.id, ctx.Self())
		return
	}
	if a.timers["linger"] == nil {
		a.arm("linger", a.cfg.Linger-quiet)
	}
}

// ------------------------------------------------------------ responses

// responseToA builds a response to the caller's INVITE (from the live
// request or, after a restart, from the events), with Tandem's tag and,
// for 18x and 2xx, its Contact.
func (a *callActor) responseToA(code int, reason string, body []byte, ctype string) *sip.Response {
	req := a.aInvite()
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if code > 100 {
		if to := res.To(); to != nil {
			to.Params.Add("tag", ALegTag(a.id))
		}
	}
	if code > 100 && code < 300 {
		res.AppendHeader(sip.NewHeader("Contact", a.cfg.Transport.Local().contact(ALegTag(a.id))))
	}
	if len(body) > 0 && ctype != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", ctype))
	}
	return res
}

// aInvite is the caller's INVITE: the live one, or one rebuilt from
// CallStarted (enough to address responses).
func (a *callActor) aInvite() *sip.Request {
	if a.aReq != nil {
		return a.aReq
	}
	al := a.state.Started.GetALeg()
	m := newMsg("INVITE", a.state.Started.GetRequestUri())
	for _, v := range al.GetVia() {
		m.h("Via", v)
	}
	for _, r := range al.GetRecordRoute() {
		m.h("Record-Route", r)
	}
	m.h("From", al.GetFrom())
	m.h("To", al.GetTo())
	m.h("Call-ID", al.GetCallId())
	m.h("CSeq", fmt.Sprintf("%d INVITE", al.GetCseq()))
	req, err := m.request("", nil)
	if err != nil {
		req = sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "invalid"})
	}
	if tr, src, ok := strings.Cut(al.GetSource(), ":"); ok {
		req.SetTransport(strings.ToUpper(tr))
		req.SetSource(src)
	}
	return req
}

// respondA gives the caller's INVITE a response: on its live transaction
// if there is one, else statelessly. A final response ends our use of it.
func (a *callActor) respondA(code int, reason string, body []byte, ctype string, hdrs [][2]string) {
	if a.state.Phase == PhaseNone && a.aReq == nil {
		return
	}
	res := a.responseToA(code, reason, body, ctype)
	for _, h := range hdrs {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	if a.aTx != nil {
		a.send(a.aTx, res)
	} else {
		_ = a.cfg.Transport.Write(res)
	}
	if code >= 200 {
		a.finishA()
	}
}

// finishA releases the caller's INVITE transaction.
func (a *callActor) finishA() {
	closeDone(a.aDone)
	a.aDone, a.aTx = nil, nil
}

func (a *callActor) respondTo(tx Responder, req *sip.Request, code int, reason string, hdrs [][2]string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		if tag, _ := req.To().Params.Get("tag"); tag == "" {
			to.Params.Add("tag", ALegTag(a.id))
		}
	}
	for _, h := range hdrs {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	a.send(tx, res)
}

func (a *callActor) send(tx Responder, res *sip.Response) {
	if res == nil {
		return
	}
	var err error
	if tx != nil {
		err = tx.Respond(res)
	} else {
		err = a.cfg.Transport.Write(res)
	}
	if err != nil {
		a.cfg.Logger.Debug("response not sent", "call", a.id, "code", res.StatusCode, "err", err)
	}
}

func closeDone(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func toTag(res *sip.Response) string {
	if to := res.To(); to != nil {
		t, _ := to.Params.Get("tag")
		return t
	}
	return ""
}

func fromTag(res *sip.Response) string {
	if f := res.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

// copyAllowedResponse copies the allow-listed headers of a response from
// the other leg (Session-Expires, Require: timer, Supported, ...).
func copyAllowedResponse(out, in *sip.Response) {
	for _, name := range []string{"Supported", "Accept", "Session-Expires", "Min-SE", "Content-Disposition", "Allow-Events"} {
		if out.GetHeader(name) != nil {
			continue
		}
		for _, h := range in.GetHeaders(name) {
			v := h.Value()
			if strings.EqualFold(name, "Supported") {
				v = dropOption(v, "100rel")
				if v == "" {
					continue
				}
			}
			out.AppendHeader(sip.NewHeader(name, v))
		}
	}
	if req := in.GetHeader("Require"); req != nil && strings.Contains(strings.ToLower(req.Value()), "timer") && out.GetHeader("Require") == nil {
		out.AppendHeader(sip.NewHeader("Require", "timer"))
	}
}
