package gateway

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestTopViaBranch(t *testing.T) {
	head := func(start string, hdrs ...string) []byte {
		return []byte(start + "\r\n" + strings.Join(hdrs, "\r\n"))
	}
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"plain", head("INVITE sip:b SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bKabc"), "z9hG4bKabc"},
		{"compact, any case, spaces", head("INVITE sip:b SIP/2.0", "Max-Forwards: 70", "v : SIP/2.0/UDP h ; BRANCH = z9hG4bKx1 ;rport"), "z9hG4bKx1"},
		{"the top Via only", head("INVITE sip:b SIP/2.0", "via: SIP/2.0/UDP h;branch=z9hG4bKtop", "Via: SIP/2.0/UDP g;branch=z9hG4bKlow"), "z9hG4bKtop"},
		{"the first value of a list only", head("INVITE sip:b SIP/2.0", "Via: SIP/2.0/UDP h;received=1.2.3.4, SIP/2.0/UDP g;branch=z9hG4bKlow"), ""},
		{"no branch", head("INVITE sip:b SIP/2.0", "Via: SIP/2.0/UDP h;rport"), ""},
		{"a parameter that only starts like it", head("INVITE sip:b SIP/2.0", "Via: SIP/2.0/UDP h;branches=z9hG4bKno"), ""},
		{"no Via", head("INVITE sip:b SIP/2.0", "CSeq: 1 INVITE"), ""},
		{"no header", []byte("INVITE sip:b SIP/2.0"), ""},
	} {
		if got := string(topViaBranch(tc.head)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzTopViaBranch(f *testing.F) {
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKabc\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nv: SIP/2.0/UDP h ;branch = z9hG4bK1,\r\n"))
	f.Add([]byte("X\r\nVia:;branch\r\n"))
	f.Add([]byte("X\r\nVia: ;branch=;"))
	f.Fuzz(func(t *testing.T, head []byte) {
		b := topViaBranch(head)
		if bytes.ContainsAny(b, "; \t,\r\n") || (b != nil && !bytes.Contains(head, b)) {
			t.Fatalf("branch %q out of %q", b, head)
		}
		p := newPendingInvites()
		p.markRaw(head, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}) // must not panic
	})
}

// pendingReq parses raw as a request read from source.
func pendingReq(t *testing.T, raw, source string) *sip.Request {
	t.Helper()
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	msg.SetSource(source)
	return msg.(*sip.Request)
}

func TestPendingInvites(t *testing.T) {
	const src = "127.0.0.1:5070"
	srcAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	msg := func(method, branch, toTag string) string {
		return method + " sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=" + branch +
			"\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>" + toTag +
			"\r\nCall-ID: c1\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n"
	}
	waited := func(p *pendingInvites, cancel *sip.Request, max time.Duration) time.Duration {
		start := time.Now()
		p.wait(cancel, max)
		return time.Since(start)
	}
	p := newPendingInvites()
	invite := msg("INVITE", "z9hG4bK1", "")
	cancel := pendingReq(t, msg("CANCEL", "z9hG4bK1", ""), src)

	// Unmarked: no wait.
	if d := waited(p, cancel, time.Second); d > 100*time.Millisecond {
		t.Fatalf("waited %v for an INVITE never read", d)
	}
	if n := p.size(pendingReq(t, invite, src)); n != 0 {
		t.Fatalf("size of an unmarked INVITE: %d, want 0", n)
	}
	// Marked: the CANCEL waits until the INVITE's handler clears it.
	p.markRaw([]byte(invite), srcAddr)
	if n := p.size(pendingReq(t, invite, src)); n != len(invite) {
		t.Fatalf("size of the marked INVITE: %d, want its %d bytes", n, len(invite))
	}
	// The same key again, larger (a branch reused): the size limit must
	// see the larger request; a smaller one after it changes nothing.
	larger := strings.Replace(invite, "Content-Length", "X-Pad: "+strings.Repeat("x", 600)+"\r\nContent-Length", 1)
	p.markRaw([]byte(larger), srcAddr)
	p.markRaw([]byte(invite), srcAddr)
	if n := p.size(pendingReq(t, invite, src)); n != len(larger) {
		t.Fatalf("size after a larger INVITE under the same key: %d, want %d", n, len(larger))
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		p.clear(pendingReq(t, invite, src))
	}()
	if d := waited(p, cancel, 2*time.Second); d < 90*time.Millisecond || d > time.Second {
		t.Fatalf("waited %v, want about 100ms (until the INVITE was handled)", d)
	}
	// A retransmission of the INVITE after that (sipgo absorbs it, no
	// handler clears it again) does not make it pending again.
	p.markRaw([]byte(invite), srcAddr)
	if d := waited(p, cancel, time.Second); d > 100*time.Millisecond {
		t.Fatalf("waited %v after the INVITE was handled", d)
	}
	// Never cleared: the wait is bounded.
	p.markRaw([]byte(msg("INVITE", "z9hG4bK2", "")), srcAddr)
	if d := waited(p, pendingReq(t, msg("CANCEL", "z9hG4bK2", ""), src), 150*time.Millisecond); d < 140*time.Millisecond {
		t.Fatalf("waited %v, want the bound (150ms)", d)
	}
	// Another source, a re-INVITE, an RFC 2543 branch: not marked.
	p.markRaw([]byte(msg("INVITE", "z9hG4bK3", ";tag=b")), srcAddr)
	p.markRaw([]byte(msg("INVITE", "4", "")), srcAddr)
	for _, c := range []*sip.Request{
		pendingReq(t, msg("CANCEL", "z9hG4bK1", ""), "127.0.0.1:5071"),
		pendingReq(t, msg("CANCEL", "z9hG4bK3", ";tag=b"), src),
		pendingReq(t, msg("CANCEL", "4", ""), src),
	} {
		if d := waited(p, c, time.Second); d > 100*time.Millisecond {
			t.Fatalf("waited %v for %s", d, c.Via().Value())
		}
	}
	// Marks expire (swept on a later mark): a waiter is released.
	p.mu.Lock()
	for _, m := range p.marks {
		m.at = m.at.Add(-2 * pendingInviteTTL)
	}
	p.swept = time.Time{}
	p.mu.Unlock()
	p.markRaw([]byte(msg("INVITE", "z9hG4bK5", "")), srcAddr)
	p.mu.Lock()
	n := len(p.marks)
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d marks after the sweep, want 1 (the new one)", n)
	}
	// The marks are bounded: past the bound an INVITE goes unmarked.
	p.mu.Lock()
	for i := len(p.marks); i < maxPendingInvites; i++ {
		p.marks[fmt.Sprint("filler ", i)] = &inviteMark{handled: make(chan struct{}), at: time.Now()}
	}
	p.mu.Unlock()
	p.markRaw([]byte(msg("INVITE", "z9hG4bK6", "")), srcAddr)
	if d := waited(p, pendingReq(t, msg("CANCEL", "z9hG4bK6", ""), src), time.Second); d > 100*time.Millisecond {
		t.Fatalf("waited %v for an INVITE marked past the bound", d)
	}
}

// A CANCEL that reaches the gateway while its INVITE is read but not yet
// with its call, because sipgo sent a 100 Trying of its own (the handler
// had not run within 200 ms) or because the CANCEL came in the same TCP
// read, waits for the INVITE and cancels the call: 200, then 487. Without
// the pending marks each got 481 and the call went on.
func TestCancelChasingItsInviteFindsIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto string
		hold  time.Duration // before the INVITE reaches its call
		same  bool          // INVITE and CANCEL in one write
	}{
		{"on sipgo's 100 over UDP", "UDP", 600 * time.Millisecond, false},
		{"on sipgo's 100 over TCP", "TCP", 600 * time.Millisecond, false},
		{"in the INVITE's TCP write", "TCP", 50 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startHeldInvites(t, tc.hold)
			c := dialTCP(t, addr)
			if tc.proto == "UDP" {
				c = dialUDP(t, addr)
			}
			cred := c.authorize(t, "INVITE", "sip:bob@example.test", "z9hG4bK-ch1")
			invite := c.request("INVITE", "sip:bob@example.test", "z9hG4bK-ch2", 2, cred)
			cancel := c.request("CANCEL", "sip:bob@example.test", "z9hG4bK-ch2", 2)
			if tc.same {
				c.send(t, invite+cancel)
			} else {
				c.send(t, invite)
				first := c.next(t, 3*time.Second)
				if first == nil || first.StatusCode != 100 {
					t.Fatalf("first answer to the INVITE: %v, want 100 Trying", first)
				}
				c.send(t, cancel)
			}
			expectCancelled(t, c, 5*time.Second)
		})
	}
}
