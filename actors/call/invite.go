package call

// The caller's INVITE and the B legs: forking, provisional (and reliable
// provisional) responses, the answer, failures and the best response,
// CANCEL in both directions.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/siphdr"
)

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
	// 100 Trying comes from here, not from the gateway before it delivers
	// the INVITE: a caller may CANCEL as soon as it has a provisional
	// response (RFC 3261 9.1), and that CANCEL must find the INVITE already
	// in this actor's mailbox, or it would be answered 481 while the call
	// went on ringing the callee. It reveals no state (hop by hop, no To
	// tag), so it need not wait for the events below.
	a.respondTo(m.Tx, m.Req, 100, "Trying", nil)
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
		Cseq: m.Req.CSeq().SeqNo, LocalTag: a.aTag,
		Source: strings.ToLower(m.Req.Transport()) + ":" + m.Req.Source(),
	}
	for h := range siphdr.Each(m.Req, "Via") {
		aleg.Via = append(aleg.Via, h.Value())
	}
	if c := m.Req.Contact(); c != nil {
		aleg.Contact = c.Address.String()
	}
	for h := range siphdr.Each(m.Req, "Record-Route") {
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
		evs[len(evs)-1].(*eventpb.LegAttempted).Via = local.For(textTransport(t, nil)).via(evs[len(evs)-1].(*eventpb.LegAttempted).Branch)
	}
	a.aReq, a.aTx, a.aDone = m.Req, m.Tx, m.Done
	if err := a.persist(causeOf(m.Req), evs...); err != nil {
		if a.optimistic && a.state.Version == 0 && errors.Is(err, events.ErrVersionConflict) {
			// The stream was there after all: a retransmission of an
			// INVITE taken before a restart. Read it, then answer from it.
			a.aReq, a.aTx, a.aDone, a.optimistic = nil, nil, nil, false
			a.state, a.broken = NewState(a.id), nil
			if a.broken = a.load(); a.broken == nil {
				a.recover(ctx)
				a.answerFromState(m)
				return
			}
			a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
			closeDone(m.Done)
			return
		}
		a.respondA(500, "Server Internal Error", nil, "", nil)
		return
	}
	a.optimistic = false
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.CallAttempt()
	}
	a.arm("noanswer", a.cfg.NoAnswerTimeout)
	for _, l := range a.state.Legs {
		a.sendLegInvite(l)
	}
}

func (a *callActor) sendLegInvite(l *Leg) {
	req, err := a.legInvite(l)
	if err != nil {
		a.deliverLater(&legResponse{leg: l.N, err: err})
		return
	}
	n := l.N
	// The callback holds the manager and the call's id, never the actor:
	// sipgo keeps an INVITE's client transaction, callbacks included, 32 s
	// after a non-2xx (Timer D), and after a 2xx too (RFC 6026's Timer M)
	// where the gateway does not end it then. A callback that held the
	// actor kept each ended call whole (requests, responses, state) that
	// long after it retired: with Timer M at 32 s, 15,000 calls at 1,500/s
	// left 280 MB live 15 s after the last one ended, 216 MB without it
	// (heap profiles after a forced GC).
	mgr, id := a.m, a.id
	if err := a.cfg.Transport.Request(req, func(res *sip.Response, err error) {
		if res != nil && res.StatusCode == 100 {
			// Hop by hop (RFC 3261 16.7): it only stops the INVITE's
			// retransmissions, which the transaction has done; the
			// actor would drop it (legProvisional), after a mailbox trip.
			return
		}
		_ = mgr.Deliver(id, &legResponse{leg: n, res: res, err: err})
	}); err != nil {
		a.deliverLater(&legResponse{leg: n, err: err})
	}
}

// legInvite builds leg l's INVITE from typed headers (the one message of a
// call built this way rather than as text parsed back: it is the largest,
// and building it was 5% of a call's CPU). It says exactly what
// LegAttempted recorded: the same Via, From, To and Call-ID that CANCEL,
// ACK and BYE are later built from as text.
func (a *callActor) legInvite(l *Leg) (*sip.Request, error) {
	st := a.state.Started
	at := l.Attempt
	var target, caller, callee sip.Uri
	if err := sip.ParseUri(at.RequestUri, &target); err != nil {
		return nil, fmt.Errorf("leg %d target %q: %w", l.N, at.RequestUri, err)
	}
	if err := sip.ParseUri(st.Caller, &caller); err != nil {
		return nil, fmt.Errorf("caller %q: %w", st.Caller, err)
	}
	if err := sip.ParseUri(st.Callee, &callee); err != nil {
		return nil, fmt.Errorf("callee %q: %w", st.Callee, err)
	}
	next := uriTransport(&target)
	if err := a.cfg.Transport.Local().reach(&target, next); err != nil {
		return nil, fmt.Errorf("leg %d: %w", l.N, err)
	}
	local := a.cfg.Transport.Local().For(next)
	req := sip.NewRequest(sip.INVITE, target)
	tr := local.viaHeader(at.Branch, req)
	mf := sip.MaxForwardsHeader(st.MaxForwards)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.FromHeader{Address: caller, Params: sip.HeaderParams{{K: "tag", V: at.LocalTag}}})
	req.AppendHeader(&sip.ToHeader{Address: callee, Params: sip.NewParams()})
	cid := sip.CallIDHeader(at.CallId)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: at.Cseq, MethodName: sip.INVITE})
	contact := sip.Uri{Scheme: "sip", User: at.LocalTag, Host: local.Host, Port: local.Port}
	if tr != "UDP" {
		contact.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(tr)}}
	}
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if a.aReq != nil {
		var m msg
		copyHeaders(&m, a.aReq, true, "Allow")
		for _, line := range strings.Split(m.b.String(), "\r\n") {
			if name, value, ok := strings.Cut(line, ": "); ok {
				req.AppendHeader(sip.NewHeader(name, value))
			}
		}
	}
	if len(st.Offer) > 0 {
		if st.OfferType != "" {
			ct := sip.ContentTypeHeader(st.OfferType)
			req.AppendHeader(&ct)
		}
		req.SetBody(st.Offer)
	} else {
		req.SetBody(nil)
	}
	req.SetTransport(tr)
	return req, nil
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
			code, reason := legErrorStatus(m.err)
			a.legFailed(ctx, l, code, reason+" ("+errText(m.err)+")", nil)
		}
		return
	}
	res := m.res
	if res.To() == nil || res.From() == nil {
		return // not a response we can answer along (ACK needs its To)
	}
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

// legErrorStatus is the status a B leg's INVITE that got no response
// counts as: 503 when it could not be sent, or its transport failed (RFC
// 3261 8.1.3.1, 16.9), else 408 (Timer B, or nothing said why).
func legErrorStatus(err error) (uint32, string) {
	if errors.Is(err, sip.ErrTransactionTransport) || errors.Is(err, ErrNoTransport) {
		return 503, "Service Unavailable"
	}
	return 408, "Request Timeout"
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
			rr := siphdr.All(res, "Record-Route")
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
	for h := range siphdr.Each(m, name) {
		for p := range strings.SplitSeq(h.Value(), ",") {
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
	at := l.Attempt
	target := l.EarlyContact
	if target == "" {
		target = at.RequestUri
	}
	local := a.cfg.Transport.Local()
	if err := local.reachText(target, l.EarlyRoute); err != nil {
		// Nothing is recorded: the PRACK is refused as a relay whose
		// request cannot be built is (relayRequest).
		a.cfg.Logger.Warn("PRACK not relayed", "call", a.id, "leg", l.N, "err", err)
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	out := l.CSeq + 1
	ev := &eventpb.InDialogRelayed{FromSide: "a", Method: "PRACK", InCseq: m.Req.CSeq().SeqNo, OutCseq: out, Leg: l.N}
	if err := a.persist(causeOf(m.Req), ev); err != nil {
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
		return
	}
	msg := newMsg("PRACK", target)
	msg.h("Via", local.For(textTransport(target, l.EarlyRoute)).via("z9hG4bK"+a.cfg.NewBranch()))
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
		if tag := toTag(res); tag != l.Answered.GetRemoteTag() {
			// A 2xx from another dialog: a proxy beyond the leg forked
			// the INVITE. ACK it, and hang it up once (B2BUA-PITFALLS 5).
			if a.acks[ackBranch(l.Attempt.LocalTag, tag, res.CSeq().SeqNo)] != nil {
				a.ackLeg(l, res, nil, "")
			} else {
				a.ackAndBye(l, res)
			}
			return
		}
		a.ackAnswered(l, res) // a retransmitted 2xx: ACK it again (13.2.2.4)
		return
	}
	if st.Phase != PhaseTrying || !l.Pending() {
		if l.Answered != nil {
			a.ackAnswered(l, res)
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
	rr := siphdr.All(res, "Record-Route")
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
	if a.state.DelayedOffer() {
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
	switch {
	case ans.SessionExpires > 0:
		ref := ans.Refresher
		if ref == "" {
			ref = "uas"
		}
		res.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", ans.SessionExpires, ref)))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	case a.state.Started.GetSessionExpires() > 0:
		// The callee did not take up the caller's session timer: Tandem
		// runs it with the caller (RFC 4028 9), who refreshes.
		res.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", a.state.Started.GetSessionExpires())))
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
	branch := ackBranch(at.LocalTag, toTag(res), res.CSeq().SeqNo)
	err := a.sendAck(branch, body, func() (*sip.Request, error) { return a.ackRequest(at, res, branch, body, ctype) })
	if err != nil {
		a.cfg.Logger.Warn("ACK not sent", "call", a.id, "leg", l.N, "err", err)
	}
}

// ackRequest builds the ACK for res, a 2xx to the INVITE at recorded, from
// typed headers, as legInvite builds that INVITE: To, the remote target and
// the route set come from res as parsed, the rest from the event. Built as
// text and parsed back it was 7% of a call's allocations (pprof,
// callbench -only tandem at 2,000 calls/s).
func (a *callActor) ackRequest(at *eventpb.LegAttempted, res *sip.Response, branch string, body []byte, ctype string) (*sip.Request, error) {
	var target sip.Uri
	if c := res.Contact(); c != nil {
		target = c.Address
	} else if err := sip.ParseUri(at.RequestUri, &target); err != nil {
		return nil, fmt.Errorf("ACK target %q: %w", at.RequestUri, err)
	}
	from := &sip.FromHeader{}
	name, err := sip.ParseAddressValue(at.From, &from.Address, &from.Params)
	if err != nil {
		return nil, fmt.Errorf("ACK From %q: %w", at.From, err)
	}
	from.DisplayName = name
	to := res.To()
	if to == nil {
		return nil, errors.New("ACK: the 2xx has no To")
	}
	req := sip.NewRequest(sip.ACK, target)
	rrs := siphdr.All(res, "Record-Route")
	hop, next := &target, uriTransport(&target)
	if len(rrs) > 0 { // the route set's first is the last Record-Route
		hop, next = nextHop(&target, []string{rrs[len(rrs)-1].Value()})
	}
	if hop != nil {
		if err := a.cfg.Transport.Local().reach(hop, next); err != nil {
			return nil, fmt.Errorf("ACK: %w", err)
		}
	}
	tr := a.cfg.Transport.Local().For(next).viaHeader(branch, req)
	for _, h := range slices.Backward(rrs) {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			req.AppendHeader(&sip.RouteHeader{Address: rr.Address})
		} else {
			req.AppendHeader(sip.NewHeader("Route", h.Value()))
		}
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{DisplayName: to.DisplayName, Address: to.Address, Params: to.Params})
	cid := sip.CallIDHeader(at.CallId)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: res.CSeq().SeqNo, MethodName: sip.ACK})
	if len(body) > 0 && ctype != "" {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	req.SetTransport(tr)
	return req, nil
}

// ackAnswered ACKs a 2xx of the answered leg l to the initial INVITE
// that comes again (13.2.2.4). With a delayed offer that ACK carries the
// caller's answer: the ACK already sent has it, and an activation after a
// restart, which has sent none, takes it from the events. While the
// caller's ACK has not brought it, the ACK waits for it (owed), as it did
// for the first 2xx; the caller ACKs the 2xx Tandem retransmits to it
// (recover), so it comes.
func (a *callActor) ackAnswered(l *Leg, res *sip.Response) {
	if !a.state.DelayedOffer() || a.acks[ackBranch(l.Attempt.LocalTag, toTag(res), res.CSeq().SeqNo)] != nil {
		a.ackLeg(l, res, nil, "")
		return
	}
	if ans := a.state.CallerAnswer; ans != nil {
		a.ackLeg(l, res, ans.Sdp, ans.ContentType)
		return
	}
	if a.state.Phase == PhaseAnswered {
		if a.owed["a"] == nil {
			a.owed["a"] = &owedAck{res: res, leg: l, inCSeq: a.state.Started.GetALeg().GetCseq()}
		}
		return
	}
	a.ackLeg(l, res, nil, "") // the call is over: no answer is coming
}

// ackBranch is the Via branch of the ACK for the 2xx to the INVITE with
// CSeq cseq in the dialog of Tandem's localTag and the peer's remoteTag.
// It is derived, not drawn, so that the ACK of a retransmitted 2xx is the
// same ACK (13.2.2.4; a peer that sees a new branch takes it for a new
// request, as sipp does and aborts the call), also when an activation
// after a restart builds it. Tandem's tags are unique per call; the remote
// tag (hashed: it is the peer's text) tells apart the dialogs one INVITE
// can make when a proxy beyond the leg forks it. It also keys acks.
func ackBranch(localTag, remoteTag string, cseq uint32) string {
	h := fnv.New32a()
	h.Write([]byte(remoteTag))
	return "z9hG4bK" + localTag + "-ack" + strconv.FormatUint(uint64(cseq), 10) + "-" + strconv.FormatUint(uint64(h.Sum32()), 36)
}

// sendAck sends the ACK with the given branch: the one already sent when
// there is one and no new body (a retransmitted 2xx is ACKed again with
// the same message, answer included), else the one build makes, which is
// kept for the retransmissions.
func (a *callActor) sendAck(branch string, body []byte, build func() (*sip.Request, error)) error {
	if prev := a.acks[branch]; prev != nil && len(body) == 0 {
		return a.cfg.Transport.Write(prev)
	}
	req, err := build()
	if err != nil {
		return err
	}
	a.acks[branch] = req
	return a.cfg.Transport.Write(req)
}

// ackAndBye ACKs a 2xx that must not become a call, then hangs it up.
func (a *callActor) ackAndBye(l *Leg, res *sip.Response) {
	a.ackLeg(l, res, nil, "")
	target := l.Attempt.RequestUri
	if c := res.Contact(); c != nil {
		target = c.Address.String()
	}
	var route []string
	rr := siphdr.All(res, "Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		route = append(route, rr[i].Value())
	}
	local := a.cfg.Transport.Local()
	if err := local.reachText(target, route); err != nil {
		a.cfg.Logger.Warn("BYE for a 2xx that lost not sent", "call", a.id, "leg", l.N, "err", err)
		return
	}
	m := newMsg("BYE", target)
	m.h("Via", local.For(textTransport(target, route)).via("z9hG4bK"+a.cfg.NewBranch()))
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
