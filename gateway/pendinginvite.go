package gateway

import (
	"bytes"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// INVITEs read but not yet with their call, for the CANCELs that chase
// them.
//
// The call actor sends the INVITE's 100 Trying, so a CANCEL sent on that
// 100 is queued behind the INVITE in the call's mailbox. But sipgo's
// server transaction sends a 100 of its own when the handler has answered
// nothing within 200 ms (Timer_1xx, RFC 3261 17.2.1), and under load the
// handler's goroutine can wait that long before it runs; a client may
// also CANCEL before any provisional (against RFC 3261 9.1), for example
// in the same TCP read. Such a CANCEL reached the call before its INVITE,
// got 481, and the callee went on ringing.
//
// So the read path, which sees an initial INVITE before anything can
// answer it, marks it pending (by source address and top Via branch: a
// CANCEL carries its INVITE's branch, RFC 3261 9.1), and the INVITE's
// handler clears the mark once the call has it (or the INVITE has been
// answered without a call). A CANCEL whose INVITE is marked and not yet
// cleared waits for the clearing, at most pendingInviteWait, then goes to
// its call as before.

const (
	// pendingInviteWait bounds how long a CANCEL waits for its INVITE's
	// handler. An INVITE sipgo dropped unread never clears its mark.
	pendingInviteWait = 4 * time.Second
	// pendingInviteTTL is how long a mark is kept, cleared or not, so that
	// the INVITE's retransmissions (which sipgo absorbs, no handler runs)
	// find it cleared instead of marking it pending again. Retransmissions
	// stop at the first provisional, which the call sends at once.
	pendingInviteTTL = 10 * time.Second
	// maxPendingInvites bounds the marks (some 15 MB): a flood of INVITEs
	// with credentials, bogus or not, is marked for pendingInviteTTL at
	// most; past the bound new INVITEs go unmarked (their CANCELs do not
	// wait, as before the marks).
	maxPendingInvites = 100_000
)

// pendingInvites is the set of marks. Safe for concurrent use: read loops
// and the TCP framer mark, handlers clear and wait.
type pendingInvites struct {
	mu    sync.Mutex
	marks map[string]*inviteMark
	swept time.Time
}

type inviteMark struct {
	handled chan struct{} // closed by clear
	at      time.Time
	cleared bool
	size    int // the INVITE's size on the wire
}

func newPendingInvites() *pendingInvites {
	return &pendingInvites{marks: make(map[string]*inviteMark)}
}

// markRaw marks the INVITE in data (a whole message, read from source) as
// pending when it is an initial INVITE (no To tag) with an RFC 3261
// branch; anything else is ignored. A mark already there is kept, with the
// larger of the two sizes.
func (p *pendingInvites) markRaw(data []byte, source net.Addr) {
	if !bytes.HasPrefix(data, []byte("INVITE ")) {
		return
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 || scanHead(data[:end]).toTag {
		return
	}
	branch := topViaBranch(data[:end])
	if !bytes.HasPrefix(branch, []byte(sip.RFC3261BranchMagicCookie)) {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.swept) > time.Second {
		for k, m := range p.marks {
			if now.Sub(m.at) > pendingInviteTTL {
				if !m.cleared {
					close(m.handled) // wake any waiter; its INVITE is long gone
				}
				delete(p.marks, k)
			}
		}
		p.swept = now
	}
	key := source.String() + " " + string(branch) // as sipgo's Request.Source, and the fast path's
	if m, ok := p.marks[key]; ok {
		// Another INVITE under the same key: a retransmission (the same
		// size), or a peer reusing a branch with a larger request, which
		// must not pass the size limit on the first one's size.
		m.size = max(m.size, len(data))
	} else if len(p.marks) < maxPendingInvites {
		p.marks[key] = &inviteMark{handled: make(chan struct{}), at: now, size: len(data)}
	}
}

// size returns the size on the wire of req, an INVITE read by a path that
// marks, or 0 when it is not marked.
func (p *pendingInvites) size(req *sip.Request) int {
	key, ok := pendingKey(req)
	if !ok {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.marks[key]; ok {
		return m.size
	}
	return 0
}

// clear ends the wait of the CANCELs for req, an INVITE whose call now has
// it, or which was answered without one.
func (p *pendingInvites) clear(req *sip.Request) {
	key, ok := pendingKey(req)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.marks[key]; ok && !m.cleared {
		m.cleared = true
		close(m.handled)
	}
}

// wait returns when the INVITE that cancel cancels is no longer pending
// (at once when it is not marked), or after at most max.
func (p *pendingInvites) wait(cancel *sip.Request, max time.Duration) {
	key, ok := pendingKey(cancel)
	if !ok {
		return
	}
	p.mu.Lock()
	m, ok := p.marks[key]
	p.mu.Unlock()
	if !ok {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-m.handled:
	case <-t.C:
	}
}

// pendingKey is the key markRaw gives req's INVITE: its source address and
// top Via branch.
func pendingKey(req *sip.Request) (string, bool) {
	via := req.Via()
	if via == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	if !bytes.HasPrefix([]byte(branch), []byte(sip.RFC3261BranchMagicCookie)) {
		return "", false
	}
	return req.Source() + " " + branch, true
}

// topViaBranch returns the branch parameter of the first Via value in the
// header block head (full or compact header name, any case), or nil when
// there is none. A folded Via line is not followed (nil).
func topViaBranch(head []byte) []byte {
	nl := bytes.Index(head, []byte("\r\n"))
	if nl < 0 {
		return nil
	}
	rest := head[nl+2:] // after the start line
	for len(rest) > 0 {
		line := rest
		if i := bytes.Index(rest, []byte("\r\n")); i >= 0 {
			line, rest = rest[:i], rest[i+2:]
		} else {
			rest = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !bytes.EqualFold(name, []byte("via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		value := line[colon+1:]
		if c := bytes.IndexByte(value, ','); c >= 0 {
			value = value[:c] // the first via-parm only
		}
		return viaParam(value, "branch")
	}
	return nil
}

// viaParam returns the value of the parameter name (any case) among the
// ;-separated parameters of one via-parm, or nil.
func viaParam(v []byte, name string) []byte {
	for {
		semi := bytes.IndexByte(v, ';')
		if semi < 0 {
			return nil
		}
		v = v[semi+1:]
		p := bytes.TrimLeft(v, " \t")
		if len(p) < len(name) || !bytes.EqualFold(p[:len(name)], []byte(name)) {
			continue
		}
		p = bytes.TrimLeft(p[len(name):], " \t")
		if len(p) == 0 || p[0] != '=' {
			continue
		}
		p = bytes.TrimLeft(p[1:], " \t")
		n := bytes.IndexAny(p, "; \t,\r\n")
		if n < 0 {
			n = len(p)
		}
		return p[:n]
	}
}
