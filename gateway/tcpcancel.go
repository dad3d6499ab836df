package gateway

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// CANCEL over TCP. sipgo's transaction layer answers a CANCEL that matches
// an INVITE server transaction itself (200, then 487 to the INVITE), before
// any handler runs and so before the call has made the cancellation durable
// (ARCHITECTURE.md invariant 2). Worse, a callee's 200 racing it is then
// answered to the caller on a transaction already ended with 487: the call
// is answered on one side and failed on the other. The UDP fast path keeps
// CANCEL from sipgo (fastpath.go); TCP hands sipgo's read filter stream
// chunks, not messages, so tcpCancels frames the stream (RFC 3261 18.3:
// Content-Length is mandatory on a stream) and takes each complete CANCEL
// out of it for the call actor to answer, passing everything else on in
// order. Only complete messages are passed on, so sipgo's stream parser is
// always between messages when it is handed data.

// tcpStreamLimit bounds the connections with a partial message held at
// once; tcpStreamIdle is how long one may stay partial before it is
// forgotten (its connection gone, or a client that stalls mid-message).
const (
	tcpStreamLimit = 10000
	tcpStreamIdle  = 2 * time.Minute
)

var (
	errTCPFraming   = errors.New("SIP over TCP: a message without a valid Content-Length (RFC 3261 18.3)")
	errTCPTooLarge  = errors.New("SIP over TCP: a message larger than the limit")
	errTCPTooMany   = errors.New("SIP over TCP: too many connections with a partial message")
	cancelStartLine = []byte("CANCEL ")
)

// tcpCancels holds the partial message of each TCP connection between
// reads. The read filter is called serially per connection and
// concurrently across them.
type tcpCancels struct {
	mu       sync.Mutex
	partial  map[string]*tcpPartial // by local and remote address
	swept    time.Time
	maxBytes int
	take     func(msg []byte, local, remote net.Addr) // a complete CANCEL
	// unframed is told the header block of a message whose Content-Length
	// is missing or bad, before the connection is closed. Optional.
	unframed func(head []byte, remote net.Addr)
	// seen is shown every other complete message before it is passed on
	// (to mark INVITEs pending, pendinginvite.go). Optional.
	seen func(msg []byte, remote net.Addr)
}

type tcpPartial struct {
	data []byte
	seen time.Time
	// err: the connection's stream could not be framed after the messages
	// already passed on; its next read closes it.
	err error
}

// filter is the read filter for one chunk of a TCP connection: it returns
// the complete messages in it that are not CANCELs (with any CRLF keep-alives
// between them), hands the CANCELs to take, and keeps a trailing partial
// message for the next chunk. An error closes the connection, as a framing
// error does in sipgo: there is no message boundary left to resync on. The
// complete messages read before such an error are served first (sipgo drops
// what comes with an error), and the error closes the connection at its
// next read.
func (t *tcpCancels) filter(local, remote net.Addr, data []byte) ([]byte, error) {
	key := local.String() + " " + remote.String()
	t.mu.Lock()
	p := t.partial[key]
	if p != nil {
		delete(t.partial, key)
	}
	t.mu.Unlock()
	buf := data
	if p != nil {
		if p.err != nil {
			return nil, p.err
		}
		buf = append(p.data, data...)
	}
	out, rest, err := t.split(buf, local, remote)
	switch {
	case err != nil && len(out) == 0:
		return nil, err
	case err != nil:
		if err := t.keep(key, &tcpPartial{err: err}); err != nil {
			return nil, err
		}
	case len(rest) > 0:
		if err := t.keep(key, &tcpPartial{data: append([]byte(nil), rest...)}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// keep holds p for the connection's next read, unless too many are held
// already; it forgets those idle for tcpStreamIdle.
func (t *tcpCancels) keep(key string, p *tcpPartial) error {
	now := time.Now()
	p.seen = now
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > tcpStreamIdle/2 {
		for k, q := range t.partial {
			if now.Sub(q.seen) > tcpStreamIdle {
				delete(t.partial, k)
			}
		}
		t.swept = now
	}
	if len(t.partial) >= tcpStreamLimit {
		return errTCPTooMany
	}
	t.partial[key] = p
	return nil
}

// split walks buf message by message. out is buf itself when every byte of
// it is passed on (no CANCEL, nothing partial): the common case copies
// nothing. With an error, out is what came before the message that cannot
// be framed.
func (t *tcpCancels) split(buf []byte, local, remote net.Addr) (out, rest []byte, err error) {
	var kept []byte // nil while everything so far is passed on as it is
	copied := false
	pos := 0
	for pos < len(buf) {
		start := pos
		for pos < len(buf) && (buf[pos] == '\r' || buf[pos] == '\n') {
			pos++ // keep-alives (RFC 5626 3.5.1) pass through
		}
		if pos == len(buf) {
			if copied {
				kept = append(kept, buf[start:]...)
			}
			break
		}
		end := bytes.Index(buf[pos:], []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf)-pos > t.maxBytes {
				return t.passed(buf, kept, copied, start, pos), nil, errTCPTooLarge
			}
			return t.passed(buf, kept, copied, start, pos), buf[pos:], nil
		}
		h := scanHead(buf[pos : pos+end])
		if !h.hasLength || h.length < 0 {
			if t.unframed != nil {
				t.unframed(buf[pos:pos+end], remote)
			}
			return t.passed(buf, kept, copied, start, pos), nil, errTCPFraming
		}
		msgEnd := pos + end + 4 + h.length
		if msgEnd-pos > t.maxBytes {
			return t.passed(buf, kept, copied, start, pos), nil, errTCPTooLarge
		}
		if msgEnd > len(buf) {
			return t.passed(buf, kept, copied, start, pos), buf[pos:], nil
		}
		if bytes.HasPrefix(buf[pos:], cancelStartLine) {
			if !copied {
				kept, copied = append([]byte(nil), buf[:pos]...), true
			} else {
				kept = append(kept, buf[start:pos]...)
			}
			t.take(append([]byte(nil), buf[pos:msgEnd]...), local, remote)
		} else {
			if t.seen != nil {
				t.seen(buf[pos:msgEnd], remote)
			}
			if copied {
				kept = append(kept, buf[start:msgEnd]...)
			}
		}
		pos = msgEnd
	}
	if copied {
		return kept, nil, nil
	}
	return buf, nil, nil
}

// passed is what split passes on when it stops at a partial message at
// offset stop, with keep-alives from start to stop before it: those go on
// now, whatever follows them.
func (t *tcpCancels) passed(buf, kept []byte, copied bool, start, stop int) []byte {
	if copied {
		return append(kept, buf[start:stop]...)
	}
	return buf[:stop]
}

// takeTCPCancel serves a CANCEL taken out of a TCP stream, off the read
// loop: the call actor answers it (and 487s the INVITE) once the
// cancellation is durable. The answer goes back on the connection it came
// in on (RFC 3261 18.2.2).
func (g *Gateway) takeTCPCancel(raw []byte, _, remote net.Addr) {
	msg, err := g.fast.parser.ParseSIP(raw)
	if err != nil {
		g.opts.Logger.Debug("unparsable CANCEL over TCP dropped", "from", remote.String(), "err", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil {
		return
	}
	req.SetTransport("TCP")
	req.SetSource(remote.String())
	tx := &tcpResponder{tl: g.ua.TransportLayer(), to: remote.String()}
	g.workers.Schedule(func() { g.serve(req, tx, len(raw)) })
}

// rejectUnframed answers 400 to a request over TCP whose Content-Length is
// missing or bad, on its connection, before the read filter's error makes
// sipgo close it (as Kamailio does unless tcp_accept_no_cl is set): the
// client learns why. It runs on the connection's read loop, so the answer
// is written before the close.
func (g *Gateway) rejectUnframed(head []byte, remote net.Addr) {
	tx := &tcpResponder{tl: g.ua.TransportLayer(), to: remote.String()}
	g.answerBadLength(head, "TCP", remote, tx, "Missing or Bad Content-Length")
}

// tcpResponder answers one request statelessly on the TCP connection from
// address to.
type tcpResponder struct {
	tl *sip.TransportLayer
	to string
}

func (r *tcpResponder) Respond(res *sip.Response) error {
	conn, err := r.tl.GetConnection("tcp", r.to)
	if err != nil {
		return err
	}
	defer func() { _, _ = conn.TryClose() }() // GetConnection took a reference
	return conn.WriteMsg(res)
}

// Terminate has nothing to end: there is no transaction.
func (r *tcpResponder) Terminate() {}

// isTCP tells whether a read filter call is for a TCP connection.
func isTCP(p sip.TransportReadProps) bool { return strings.EqualFold(p.Transport, "tcp") }
