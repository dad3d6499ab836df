package gateway

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// The UDP fast path. REGISTER, OPTIONS, BYE and CANCEL are answered as a
// stateless UAS (RFC 3261 8.2.7) anyway, so sipgo's transaction layer only costs them: a
// goroutine per message whose stack grows on the way through (11% of the
// CPU at 9,000 REGISTER/s), a server transaction with its timers and
// context, a connection-pool lookup. Instead, sipgo's transport read filter
// hands those datagrams to a pool of long-lived workers that parse, serve
// and write the answer straight to the socket they came in on (to the
// source address, as sipgo does: RFC 3581 symmetric response routing).
// A CANCEL taken here never reaches sipgo's transaction layer, which would
// answer it (200, then 487 to the INVITE) before the call actor has made
// the cancellation durable; the actor answers both instead.
// ACKs, responses and the INVITEs that can only be challenged take the
// fast path too (classify says why each is safe there); ACKs and responses
// reach sipgo's transactions directly, through txIndex.
// Everything else (an INVITE with credentials or in a dialog, other
// in-dialog requests, TCP but for its CANCELs (tcpcancel.go), anything the
// fast path cannot parse) goes through sipgo's transaction layer.

// fastWorkers serve the fast path; handlers block on actors (an fsync), so
// there are far more than cores. With the CPU full, at 14,000 REGISTER/s,
// an append took 25-100 ms from call to answer (tandem_store_append_duration
// _seconds), so about a thousand registrations are in flight at once; a
// parked worker costs only its stack. fastQueue bounds what waits for them
// (a copy of each datagram, some 5 MB when full): while it is full the read
// loops wait and the socket buffer fills, so it must ride out a commit that
// stalls for a few hundred milliseconds; with 1,024 a 17,000/s step lost
// datagrams at the socket where 8,192 ran clean (regbench -only tandem).
const (
	fastWorkers = 1024
	fastQueue   = 8192
)

type udpJob struct {
	data  []byte // the datagram (a copy: sipgo reuses its read buffer)
	conn  *udpWriter
	to    net.Addr
	short bool // a request whose body is shorter than its Content-Length
}

// isShortRequest tells whether a datagram is a request whose body ends
// before its Content-Length says. RFC 3261 18.3 wants a 400 for it; sipgo
// drops it silently, so the fast path answers it.
func isShortRequest(data []byte) bool {
	if bytes.HasPrefix(data, []byte("SIP/")) {
		return false // a response: dropping it is right (18.3)
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return false
	}
	n, ok := contentLength(data[:end])
	return ok && n > len(data)-end-4
}

// contentLength finds the Content-Length (or compact "l") header value in
// a header block.
func contentLength(head []byte) (int, bool) {
	h := scanHead(head)
	return h.length, h.hasLength
}

// headFacts is what the serial read loop learns of a header block in one
// walk over its lines, without allocating.
type headFacts struct {
	length    int
	hasLength bool // a Content-Length (or "l") that parses
	proxyAuth bool // a Proxy-Authorization header
	toTag     bool // a To (or "t") header with a tag parameter
}

func scanHead(head []byte) headFacts {
	var f headFacts
	for rest := head; len(rest) > 0; {
		line := rest
		if i := bytes.Index(rest, []byte("\r\n")); i >= 0 {
			line, rest = rest[:i], rest[i+2:]
		} else {
			rest = nil
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // the request line
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")):
			if !f.hasLength {
				n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
				f.length, f.hasLength = n, err == nil
			}
		case bytes.EqualFold(name, []byte("Proxy-Authorization")):
			f.proxyAuth = true
		case bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t")):
			f.toTag = hasTagParam(val)
		}
	}
	return f
}

// hasTagParam tells whether a To header value has a tag parameter: one
// after the name-addr's closing '>' or, without angle brackets, after the
// URI (whose own ";tag" would be a URI parameter, RFC 3261 20.10).
func hasTagParam(val []byte) bool {
	if i := bytes.LastIndexByte(val, '>'); i >= 0 {
		val = val[i+1:]
	}
	_, rest, more := bytes.Cut(val, []byte(";"))
	for more {
		var p []byte
		p, rest, more = bytes.Cut(rest, []byte(";"))
		k, _, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("tag")) {
			return true
		}
	}
	return false
}

// answerShort answers a request whose body is cut short with 400: its
// headers (without the body and Content-Length) are enough to address it.
func (g *Gateway) answerShort(j udpJob) {
	end := bytes.Index(j.data, []byte("\r\n\r\n"))
	g.answerBadLength(j.data[:end], "UDP", j.to, &udpResponder{w: j.conn, to: j.to}, "Content-Length Exceeds the Body")
}

// answerBadLength answers 400 with reason to the request whose header
// block is head, a request whose Content-Length cannot be trusted: its
// Content-Length headers are dropped to parse the rest. A head that does
// not parse, a response and an ACK get nothing.
func (g *Gateway) answerBadLength(head []byte, transport string, from net.Addr, tx responder, reason string) {
	var b bytes.Buffer
	for i, line := range bytes.Split(head, []byte("\r\n")) {
		name, _, _ := bytes.Cut(line, []byte(":"))
		name = bytes.TrimSpace(name)
		if i > 0 && (bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l"))) {
			continue
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	msg, err := g.fast.parser.ParseSIP(b.Bytes())
	if err != nil {
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil || req.IsAck() {
		return
	}
	req.SetTransport(transport)
	req.SetSource(from.String())
	g.respond(tx, req, 400, reason, nil)
}

// fastPath is the state of the UDP fast path. conns is written by Start
// before any datagram is read, and only read afterwards.
type fastPath struct {
	parser *sip.Parser
	jobs   chan udpJob
	conns  map[string]*udpWriter // by local address
	// byAddr holds the same writers by the socket's own LocalAddr value (a
	// *net.UDPAddr the socket keeps and hands out each time), so that the
	// read loop finds its writer without formatting the address per
	// datagram; conns is the fallback for any other net.Addr.
	byAddr map[*net.UDPAddr]*udpWriter
	bufs   sync.Pool // of *bytes.Buffer, for encoding answers
}

// classify tells from its start line, and for an INVITE from its headers,
// whether a datagram takes the fast path, and whether it is a request
// whose body is cut short (answered 400 by the fast path either way).
//
// REGISTER, OPTIONS, BYE and CANCEL are answered statelessly anyway. An
// ACK is never answered: one for a non-2xx goes to its INVITE server
// transaction (txIndex), one for a 2xx to its call. A response goes to its
// client transaction (txIndex). An INVITE with no To tag and no
// Proxy-Authorization can only be challenged (digest.Verify answers an
// empty header with a challenge, before any call exists), and a challenge
// is sent statelessly (RFC 3261 8.2.7, as Kamailio's sl_send_reply does):
// the To tag is derived from the request, so a retransmitted INVITE gets
// the same 407 again, and the ACK for it finds no transaction and no call
// and is dropped. Every other INVITE needs a server transaction: it goes
// through sipgo.
func classify(data []byte) (fast, short bool) {
	switch {
	case bytes.HasPrefix(data, []byte("REGISTER ")) || bytes.HasPrefix(data, []byte("OPTIONS ")) ||
		bytes.HasPrefix(data, []byte("BYE ")) || bytes.HasPrefix(data, []byte("CANCEL ")):
		return true, false // (the body check is kept off the REGISTER path: it is serial)
	case bytes.HasPrefix(data, []byte("ACK ")) || bytes.HasPrefix(data, []byte("SIP/")):
		return true, false
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return false, false
	}
	h := scanHead(data[:end])
	short = h.hasLength && h.length > len(data)-end-4
	if bytes.HasPrefix(data, []byte("INVITE ")) && !h.proxyAuth && !h.toTag {
		return true, short
	}
	return false, short
}

// readFilter is sipgo's TransportReadFilter. A TCP connection's chunks go
// to the CANCEL framer (tcpcancel.go). For UDP it is called serially per
// socket, in its read loop, which is the one serial step of the UDP path;
// so it only looks at the request line (and an INVITE's header names) and
// hands the datagram over, and the workers parse in parallel. It blocks only while
// the workers' queue is full, and must never return an error (that would
// stop the read loop).
func (g *Gateway) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.LocalAddr == nil || p.RemoteAddr == nil {
		return data, nil
	}
	if isTCP(p) {
		return g.tcp.filter(p.LocalAddr, p.RemoteAddr, data)
	}
	if !strings.EqualFold(p.Transport, "udp") {
		// Not a datagram (a transport we do not listen on today): its
		// connections can have the very local address of a UDP socket of
		// ours, whose writer must not answer them.
		return data, nil
	}
	fast, short := classify(data)
	if !short && !fast {
		// To sipgo: an initial INVITE among these is marked pending
		// before sipgo's transaction can send its own 100 Trying.
		g.pending.markRaw(data, p.RemoteAddr)
		return data, nil
	}
	var conn *udpWriter
	if a, ok := p.LocalAddr.(*net.UDPAddr); ok {
		conn = g.fast.byAddr[a]
	}
	if conn == nil {
		conn = g.fast.conns[p.LocalAddr.String()]
	}
	if conn == nil {
		return data, nil // not a UDP socket of ours
	}
	// While every worker is busy the read loop waits here, and what
	// arrives meanwhile waits in the socket's receive buffer (or, under
	// sustained overload, is dropped there and retransmitted by the
	// client). Handing it to sipgo instead was worse: a goroutine per
	// datagram, unbounded, and at 16,000 REGISTER/s some 14,000 of them
	// crowded out the committer and the writer until the server stalled
	// at 78% of a core.
	select {
	case g.fast.jobs <- udpJob{data: append([]byte(nil), data...), conn: conn, to: p.RemoteAddr, short: short}:
	case <-g.closed:
	}
	return nil, nil
}

func (g *Gateway) fastWorker() {
	for {
		select {
		case j := <-g.fast.jobs:
			g.fastServe(j)
		case <-g.closed:
			return
		}
	}
}

// fastServe parses and answers one fast-path datagram. One that does not
// parse, or has no Via to answer along, is dropped (as sipgo drops what it
// cannot parse); everything else gets an answer.
func (g *Gateway) fastServe(j udpJob) {
	if j.short {
		g.answerShort(j)
		return
	}
	msg, err := g.fast.parser.ParseSIP(j.data)
	if err != nil {
		g.opts.Logger.Debug("unparsable SIP datagram dropped", "from", j.to.String(), "err", err)
		return
	}
	if msg.Via() == nil {
		return
	}
	msg.SetTransport("UDP")
	msg.SetSource(j.to.String())
	req, ok := msg.(*sip.Request)
	if !ok {
		g.fastResponse(msg.(*sip.Response))
		return
	}
	g.serve(req, &udpResponder{w: j.conn, to: j.to, raw: j.data}, len(j.data))
}

// fastResponse hands a response to the client transaction it answers, as
// sipgo's transaction layer would (RFC 3261 17.1.3), or, when none claims
// it (a 2xx retransmitted after the INVITE transaction ended, a response
// from before a restart), to the stray handler (17.1.1.2).
func (g *Gateway) fastResponse(res *sip.Response) {
	if tx := g.txs.clientFor(res); tx != nil {
		tx.Receive(res)
		return
	}
	g.stray(res)
}

// udpResponder answers one request statelessly on a UDP socket, through
// the socket's writer.
type udpResponder struct {
	w   *udpWriter
	to  net.Addr
	raw []byte // the request datagram, for Gateway.respond to copy from; nil: build through sipgo
}

func (r *udpResponder) Respond(res *sip.Response) error {
	buf, _ := r.w.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	res.StringWrite(buf)
	r.w.send(buf, r.to)
	return nil
}

// Terminate has nothing to end: there is no transaction.
func (r *udpResponder) Terminate() {}
