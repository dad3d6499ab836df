package call

// Requests inside an answered call's dialogs: ACK, BYE, and the relay of
// re-INVITE, UPDATE, INFO and OPTIONS between the legs; responses no
// transaction claimed.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/siphdr"
)

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
	default: // no dialog yet (or none ever): nothing to relay into
		a.respondTo(m.Tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	switch req.Method {
	case sip.BYE:
		a.onBye(m)
		return
	case sip.INVITE, sip.UPDATE, sip.INFO, sip.OPTIONS:
	default:
		a.respondTo(m.Tx, req, 405, "Method Not Allowed", [][2]string{{"Allow", allowMethods}})
		return
	}
	if ri := st.Reinvite; a.relay == nil && req.Method == sip.INVITE && ri != nil && ri.FromSide == m.Side && ri.InCseq == req.CSeq().SeqNo {
		a.resumeRelay(ctx, m)
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
	if !a.recordAnswer(m) {
		return
	}
	if o := a.owed[m.Side]; o != nil && o.inCSeq == m.Req.CSeq().SeqNo {
		a.payOwed(m.Side, m.Req.Body(), contentType(m.Req))
	}
}

// recordAnswer makes durable the answer an ACK brings to a delayed offer
// (the caller's INVITE, or a relayed re-INVITE, had no SDP and the far
// side's 2xx brought the offer: RFC 3261 13.2.1, 14.1), the first time it
// comes, before the far side's ACK reveals it (invariant 2): an activation
// after a restart ACKs the far side's retransmitted 2xx with it. An ACK
// retransmitted for a retransmitted 2xx adds nothing. It returns false
// when the append failed: nothing may be sent.
func (a *callActor) recordAnswer(m *InDialog) bool {
	if len(m.Req.Body()) == 0 {
		return true
	}
	ev := a.state.AwaitedAnswer(m.Side, m.Req.CSeq().SeqNo)
	if ev == nil {
		return true
	}
	ev.Sdp, ev.ContentType = m.Req.Body(), contentType(m.Req)
	return a.persist(causeOf(m.Req), ev) == nil
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
	ev := &eventpb.InDialogRelayed{FromSide: m.Side, Method: string(m.Req.Method), InCseq: m.Req.CSeq().SeqNo, OutCseq: outCSeq,
		DelayedOffer: m.Req.Method == sip.INVITE && len(m.Req.Body()) == 0}
	if ev.DelayedOffer {
		for h := range siphdr.Each(m.Req, "Via") {
			ev.Via = append(ev.Via, h.Value())
		}
		ev.Source = strings.ToLower(m.Req.Transport()) + ":" + m.Req.Source()
	}
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
	mgr, id := a.m, a.id // not a: see sendLegInvite
	if err := a.cfg.Transport.Request(req, func(res *sip.Response, err error) {
		_ = mgr.Deliver(id, &relayResponse{seq: seq, res: res, err: err})
	}); err != nil {
		a.relay = nil
		a.respondTo(m.Tx, m.Req, 500, "Server Internal Error", nil)
	}
}

// resumeRelay takes up again a re-INVITE without an offer that was relayed
// before a restart (its InDialogRelayed is in the state, the relay itself
// was in memory), when the requester retransmits it: no new event, and
// nothing is sent to the far side, which has it (events are durable before
// the request goes out) and retransmits its 2xx until an ACK. That 2xx,
// heard as a stray or already held as owed, is relayed to the requester
// as on the first activation, and the requester's ACK brings the answer.
// Should the far side say nothing (the crash came between the event and
// the request), the relay is given up after Timer B (64*T1) with 408.
func (a *callActor) resumeRelay(ctx actor.Context, m *InDialog) {
	a.relaySeq++
	r := &relay{seq: a.relaySeq, side: m.Side, in: m.Req, tx: m.Tx, done: m.Done, method: "INVITE", resumed: true}
	a.relay = r
	ri := a.state.Reinvite
	if o := a.owed[m.Side]; o != nil && o.leg == nil && o.res.CSeq().SeqNo == ri.OutCseq {
		a.onRelayResponse(ctx, &relayResponse{seq: r.seq, res: o.res})
		return
	}
	a.arm("relay", 64*a.cfg.T1)
}

// relayGivenUp ends a resumed relay the far side never answered.
func (a *callActor) relayGivenUp() {
	r := a.relay
	if r == nil || !r.resumed {
		return
	}
	a.relay = nil
	a.respondTo(r.tx, r.in, 408, "Request Timeout", nil)
	closeDone(r.done)
}

// strayReinvite2xx handles a 2xx no relay claimed (an activation after a
// restart) to the relayed re-INVITE without an offer: the answer recorded
// from the requester's ACK goes in the ACK; without one, it is never ACKed
// empty (the far side would have an offer never answered): a resumed relay
// takes it to the requester, or it is held as owed until the requester's
// ACK or its retransmitted re-INVITE (resumeRelay).
func (a *callActor) strayReinvite2xx(ctx actor.Context, res *sip.Response, side string) {
	st := a.state
	ri := st.Reinvite
	switch {
	case st.ReinviteAnswer != nil:
		a.ackRelayedWith(res, side, st.ReinviteAnswer.Sdp, st.ReinviteAnswer.ContentType)
	case st.Phase != PhaseAnswered:
		a.ackRelayedWith(res, side, nil, "") // the call is over: no answer is coming
	case a.relay != nil && a.relay.resumed:
		a.disarm("relay")
		a.onRelayResponse(ctx, &relayResponse{seq: a.relay.seq, res: res})
	case a.relay == nil && len(ri.Via) > 0:
		// Nobody holds the requester's transaction: answer its re-INVITE
		// rebuilt from the event (the 2xx is retransmitted until the ACK,
		// which brings the answer), as the first activation would have.
		a.relaySeq++
		a.relay = &relay{seq: a.relaySeq, side: ri.FromSide, in: a.reinviteFromState(ri), method: "INVITE", resumed: true}
		a.onRelayResponse(ctx, &relayResponse{seq: a.relaySeq, res: res})
	case a.owed[ri.FromSide] == nil:
		a.owed[ri.FromSide] = &owedAck{res: res, inCSeq: ri.InCseq}
	}
}

// reinviteFromState rebuilds the re-INVITE ri relayed from the requester's
// headers recorded in it and the dialog's, enough to address responses.
func (a *callActor) reinviteFromState(ri *eventpb.InDialogRelayed) *sip.Request {
	m := newMsg("INVITE", "sip:"+a.localTag(ri.FromSide)+"@invalid")
	for _, v := range ri.Via {
		m.h("Via", v)
	}
	if ri.FromSide == "a" {
		al := a.state.Started.GetALeg()
		m.h("From", al.GetFrom())
		m.h("To", al.GetTo()+";tag="+al.GetLocalTag())
		m.h("Call-ID", al.GetCallId())
	} else if l := a.state.WinningLeg(); l != nil && l.Answered != nil {
		m.h("From", l.Attempt.GetTo()+";tag="+l.Answered.RemoteTag)
		m.h("To", l.Attempt.GetFrom())
		m.h("Call-ID", l.Attempt.GetCallId())
	}
	m.h("CSeq", fmt.Sprintf("%d INVITE", ri.InCseq))
	req, err := m.request("", nil)
	if err != nil {
		req = sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "invalid"})
	}
	if tr, src, ok := strings.Cut(ri.Source, ":"); ok {
		req.SetTransport(strings.ToUpper(tr))
		req.SetSource(src)
	}
	return req
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
			out := newResponse(r.in, res.StatusCode, res.Reason, nil, "")
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
	out := newResponse(r.in, res.StatusCode, res.Reason, res.Body(), "")
	if ct := contentType(res); ct != "" && len(res.Body()) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", ct))
	}
	if res.StatusCode < 300 && r.method == "INVITE" {
		out.AppendHeader(sip.NewHeader("Contact", a.contactFor(r.side)))
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
	cseq := res.CSeq().SeqNo
	_ = a.sendAck(ackBranch(a.localTag(side), toTag(res), cseq), body, func() (*sip.Request, error) {
		if side == "b" {
			return a.requestToB("ACK", cseq, body, ctype, nil)
		}
		return a.requestToA("ACK", cseq, body, ctype, nil)
	})
}

// contactFor is the Contact Tandem gives side ("a", or "b" for the
// winning leg) in its dialog.
func (a *callActor) contactFor(side string) string {
	if side == "a" {
		return a.aContact()
	}
	if l := a.state.WinningLeg(); l != nil {
		return a.legContact(l)
	}
	return a.cfg.Transport.Local().contact(a.localTag(side))
}

// legContact is the Contact Tandem gives B leg l: on the listener of the
// transport the leg's INVITE went out on, so that the callee's requests in
// the dialog come back on it (a callee reached over TCP is given
// transport=tcp).
func (a *callActor) legContact(l *Leg) string {
	return a.cfg.Transport.Local().For(textTransport(l.Attempt.RequestUri, nil)).contact(l.Attempt.LocalTag)
}

func (a *callActor) localTag(side string) string {
	if side == "a" {
		return a.aTag
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
	d := dialogRequest{method: method, target: ans.Contact, routes: ans.RouteSet,
		from: l.Attempt.From, to: l.Attempt.To + ";tag=" + ans.RemoteTag, callID: l.Attempt.CallId, cseq: cseq,
		reasons: reasons, ctype: ctype, body: body}
	if d.target == "" {
		d.target = l.Attempt.RequestUri
	}
	d.branch = a.branchFor(method, l.Attempt.LocalTag, ans.RemoteTag, cseq)
	if method == "INVITE" || method == "UPDATE" {
		d.contact = a.legContact(l)
	}
	if len(src) > 0 {
		d.src = src[0]
	}
	return d.build(a.cfg.Transport.Local())
}

// branchFor is the Via branch of a request Tandem sends in a dialog: a
// fresh one, except for an ACK (ackBranch).
func (a *callActor) branchFor(method, localTag, remoteTag string, cseq uint32) string {
	if method == "ACK" {
		return ackBranch(localTag, remoteTag, cseq)
	}
	return "z9hG4bK" + a.cfg.NewBranch()
}

// callerTag is the caller's tag on leg A (the From of its INVITE).
func callerTag(al *eventpb.ALeg) string {
	var uri sip.Uri
	params := sip.HeaderParams{}
	if _, err := sip.ParseAddressValue(al.GetFrom(), &uri, &params); err != nil {
		return ""
	}
	tag, _ := params.Get("tag")
	return tag
}

// requestToA builds an in-dialog request on leg A (Tandem is its UAS: the
// route set is the INVITE's Record-Route in order, 12.1.1).
func (a *callActor) requestToA(method string, cseq uint32, body []byte, ctype string, reasons []string, src ...*sip.Request) (*sip.Request, error) {
	al := a.state.Started.GetALeg()
	if al == nil {
		return nil, errors.New("no leg A")
	}
	d := dialogRequest{method: method, target: al.Contact, routes: al.RecordRoute,
		from: al.To + ";tag=" + al.LocalTag, to: al.From, callID: al.CallId, cseq: cseq,
		reasons: reasons, ctype: ctype, body: body}
	if d.target == "" {
		d.target = uriOf(al.From)
	}
	d.branch = a.branchFor(method, al.LocalTag, callerTag(al), cseq)
	if method == "INVITE" || method == "UPDATE" {
		d.contact = a.contactFor("a")
	}
	if len(src) > 0 {
		d.src = src[0]
	}
	return d.build(a.cfg.Transport.Local())
}

// ------------------------------------------------------------- strays

func (a *callActor) onStray(ctx actor.Context, m *Stray) {
	res := m.Res
	cs := res.CSeq()
	if cs == nil || res.To() == nil || res.From() == nil {
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
		if ri := a.state.Reinvite; ri != nil && m.Side != ri.FromSide && cs.SeqNo == ri.OutCseq {
			a.strayReinvite2xx(ctx, res, m.Side)
			return
		}
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
