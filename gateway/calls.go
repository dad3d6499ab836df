package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/gateway/digest"
	"github.com/tandemswitch/tandem/internal/siphdr"
)

// Calls: the gateway's half of the B2BUA. It authenticates and routes an
// initial INVITE to its call actor (the call id is derived from the
// INVITE: call.IDFor), routes every in-dialog request and ACK by the tag
// Tandem gave out (call.ParseTag on the To tag), and stray responses by the
// From tag; it keeps no table (ARCHITECTURE.md invariant 7). It is also the
// actors' call.Transport: client transactions over sipgo.

// countedTx is the transaction a call actor answers on: what it sends
// is counted in tandem_sip_responses_total like the gateway's own answers.
type countedTx struct {
	tx responder
	m  Metrics
}

func (c countedTx) Respond(res *sip.Response) error {
	c.m.SIPResponse(res.StatusCode)
	return c.tx.Respond(res)
}

// counted wraps tx for a call actor (as is, without metrics).
func (g *Gateway) counted(tx responder) call.Responder {
	if g.opts.Metrics == nil {
		return tx
	}
	return countedTx{tx: tx, m: g.opts.Metrics}
}

// CallRouter delivers messages to call actors (call.Manager).
type CallRouter interface {
	Deliver(id string, msg any) error
}

// minSessionExpires is the smallest session interval accepted (RFC 4028
// 4: at least 90 s).
const minSessionExpires = 90

// SetCalls wires the call actors in; call it before Start.
func (g *Gateway) SetCalls(c CallRouter) { g.calls = c }

// Local implements call.Transport: the first UDP listen address (else TCP).
// Start works it out once the sockets are bound; the call actors ask for
// it several times per call.
func (g *Gateway) Local() call.Local {
	return g.bound().Local
}

// bound is what Start worked out, or (before Start) what is bound now.
func (g *Gateway) bound() *boundLocal {
	if l := g.local.Load(); l != nil {
		return l
	}
	return boundOf(g.Addrs())
}

// boundLocal is Local as Start found it, with its IP parsed for bindLocal.
type boundLocal struct {
	call.Local
	udp net.IP // nil unless Local is a UDP socket with an IP address
}

// boundOf picks Local among the bound addresses ("udp:127.0.0.1:5060").
func boundOf(addrs []string) *boundLocal {
	l := &boundLocal{Local: localOf(addrs)}
	if ip := net.ParseIP(l.Host); ip != nil && strings.EqualFold(l.Transport, "UDP") {
		l.udp = ip
	}
	return l
}

// localOf is the first bound address, with the first on each other
// transport as its Others.
func localOf(addrs []string) call.Local {
	var l call.Local
	for _, a := range addrs {
		network, hostport, _ := strings.Cut(a, ":")
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(port)
		x := call.Local{Host: host, Port: p, Transport: strings.ToUpper(network)}
		switch {
		case l.Transport == "":
			l = x
		case x.Transport != l.Transport && !slices.ContainsFunc(l.Others, func(o call.Local) bool { return o.Transport == x.Transport }):
			l.Others = append(l.Others, x)
		}
	}
	if l.Transport == "" {
		return call.Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}
	}
	return l
}

// noBuild tells sipgo's client to send the request exactly as built.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// bindLocal makes sipgo send req from our listening socket (the address
// its Via names), not from a fresh ephemeral one: peers that answer to the
// packet's source, as sipp does, then reach us, and so does everything sent
// after a restart.
//
// It also fixes req's destination to the one sipgo would compute (the
// first Route's address, else the request URI's; the transport's default
// port): sipgo asks for it at least twice per request sent (to find the
// connection, then to write) and formats it with fmt.Sprintf each time it
// is not set.
func (g *Gateway) bindLocal(req *sip.Request) {
	if l := g.bound(); l.udp != nil && strings.EqualFold(req.Transport(), "UDP") {
		req.Laddr = sip.Addr{IP: l.udp, Port: l.Port}
	}
	if req.MessageData.Destination() == "" {
		req.SetDestination(req.Destination())
	}
}

// Request implements call.Transport.
func (g *Gateway) Request(req *sip.Request, on func(*sip.Response, error)) error {
	g.bindLocal(req)
	ctx, cancel := context.WithCancel(context.Background())
	// As sipgo's Client.TransactionRequest does (we build requests whole),
	// but indexed for the fast path before Init sends the request: the
	// first response may come back before Init returns.
	tx, err := g.ua.TransactionLayer().NewClientTransaction(ctx, req)
	if err != nil {
		cancel()
		// Mostly no connection to the next hop (a TCP connect refused):
		// a transport error, which the caller counts as a 503 (RFC 3261
		// 8.1.3.1). Init's own errors say so already.
		if !errors.Is(err, sip.ErrTransactionTransport) {
			err = fmt.Errorf("%w: %w", sip.ErrTransactionTransport, err)
		}
		return err
	}
	g.txs.addClient(tx)
	if err := tx.Init(); err != nil {
		tx.Terminate()
		cancel()
		return err
	}
	if req.IsInvite() {
		tx.OnRetransmission(func(res *sip.Response) { on(res, nil) })
	}
	g.workers.Schedule(func() {
		defer cancel()
		final := false
		for {
			select {
			case res := <-tx.Responses():
				if res == nil {
					continue
				}
				if res.StatusCode >= 200 {
					final = true
				}
				on(res, nil)
				if final && !req.IsInvite() {
					// sipgo keeps a non-INVITE client transaction 32 s
					// after its final response (Timer D's value, where
					// RFC 3261 17.1.2.2 has Timer K = T4, 5 s, over UDP),
					// and with it the request and the response: a BYE's
					// held some 3 KB per call for 32 s. The Completed
					// state only absorbs retransmissions of the final
					// response; ended here, they find no transaction and
					// stray drops them.
					tx.Terminate()
				}
				if final {
					// Nothing more comes on Responses: a retransmitted
					// 2xx to an INVITE goes to OnRetransmission while the
					// transaction lasts (New has it end on the 2xx), then
					// to the stray handler. Returning here matters: after
					// a non-2xx an INVITE's transaction lives 32 s (Timer
					// D, to ACK the response's retransmissions), and a
					// goroutine held that long per call was tens of
					// thousands of stacks for the GC to scan under load.
					return
				}
			case <-tx.Done():
				if !final {
					err := tx.Err() // wrapped: the caller tells a timeout from a transport error
					if err == nil {
						err = errors.New("no final response")
					}
					on(nil, fmt.Errorf("transaction ended: %w", err))
				}
				return
			case <-g.closed:
				tx.Terminate()
				return
			}
		}
	})
	return nil
}

// Write implements call.Transport. A response over UDP goes straight out
// of our listening socket to its Via's address (received/rport): sipgo
// would look for a connection to that address, and after a restart it has
// none.
func (g *Gateway) Write(m sip.Message) error {
	if req, ok := m.(*sip.Request); ok {
		g.bindLocal(req)
		return g.client.WriteRequest(req, noBuild)
	}
	res := m.(*sip.Response)
	// Sent without a transaction (a 2xx retransmitted until its ACK, an
	// answer from state after a restart): counted here, as countedTx
	// counts those sent on one.
	if g.opts.Metrics != nil {
		g.opts.Metrics.SIPResponse(res.StatusCode)
	}
	if !strings.EqualFold(res.Transport(), "UDP") {
		return g.srv.WriteResponse(res)
	}
	dst, err := net.ResolveUDPAddr("udp", res.Destination())
	if err != nil {
		return fmt.Errorf("response destination %q: %w", res.Destination(), err)
	}
	g.mu.Lock()
	var w *udpWriter
	if len(g.packets) > 0 {
		w = g.fast.conns[g.packets[0].LocalAddr().String()]
	}
	g.mu.Unlock()
	if w == nil {
		return errors.New("gateway: no UDP socket")
	}
	return (&udpResponder{w: w, to: dst}).Respond(res)
}

// stray receives responses no client transaction claimed.
func (g *Gateway) stray(res *sip.Response) {
	f := res.From()
	if f == nil || g.calls == nil {
		return
	}
	if cs := res.CSeq(); cs == nil || cs.MethodName != sip.INVITE {
		// Only an INVITE's responses mean something without their
		// transaction (a 2xx to ACK, a non-2xx to ACK hop by hop); any
		// other is a retransmission to drop (RFC 3261 17.1.2.2), not a
		// reason to wake (or replay) the call.
		return
	}
	tag, _ := f.Params.Get("tag")
	id, side, leg, ok := call.ParseTag(tag)
	if !ok {
		return
	}
	_ = g.calls.Deliver(id, &call.Stray{Res: res, Side: side, Leg: leg})
}

// waitDone waits for an actor to release a transaction, bounded.
func (g *Gateway) waitDone(done chan struct{}, bound time.Duration) {
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-g.closed:
	}
}

// inDialogTarget tells whether req is in one of Tandem's dialogs (its To
// tag is one Tandem gave) and which.
func inDialogTarget(req *sip.Request) (id, side string, leg uint32, tagged, ours bool) {
	to := req.To()
	if to == nil {
		return "", "", 0, false, false
	}
	tag, _ := to.Params.Get("tag")
	if tag == "" {
		return "", "", 0, false, false
	}
	id, side, leg, ok := call.ParseTag(tag)
	return id, side, leg, true, ok
}

// routeAck hands an ACK for a non-2xx to its INVITE server transaction
// and delivers one for a 2xx to its call.
func (g *Gateway) routeAck(req *sip.Request) {
	if g.calls == nil {
		return
	}
	if tx := g.txs.serverFor(req); tx != nil {
		// The ACK of a non-2xx final response: it ends the INVITE server
		// transaction's retransmissions (17.2.1). (Only the fast path gets
		// here with one: sipgo matches it before calling us.)
		_ = tx.Receive(req)
		return
	}
	id, side, leg, _, ours := inDialogTarget(req)
	if !ours {
		return // an ACK for nothing of ours: never answered (17.2.1)
	}
	_ = g.calls.Deliver(id, &call.InDialog{Req: req, Side: side, Leg: leg})
}

// handleInDialog routes a request inside one of Tandem's dialogs.
func (g *Gateway) handleInDialog(req *sip.Request, tx responder, id, side string, leg uint32) {
	if g.calls == nil {
		g.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	done := make(chan struct{})
	if err := g.calls.Deliver(id, &call.InDialog{Req: req, Tx: g.counted(tx), Side: side, Leg: leg, Done: done}); err != nil {
		g.respond(tx, req, 503, "Service Unavailable", [][2]string{{"Retry-After", "5"}})
		return
	}
	// A relayed request waits for the far side's answer: at most a
	// transaction's lifetime (64*T1) and some.
	g.waitDone(done, 40*time.Second)
}

// handleCancel routes the caller's CANCEL to its call (9.2: it names the
// INVITE by Call-ID, From tag and CSeq number).
func (g *Gateway) handleCancel(req *sip.Request, tx responder) {
	if g.calls == nil {
		g.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	// Its INVITE may be read and not yet with the call (pendinginvite.go).
	g.pending.wait(req, pendingInviteWait)
	ftag, _ := req.From().Params.Get("tag")
	id := call.IDFor(callID(req), ftag, req.CSeq().SeqNo)
	done := make(chan struct{})
	if err := g.calls.Deliver(id, &call.Cancel{Req: req, Tx: g.counted(tx), Done: done}); err != nil {
		g.respond(tx, req, 503, "Service Unavailable", nil)
		return
	}
	g.waitDone(done, 10*time.Second)
}

// handleInvite takes a caller's initial INVITE: no open relay (digest
// authentication, 407), loop and hop checks, then the callee's contacts
// from the location index, then the call actor.
func (g *Gateway) handleInvite(req *sip.Request, tx responder) {
	if g.calls == nil || g.opts.Locate == nil {
		g.respond(tx, req, 501, "Not Implemented", [][2]string{{"Allow", g.allow}})
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		g.respond(tx, req, 483, "Too Many Hops", nil)
		return
	}
	if g.isLoop(req) {
		g.respond(tx, req, 482, "Loop Detected", nil)
		return
	}
	if bad := checkOffer(req); bad != nil {
		g.respond(tx, req, bad.code, bad.reason, bad.headers)
		return
	}
	if v := siphdr.First(req, "Session-Expires"); v != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(strings.Split(v.Value(), ";")[0]), 10, 32)
		if err != nil {
			g.respond(tx, req, 400, "Bad Session-Expires", nil)
			return
		}
		if n < minSessionExpires {
			g.respond(tx, req, 422, "Session Interval Too Small", [][2]string{{"Min-SE", strconv.Itoa(minSessionExpires)}})
			return
		}
	}
	if !g.isOurs(req.Recipient.Host) {
		g.respond(tx, req, 404, "Not Found (no relaying to other domains)", nil)
		return
	}
	var authz string
	if h := siphdr.First(req, "Proxy-Authorization"); h != nil {
		authz = h.Value()
	}
	res := g.opts.Auth.Verify(authz, string(req.Method), txKey(req), func(u string) bool { return g.uriMatches(u, &req.Recipient) })
	switch res.Outcome {
	case digest.Challenge, digest.Stale:
		g.respond(tx, req, 407, "Proxy Authentication Required", g.challenges("Proxy-Authenticate", res.Outcome == digest.Stale))
		return
	case digest.Malformed:
		g.respond(tx, req, 400, "Bad Proxy-Authorization ("+res.Reason+")", nil)
		return
	case digest.Forbidden:
		g.respond(tx, req, 403, "Forbidden", nil)
		return
	}
	if _, stateless := tx.(*udpResponder); stateless {
		// classify lets only INVITEs without credentials take the fast
		// path, and those are challenged above: a call needs a server
		// transaction, so this is a bug, not a caller's mistake.
		g.opts.Logger.Error("INVITE authenticated without a server transaction", "call_id", callID(req))
		g.respond(tx, req, 500, "Server Internal Error", nil)
		return
	}
	from := req.From()
	if from.Address.User != res.User || !g.isOurs(from.Address.Host) {
		g.respond(tx, req, 403, "Forbidden (From is not the authenticated user)", nil)
		return
	}
	// Admission before any work for the call: a node at its limits
	// answers 503 at once (admission.go).
	ftag, _ := from.Params.Get("tag")
	id := call.IDFor(callID(req), ftag, req.CSeq().SeqNo)
	if e := g.admit.check(id, g.calls); e != nil {
		g.respond(tx, req, e.code, e.reason, e.headers)
		return
	}
	callee := req.Recipient.User
	if callee == "" {
		g.respond(tx, req, 404, "Not Found", nil)
		return
	}
	if g.opts.KnownUser != nil && !g.opts.KnownUser(callee) {
		g.respond(tx, req, 404, "Not Found", nil)
		return
	}
	calleeAOR := "sip:" + callee + "@" + g.opts.Domain
	targets := g.opts.Locate(calleeAOR)
	if len(targets) == 0 {
		g.respond(tx, req, 480, "Temporarily Unavailable", nil)
		return
	}
	if st, ok := tx.(*sip.ServerTx); ok {
		// The UDP fast path and the TCP framer (tcpcancel.go) take every
		// CANCEL before sipgo's transaction layer, which would answer it
		// itself (200, 487). Should one reach sipgo all the same (a
		// transport neither covers), the call still has to learn of it.
		st.OnCancel(func(c *sip.Request) { _ = g.calls.Deliver(id, &call.Cancel{Req: c}) })
	}
	// The call actor sends 100 Trying once the INVITE is in its mailbox
	// (call.Invite), so that a CANCEL the caller sends on it is queued
	// behind the INVITE.
	done := make(chan struct{})
	inv := &call.Invite{Req: req, Tx: g.counted(tx), Caller: "sip:" + res.User + "@" + g.opts.Domain, Callee: calleeAOR, Targets: targets, Done: done}
	if err := g.calls.Deliver(id, inv); err != nil {
		g.respond(tx, req, 503, "Service Unavailable", [][2]string{{"Retry-After", "5"}})
		return
	}
	g.pending.clear(req) // a CANCEL now queues behind it
	g.waitDone(done, g.opts.InviteWait)
}

// isLoop tells whether req already went through this node as a B leg
// (a top-to-bottom look for our own Via: B2BUA-PITFALLS 9).
func (g *Gateway) isLoop(req *sip.Request) bool {
	local := g.Local()
	for h := range siphdr.Each(req, "Via") {
		v, ok := h.(*sip.ViaHeader)
		if ok && v.Host == local.Host && v.Port == local.Port {
			return true
		}
	}
	return false
}

// checkOffer refuses a body Tandem cannot pass on: an unknown content type
// (415) or an SDP that is not one (400).
func checkOffer(req *sip.Request) *sipError {
	body := req.Body()
	if len(body) == 0 {
		return nil
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct, _, _ = strings.Cut(h.Value(), ";")
		ct = strings.ToLower(strings.TrimSpace(ct))
	}
	switch ct {
	case "application/sdp":
	case "":
		return &sipError{400, "Body Without Content-Type", nil}
	default:
		return &sipError{415, "Unsupported Media Type", [][2]string{{"Accept", "application/sdp"}}}
	}
	if !strings.HasPrefix(string(body), "v=0") {
		return &sipError{400, "Malformed SDP (no v=0 line first)", nil}
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(body) {
		return &sipError{400, "Content-Length Does Not Match the Body", nil}
	}
	return nil
}
