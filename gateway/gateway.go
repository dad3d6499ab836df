// Package gateway is Tandem's SIP front door: sipgo transports (UDP, TCP)
// and transaction layer, request validation and limits, digest challenges,
// and stateless routing of each request to the actor that owns it
// (ARCHITECTURE.md invariant 7: the gateway holds no call or registration
// state; the only memory it keeps is the digest nonce-count replay guard,
// besides sipgo's SIP transactions and an index of them, txindex.go).
//
// Every request is answered or, when it cannot be answered at all (no Via,
// unparsable), dropped; never a panic. Domain errors become SIP statuses in
// one table (errors.go). Handlers run concurrently: on the UDP fast path's
// workers (fastpath.go), else on a pool of workers while the goroutine
// sipgo's transaction layer started for the request waits.
package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/dispatch"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/gateway/digest"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/internal/config"
	"github.com/tandemswitch/tandem/internal/siphdr"
	"github.com/tandemswitch/tandem/internal/sipmethod"
)

// Registrar is what the gateway needs of the registration actors.
type Registrar interface {
	Register(ctx context.Context, cmd *registrar.Register, cause *eventpb.Cause) (*registrar.Result, error)
}

// Metrics receives per-message counts. Called concurrently.
type Metrics interface {
	SIPRequest(method string)
	SIPResponse(code int)
}

// Options configure a Gateway.
type Options struct {
	// Listen: "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" (config sip.listen).
	Listen []string
	// Domain we serve; Aliases and the listen IPs are accepted as ours too.
	Domain  string
	Aliases []string
	// MaxMessageBytes: larger requests get 513. MaxHeaders: more header
	// fields get 400.
	MaxMessageBytes int
	MaxHeaders      int
	// ServerName goes into the Server header.
	ServerName string
	Auth       *digest.Authenticator
	Registrar  Registrar
	Metrics    Metrics
	Clock      clock.Clock
	Logger     *slog.Logger
	// Locate returns the contact URIs registered for an AOR, best first
	// (the location index). Nil: INVITE gets 501.
	Locate func(aor string) []string
	// KnownUser tells whether a user name is provisioned (an unknown
	// callee gets 404, a known one with no contact 480).
	KnownUser func(user string) bool
	// InviteWait bounds how long an INVITE handler waits for its call to
	// give the final response (sip transaction kept alive meanwhile).
	// Default 5 minutes.
	InviteWait time.Duration
	// MaxCallRate, MaxActiveCalls, ActiveCalls and OverloadRetryAfter
	// configure call admission (admission.go; config calls.max_rate,
	// calls.max_active, calls.overload_retry_after). Zero: no limit.
	MaxCallRate        int
	MaxActiveCalls     int
	ActiveCalls        func() int
	OverloadRetryAfter time.Duration
}

// Gateway serves SIP.
type Gateway struct {
	opts   Options
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	calls  CallRouter
	ours   map[string]bool // host names and IPs that are "myself"
	domain string          // Options.Domain in lower case, for AORs
	allow  string
	closed chan struct{}
	tcp    tcpCancels // CANCELs taken out of TCP streams (tcpcancel.go)
	fast   fastPath
	txs    txIndex // sipgo's transactions, for the fast path
	// pending: initial INVITEs read and not yet with their call, which
	// CANCELs wait for (pendinginvite.go)
	pending *pendingInvites
	admit   *admission
	local   atomic.Pointer[boundLocal]
	// workers run handlers of requests sipgo's transaction layer passes
	// us, and follow client transactions (Request).
	workers *dispatch.Pool

	mu        sync.Mutex // guards listeners
	listeners []net.Listener
	packets   []net.PacketConn
	inflight  sync.WaitGroup
	// life orders serve's inflight.Add before Shutdown's Wait: requests
	// enter under its read lock while closed is open, and Shutdown closes
	// closed under its write lock (a WaitGroup must not be added to
	// concurrently with Wait when its count may be zero).
	life    sync.RWMutex
	serving sync.WaitGroup
}

// udpReadLoops is how many of sipgo's read loops serve each UDP socket.
// A read loop parses every datagram that does not take the fast path
// (INVITE, ACK, responses) before handing it on, so one loop is a serial
// section that capped a node at about one core of call handling.
const udpReadLoops = 3

// handlerWorkers is how many long-lived goroutines run handlers and follow
// client transactions; when all are busy (a ringing call holds one for
// its INVITE), work runs on a new goroutine.
const handlerWorkers = 1024

// Methods we implement, for Allow headers.
var allowed = []string{"REGISTER", "OPTIONS", "INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "INFO", "PRACK"}

// rfc3261InviteTransactions ends sipgo's INVITE transactions on a 2xx, as
// RFC 3261 (17.1.1.2, 17.2.1) does, instead of keeping them 64*T1 (32 s)
// in RFC 6026's Accepted state. The call actor is the UA core that state
// stands in for: it retransmits its 2xx until the ACK (13.3.1.4) and ACKs
// every 2xx it gets (a retransmitted one comes to it through stray, as
// after a restart); a retransmitted INVITE reaches its call, which
// answers it from state. Kept, each transaction held its INVITE and the
// 2xx for the 32 s: 15,000 calls at 1,500/s left 167 MB live 15 s after
// the last one ended. sipgo's timers are package settings, hence once
// per process.
var rfc3261InviteTransactions sync.Once

// New builds a gateway; Start binds its sockets.
func New(opts Options) (*Gateway, error) {
	rfc3261InviteTransactions.Do(func() { sip.Timer_L, sip.Timer_M = 0, 0 })
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.ServerName == "" {
		opts.ServerName = "Tandem"
	}
	if opts.InviteWait == 0 {
		opts.InviteWait = 5 * time.Minute
	}
	if opts.Auth == nil || opts.Registrar == nil {
		return nil, errors.New("gateway: Auth and Registrar are required")
	}
	g := &Gateway{opts: opts, ours: map[string]bool{}, domain: strings.ToLower(opts.Domain), allow: strings.Join(allowed, ", "), closed: make(chan struct{}),
		workers: dispatch.New(handlerWorkers, 0)}
	g.tcp = tcpCancels{partial: map[string]*tcpPartial{}, maxBytes: max(2*opts.MaxMessageBytes, 64<<10), take: g.takeTCPCancel, unframed: g.rejectUnframed}
	g.pending = newPendingInvites()
	g.admit = newAdmission(opts)
	g.tcp.seen = g.pending.markRaw
	g.fast = fastPath{parser: sip.NewParser(), jobs: make(chan udpJob, fastQueue), conns: map[string]*udpWriter{}, byAddr: map[*net.UDPAddr]*udpWriter{}}
	g.ours[strings.ToLower(opts.Domain)] = true
	for _, a := range opts.Aliases {
		g.ours[strings.ToLower(a)] = true
	}
	for _, l := range opts.Listen {
		_, ap, err := config.ParseListen(l)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.ours[ap.Addr().String()] = true
	}
	// sipgo logs every unparsable datagram at error level; a flood of them
	// must not become a flood of log lines.
	sipLog := slog.New(newRateLimitedHandler(opts.Logger.Handler(), 10, opts.Clock))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(opts.ServerName),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog), sip.WithTransportLayerReadFilter(g.readFilter)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(g.stray)),
	)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	client, err := sipgo.NewClient(ua)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.ua, g.srv, g.client = ua, srv, client
	srv.OnNoRoute(g.handle)
	return g, nil
}

// Start binds every listen socket and serves them. It fails, binding
// nothing, when any socket cannot be bound.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.opts.Listen {
		network, ap, _ := config.ParseListen(l)
		switch network {
		case "udp":
			pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				g.closeLocked()
				return fmt.Errorf("gateway: listen %s: %w", l, err)
			}
			// A larger receive buffer rides out bursts instead of dropping.
			_ = pc.SetReadBuffer(8 << 20)
			g.packets = append(g.packets, pc)
		case "tcp":
			ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
			if err != nil {
				g.closeLocked()
				return fmt.Errorf("gateway: listen %s: %w", l, err)
			}
			g.listeners = append(g.listeners, ln)
		}
	}
	for _, pc := range g.packets {
		w := newUDPWriter(pc, &g.fast.bufs, g.closed, func(to net.Addr, err error) {
			g.opts.Logger.Debug("UDP send failed", "to", to.String(), "err", err)
		})
		g.fast.conns[pc.LocalAddr().String()] = w
		if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
			g.fast.byAddr[a] = w
		}
		go w.run()
	}
	for i := 0; i < fastWorkers; i++ {
		go g.fastWorker()
	}
	for _, pc := range g.packets {
		wc := &writerConn{PacketConn: pc, w: g.fast.conns[pc.LocalAddr().String()]}
		for i := 0; i < udpReadLoops; i++ {
			g.serving.Add(1)
			go func() { defer g.serving.Done(); _ = g.srv.ServeUDP(wc) }()
		}
	}
	for _, ln := range g.listeners {
		g.serving.Add(1)
		go func(ln net.Listener) { defer g.serving.Done(); _ = g.srv.ServeTCP(ln) }(ln)
	}
	// sipgo adds a UDP socket to its connection pool in the goroutine that
	// serves it. Until then a request Tandem sends from that address (a
	// recovered call's CANCEL or BYE, right after a restart) finds no
	// connection, and sipgo tries to bind the address again and fails
	// ("address already in use"). So Start returns only once every UDP
	// socket is in the pool.
	pool := g.ua.TransportLayer().Pool("udp")
	for _, pc := range g.packets {
		addr := pc.LocalAddr().String()
		for deadline := time.Now().Add(5 * time.Second); pool.Get(addr) == nil; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				g.closeLocked()
				close(g.closed) // the workers and writers started above stop
				return fmt.Errorf("gateway: udp:%s was not being served after 5s", addr)
			}
		}
	}
	g.local.Store(boundOf(g.addrsLocked()))
	return nil
}

// Addrs returns the bound local addresses ("udp:127.0.0.1:5060"), useful
// when a port 0 was configured.
func (g *Gateway) Addrs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrsLocked()
}

func (g *Gateway) addrsLocked() []string {
	var out []string
	for _, pc := range g.packets {
		out = append(out, "udp:"+pc.LocalAddr().String())
	}
	for _, ln := range g.listeners {
		out = append(out, "tcp:"+ln.Addr().String())
	}
	return out
}

func (g *Gateway) closeLocked() {
	for _, pc := range g.packets {
		_ = pc.Close()
	}
	for _, ln := range g.listeners {
		_ = ln.Close()
	}
	g.packets, g.listeners = nil, nil
}

// Shutdown stops reading new messages, waits (up to ctx) for requests in
// progress to be answered, then closes the transaction and transport layers.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	select {
	case <-g.closed:
		g.mu.Unlock()
		return nil
	default:
		g.life.Lock()
		close(g.closed)
		g.life.Unlock()
	}
	g.closeLocked()
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.inflight.Wait(); g.serving.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("gateway: shutdown: %w", ctx.Err())
	}
	_ = g.ua.Close()
	g.workers.Stop()
	return err
}

// responder is what a handler needs of a server transaction: sipgo's
// ServerTx, or the stateless UDP answerer of the fast path (fastpath.go).
type responder interface {
	Respond(res *sip.Response) error
	Terminate()
}

// handle is the entry point of every request that comes through sipgo's
// transaction layer (sipgo calls it concurrently).
func (g *Gateway) handle(req *sip.Request, tx sip.ServerTransaction) {
	if st, ok := tx.(*sip.ServerTx); ok && req.IsInvite() && strings.EqualFold(req.Transport(), "UDP") {
		// Before any response goes out: the ACK for a non-2xx one takes
		// the fast path and must find this transaction (txIndex).
		g.txs.addServer(st)
	}
	// sipgo calls us on a goroutine of its own per request, whose small
	// stack grew through the handler every time (2-3% of the CPU of a call,
	// pprof). The handler runs on a long-lived worker instead, and sipgo's
	// goroutine waits for it: sipgo ends the transaction when we return.
	done := make(chan struct{})
	g.workers.Schedule(func() { defer close(done); g.serve(req, tx, 0) })
	<-done
}

// enter counts a request in flight, unless the gateway is shutting down.
func (g *Gateway) enter() bool {
	g.life.RLock()
	defer g.life.RUnlock()
	select {
	case <-g.closed:
		return false
	default:
		g.inflight.Add(1)
		return true
	}
}

// serve answers one request; size is its size on the wire when known (the
// UDP fast path), else 0.
func (g *Gateway) serve(req *sip.Request, tx responder, size int) {
	if !g.enter() {
		return // shutting down: no answer can be counted on now
	}
	defer g.inflight.Done()
	defer func() {
		// A bug in one request's handling must not take the node down.
		if r := recover(); r != nil {
			g.opts.Logger.Error("panic handling SIP request", "panic", r, "method", req.Method, "call_id", callID(req))
			g.respond(tx, req, 500, "Server Internal Error", nil)
		}
	}()
	method := string(req.Method)
	if req.Method == sip.INVITE {
		defer g.pending.clear(req) // however it was answered
		if size <= 0 {
			size = g.pending.size(req) // its read path measured it
		}
	} else {
		// A stateless UAS for everything but INVITE (RFC 3261 8.2.7): the
		// transaction is dropped once answered instead of being kept for
		// Timer J (32 s over UDP). A retransmission is answered again, from
		// the actors' state, with no new event (invariant 5); holding every
		// REGISTER transaction for 32 s cost more than that.
		defer tx.Terminate()
	}
	if g.opts.Metrics != nil {
		g.opts.Metrics.SIPRequest(method)
	}
	if req.IsAck() {
		g.routeAck(req) // ACK is never answered (RFC 3261 17.2.1)
		return
	}
	if e := g.validate(req, size); e != nil {
		g.respond(tx, req, e.code, e.reason, e.headers)
		return
	}
	if method != "REGISTER" && method != "CANCEL" {
		if id, side, leg, tagged, ours := inDialogTarget(req); tagged {
			if !ours {
				g.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
				return
			}
			g.handleInDialog(req, tx, id, side, leg)
			return
		}
	}
	switch method {
	case "REGISTER":
		g.handleRegister(req, tx)
	case "INVITE":
		g.handleInvite(req, tx)
	case "OPTIONS":
		g.respond(tx, req, 200, "OK", [][2]string{{"Allow", g.allow}, {"Accept", "application/sdp"}})
	case "CANCEL":
		g.handleCancel(req, tx)
	case "BYE", "UPDATE", "INFO":
		g.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
	default:
		if sipmethod.Known(method) { // known but not allowed here: 405, else 501
			g.respond(tx, req, 405, "Method Not Allowed", [][2]string{{"Allow", g.allow}})
		} else {
			g.respond(tx, req, 501, "Not Implemented", [][2]string{{"Allow", g.allow}})
		}
	}
}

// validate applies the checks every request must pass (RFC 3261 8.2 and
// our limits) and returns the answer for one that fails. size is the
// request's size on the wire, or 0 when unknown: it is then estimated from
// the parsed headers, which renders every typed header again (4% of the
// CPU of a registration, pprof), so the fast path passes what it read, and
// an initial INVITE's mark (pendingInvites) says what its read path read
// (rendering it was 2% of a call's allocations).
func (g *Gateway) validate(req *sip.Request, size int) *sipError {
	hdrs := req.Headers()
	if len(hdrs) > g.opts.MaxHeaders {
		return &sipError{400, fmt.Sprintf("Too Many Headers (%d > %d)", len(hdrs), g.opts.MaxHeaders), nil}
	}
	if size <= 0 {
		size = len(req.Body()) + 64
		for _, h := range hdrs {
			size += len(h.Name()) + len(h.Value()) + 4
		}
	}
	if size > g.opts.MaxMessageBytes {
		return &sipError{513, "Message Too Large", nil}
	}
	switch {
	case req.From() == nil:
		return &sipError{400, "Missing From", nil}
	case req.To() == nil:
		return &sipError{400, "Missing To", nil}
	case req.CallID() == nil || strings.TrimSpace(req.CallID().Value()) == "":
		return &sipError{400, "Missing Call-ID", nil}
	case req.CSeq() == nil:
		return &sipError{400, "Missing CSeq", nil}
	case req.CSeq().MethodName != req.Method:
		return &sipError{400, "CSeq Method Does Not Match", nil}
	}
	// RFC 3261 8.2.2.3: a required extension we do not support gets 420.
	// We support reliable provisionals (RFC 3262, relayed end to end for
	// the initial INVITE) and session timers (RFC 4028); as a B2BUA we are
	// the UAS of Proxy-Require too.
	for _, name := range []string{"Require", "Proxy-Require"} {
		var unsupported []string
		for h := range siphdr.Each(req, name) {
			for _, tag := range optionTags(h.Value()) {
				if !supportsExtension(req.Method, tag) {
					unsupported = append(unsupported, tag)
				}
			}
		}
		if len(unsupported) > 0 {
			return &sipError{420, "Bad Extension", [][2]string{{"Unsupported", strings.Join(unsupported, ", ")}}}
		}
	}
	return nil
}

// supportsExtension tells whether a request of method may require the
// option tag: 100rel on INVITE, timer on INVITE and UPDATE.
func supportsExtension(method sip.RequestMethod, tag string) bool {
	switch strings.ToLower(tag) {
	case "100rel":
		return method == sip.INVITE
	case "timer":
		return method == sip.INVITE || method == sip.UPDATE
	}
	return false
}

// isOurs tells whether host (a domain or an IP) is this server.
func (g *Gateway) isOurs(host string) bool {
	h := strings.ToLower(strings.Trim(host, "[]"))
	if g.ours[h] {
		return true
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return g.ours[ip.String()]
	}
	return false
}

// respond sends a final or provisional response built from req. On the
// UDP fast path it is written straight from the request's bytes (reply.go);
// elsewhere, or when those cannot be copied safely, through sipgo.
func (g *Gateway) respond(tx responder, req *sip.Request, code int, reason string, headers [][2]string) {
	if u, ok := tx.(*udpResponder); ok && u.raw != nil && g.replyRaw(u, req, code, reason, headers) {
		return
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	g.finish(res, req)
	for _, h := range headers {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	g.send(tx, res)
}

// replyRaw writes the response with appendReply and queues it on the
// socket's writer; false when the request's bytes cannot be copied.
func (g *Gateway) replyRaw(u *udpResponder, req *sip.Request, code int, reason string, headers [][2]string) bool {
	ua, ok := u.to.(*net.UDPAddr)
	if !ok {
		return false
	}
	var tag [16]byte
	spec := replySpec{
		code: code, reason: reason, method: req.Method, src: ua.AddrPort(),
		tag: appendToTag(tag[:0], req), server: g.opts.ServerName, headers: headers,
	}
	buf, _ := u.w.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	b, ok := appendReply(buf.AvailableBuffer(), u.raw, spec)
	if !ok {
		u.w.bufs.Put(buf)
		return false
	}
	buf.Write(b)
	if g.opts.Metrics != nil {
		g.opts.Metrics.SIPResponse(code)
	}
	u.w.send(buf, u.to)
	return true
}

// finish adds what every response of ours carries: a To tag (RFC 3261
// 8.2.6.2) derived from the request, so that a retransmission answered
// statelessly gets the same one (sipgo's NewResponseFromRequest puts a
// random one there, which it replaces), and a Server header.
func (g *Gateway) finish(res *sip.Response, req *sip.Request) {
	if to, reqTo := res.To(), req.To(); to != nil && reqTo != nil && res.StatusCode > 100 && !reqTo.Params.Has("tag") {
		to.Params.Add("tag", toTag(req))
	}
	res.AppendHeader(sip.NewHeader("Server", g.opts.ServerName))
}

func (g *Gateway) send(tx responder, res *sip.Response) {
	if g.opts.Metrics != nil {
		g.opts.Metrics.SIPResponse(res.StatusCode)
	}
	if err := tx.Respond(res); err != nil {
		g.opts.Logger.Debug("SIP response not sent", "code", res.StatusCode, "err", err)
	}
}

// toTag is the To tag of our stateless answers to req: a hash of its
// Call-ID, CSeq number and From tag, so that a retransmission gets the
// same tag and different requests (almost surely) different ones.
func toTag(req *sip.Request) string {
	var b [16]byte
	return string(appendToTag(b[:0], req))
}

// appendToTag appends toTag(req) to b: FNV-1a (64 bits) over
// "Call-ID:CSeq" and the From tag, in 16 hex digits.
func appendToTag(b []byte, req *sip.Request) []byte {
	h := uint64(fnvOffset64)
	if c := req.CallID(); c != nil {
		h = fnvAdd(h, string(*c))
	}
	if cs := req.CSeq(); cs != nil {
		var n [24]byte
		h = fnvAdd(h, strconv.AppendUint(append(n[:0], ':'), uint64(cs.SeqNo), 10))
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		h = fnvAdd(h, t)
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h)
	return hex.AppendEncode(b, sum[:])
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvAdd is FNV-1a's step over s (hash/fnv's, without its allocation).
func fnvAdd[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// txKey identifies req's transaction for the digest replay guard: top Via
// branch, Call-ID and CSeq.
func txKey(req *sip.Request) string {
	var buf [160]byte // one allocation, the result, for usual sizes
	b := buf[:0]
	if v := req.Via(); v != nil {
		br, _ := v.Params.Get("branch")
		b = append(b, br...)
	}
	b = append(b, '|')
	b = append(b, callID(req)...)
	if cs := req.CSeq(); cs != nil {
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(cs.SeqNo), 10)
	}
	return string(b)
}

func callID(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

// cause describes req for the events it causes.
func cause(req *sip.Request) *eventpb.Cause {
	c := &eventpb.Cause{CallId: callID(req), Method: string(req.Method), Source: source(req)}
	if cs := req.CSeq(); cs != nil {
		c.Cseq = cs.SeqNo
	}
	if v := req.Via(); v != nil {
		c.Branch, _ = v.Params.Get("branch")
	}
	return c
}

func source(req *sip.Request) string {
	switch t := req.Transport(); t {
	case "UDP", "udp":
		return "udp:" + req.Source()
	case "TCP", "tcp":
		return "tcp:" + req.Source()
	default:
		return strings.ToLower(t) + ":" + req.Source()
	}
}
