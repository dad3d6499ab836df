package gateway

import (
	"bytes"
	"net"
	"strconv"
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
// Everything else (INVITE, ACK, other in-dialog requests, responses, TCP,
// anything the fast path cannot parse) goes through sipgo as before.

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
	// Called in the serial read loop for every datagram that skips the
	// fast path: walk the lines without allocating.
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
		if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
			return n, err == nil
		}
	}
	return 0, false
}

// answerShort answers a request whose body is cut short with 400: its
// headers (without the body and Content-Length) are enough to address it.
func (g *Gateway) answerShort(j udpJob) {
	end := bytes.Index(j.data, []byte("\r\n\r\n"))
	var head bytes.Buffer
	for i, line := range bytes.Split(j.data[:end], []byte("\r\n")) {
		name, _, _ := bytes.Cut(line, []byte(":"))
		name = bytes.TrimSpace(name)
		if i > 0 && (bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l"))) {
			continue
		}
		head.Write(line)
		head.WriteString("\r\n")
	}
	head.WriteString("Content-Length: 0\r\n\r\n")
	msg, err := g.fast.parser.ParseSIP(head.Bytes())
	if err != nil {
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil || req.IsAck() {
		return
	}
	req.SetTransport("UDP")
	req.SetSource(j.to.String())
	g.respond(&udpResponder{w: j.conn, to: j.to}, req, 400, "Content-Length Exceeds the Body", nil)
}

// fastPath is the state of the UDP fast path. conns is written by Start
// before any datagram is read, and only read afterwards.
type fastPath struct {
	parser *sip.Parser
	jobs   chan udpJob
	conns  map[string]*udpWriter // by local address
	bufs   sync.Pool             // of *bytes.Buffer, for encoding answers
}

// isFastMethod tells from the request line whether a datagram takes the
// fast path.
func isFastMethod(data []byte) bool {
	return bytes.HasPrefix(data, []byte("REGISTER ")) || bytes.HasPrefix(data, []byte("OPTIONS ")) ||
		bytes.HasPrefix(data, []byte("BYE ")) || bytes.HasPrefix(data, []byte("CANCEL "))
}

// readFilter is sipgo's TransportReadFilter: called serially per socket, in
// its read loop, which is the one serial step of the UDP path; so it only
// looks at the request line and hands the datagram over, and the workers
// parse in parallel. It blocks only while the workers' queue is full, and
// must never return an error (that would stop the read loop).
func (g *Gateway) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.LocalAddr == nil || p.RemoteAddr == nil {
		return data, nil
	}
	fast := isFastMethod(data)
	short := !fast && isShortRequest(data) // (kept off the REGISTER path: it is serial)
	if !short && !fast {
		return data, nil
	}
	conn := g.fast.conns[p.LocalAddr.String()]
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
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil {
		return
	}
	req.SetTransport("UDP")
	req.SetSource(j.to.String())
	g.serve(req, &udpResponder{w: j.conn, to: j.to}, len(j.data))
}

// udpResponder answers one request statelessly on a UDP socket, through
// the socket's writer.
type udpResponder struct {
	w  *udpWriter
	to net.Addr
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
