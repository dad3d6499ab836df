package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"

	"github.com/tandemswitch/tandem/actors/call"
)

// tcpClient is a SIP client on one TCP connection to the gateway (or,
// from dialUDP, on a connected UDP socket: one message per datagram).
type tcpClient struct {
	conn  net.Conn
	r     *bufio.Reader
	seq   int
	proto string // "TCP" or "UDP"
}

func dialTCP(t *testing.T, addr string) *tcpClient { return dial(t, "tcp", addr) }
func dialUDP(t *testing.T, addr string) *tcpClient { return dial(t, "udp", addr) }

// dial connects a client over network ("tcp" or "udp"); the reader holds a
// whole datagram.
func dial(t *testing.T, network, addr string) *tcpClient {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &tcpClient{conn: c, r: bufio.NewReaderSize(c, 65535), proto: strings.ToUpper(network)}
}

// request renders a request; branch and CSeq number are given so that a
// CANCEL can name its INVITE.
func (c *tcpClient) request(method, ruri, branch string, cseq int, extra ...string) string {
	local := c.conn.LocalAddr().String()
	to := ruri
	if method == "REGISTER" {
		to = "sip:alice@example.test"
	}
	contact := "Contact: <sip:alice@" + local + ">"
	if c.proto == "TCP" {
		contact = "Contact: <sip:alice@" + local + ";transport=tcp>"
	}
	hdrs := []string{
		fmt.Sprintf("%s %s SIP/2.0", method, ruri),
		fmt.Sprintf("Via: SIP/2.0/%s %s;branch=%s", c.proto, local, branch),
		"Max-Forwards: 70",
		"From: <sip:alice@example.test>;tag=tf1",
		"To: <" + to + ">",
		"Call-ID: tcp-call-" + branch + "@test",
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		contact,
	}
	hdrs = append(hdrs, extra...)
	return strings.Join(hdrs, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}

func (c *tcpClient) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		t.Fatal(err)
	}
}

// next reads the next message off the stream, waiting at most d; nil when
// none came.
func (c *tcpClient) next(t *testing.T, d time.Duration) *sip.Response {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var head bytes.Buffer
	length := 0
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if head.Len() == 0 {
				return nil
			}
			t.Fatalf("partial message %q: %v", head.String(), err)
		}
		if line == "\r\n" {
			if head.Len() == 0 {
				continue // a keep-alive pong (RFC 5626 4.4.1)
			}
			head.WriteString(line)
			break
		}
		head.WriteString(line)
		if v, ok := strings.CutPrefix(line, "Content-Length:"); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	msg, err := sip.NewParser().ParseSIP(append(head.Bytes(), body...))
	if err != nil {
		t.Fatalf("unparsable %q: %v", head.String(), err)
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		t.Fatalf("a request on the client's connection: %q", head.String())
	}
	return res
}

// final reads until a final response for method.
func (c *tcpClient) final(t *testing.T, method string) *sip.Response {
	t.Helper()
	for {
		res := c.next(t, 3*time.Second)
		if res == nil {
			t.Fatalf("no final response to %s", method)
		}
		if res.StatusCode >= 200 && res.CSeq() != nil && string(res.CSeq().MethodName) == method {
			return res
		}
	}
}

// authorize sends method without credentials (CSeq 1), takes the
// challenge (401 for REGISTER, else 407) and returns the credentials header
// answering it, as alice.
func (c *tcpClient) authorize(t *testing.T, method, ruri, branch string) string {
	t.Helper()
	c.send(t, c.request(method, ruri, branch, 1))
	res := c.final(t, method)
	want, challenge, answer := 407, "Proxy-Authenticate", "Proxy-Authorization: "
	if method == "REGISTER" {
		want, challenge, answer = 401, "WWW-Authenticate", "Authorization: "
	}
	if res.StatusCode != want || res.GetHeader(challenge) == nil {
		t.Fatalf("%s without credentials over %s: %s", method, c.proto, res.Short())
	}
	ch, err := icdigest.ParseChallenge(res.GetHeader(challenge).Value())
	if err != nil {
		t.Fatal(err)
	}
	cr, err := icdigest.Digest(ch, icdigest.Options{Method: method, URI: ruri, Username: "alice", Password: "secret", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return answer + cr.String()
}

// startDualGateway starts the test gateway on UDP and TCP at one address,
// as the example configuration does.
func startDualGateway(t *testing.T, setup func(*Gateway)) (*Gateway, string) {
	t.Helper()
	// A port free for UDP may be taken for TCP (or taken between the probe
	// and Start): try another one then.
	for attempt := 0; ; attempt++ {
		g, _ := newTestGateway(t)
		probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		addr := probe.LocalAddr().String()
		_ = probe.Close()
		g.opts.Listen = []string{"udp:" + addr, "tcp:" + addr}
		if setup != nil {
			setup(g)
		}
		err = g.Start()
		if err == nil {
			return g, addr
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 9 {
			t.Fatal(err)
		}
		_ = g.Shutdown(context.Background())
	}
}

// A REGISTER over TCP on an address a UDP socket of ours shares is
// answered on its TCP connection. Before the read filter checked the
// transport, the UDP fast path took the stream chunk (the accepted
// connection's local address is the UDP socket's) and sent the answer as a
// datagram to the client's TCP port.
func TestTCPRegisterOnAnAddressSharedWithUDP(t *testing.T) {
	_, addr := startDualGateway(t, nil)
	c := dialTCP(t, addr)
	cred := c.authorize(t, "REGISTER", "sip:example.test", "z9hG4bK-tr1")
	c.send(t, c.request("REGISTER", "sip:example.test", "z9hG4bK-tr2", 2, cred))
	if res := c.final(t, "REGISTER"); res.StatusCode != 200 {
		t.Fatalf("authenticated REGISTER over TCP: %s", res.Short())
	}
	for i := 3; i < 6; i++ {
		c.send(t, c.request("OPTIONS", "sip:example.test", "z9hG4bK-tr"+strconv.Itoa(i), i))
		if res := c.final(t, "OPTIONS"); res.StatusCode != 200 {
			t.Fatalf("OPTIONS %d on the connection: %s", i, res.Short())
		}
	}
}

// heldCall is a CallRouter that rings every INVITE (180) and hands each
// CANCEL to the test, which answers it as the call actor would.
type heldCall struct {
	invites chan *call.Invite
	cancels chan *call.Cancel
}

func (h *heldCall) Deliver(_ string, msg any) error {
	switch m := msg.(type) {
	case *call.Invite:
		_ = m.Tx.Respond(sip.NewResponseFromRequest(m.Req, 180, "Ringing", nil))
		h.invites <- m
	case *call.Cancel:
		h.cancels <- m
	}
	return nil
}

// A CANCEL over TCP reaches the call with a transaction to answer on, and
// nothing answers it before the call does: not sipgo's transaction layer,
// which answered 200 and 487 on its own, before the call had made the
// cancellation durable (and while a callee's 200 could still be relayed to
// a caller whose INVITE had already failed).
func TestTCPCancelIsAnsweredByTheCall(t *testing.T) {
	router := &heldCall{invites: make(chan *call.Invite, 4), cancels: make(chan *call.Cancel, 4)}
	_, addr := startDualGateway(t, func(g *Gateway) {
		g.SetCalls(router)
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
	})
	c := dialTCP(t, addr)
	cred := c.authorize(t, "INVITE", "sip:bob@example.test", "z9hG4bK-tc1")
	c.send(t, c.request("INVITE", "sip:bob@example.test", "z9hG4bK-tc2", 2, cred))
	var inv *call.Invite
	select {
	case inv = <-router.invites:
	case <-time.After(3 * time.Second):
		t.Fatal("the authenticated INVITE never reached the call")
	}
	for ringing := false; !ringing; {
		r := c.next(t, 3*time.Second)
		if r == nil {
			t.Fatal("no 180")
		}
		ringing = r.StatusCode == 180
	}

	// The CANCEL arrives split over two reads, behind a keep-alive.
	cancel := "\r\n\r\n" + c.request("CANCEL", "sip:bob@example.test", "z9hG4bK-tc2", 2)
	c.send(t, cancel[:30])
	time.Sleep(50 * time.Millisecond)
	c.send(t, cancel[30:])
	var cn *call.Cancel
	select {
	case cn = <-router.cancels:
	case <-time.After(3 * time.Second):
		t.Fatal("the CANCEL never reached the call")
	}
	if cn.Tx == nil {
		t.Fatal("the CANCEL reached the call without a transaction: something else answered it")
	}
	for {
		r := c.next(t, 300*time.Millisecond)
		if r == nil {
			break
		}
		if r.StatusCode >= 200 || r.CSeq().MethodName == sip.CANCEL {
			t.Fatalf("answered before the call answered: %s (%s)", r.Short(), r.CSeq().Value())
		}
	}
	if err := cn.Tx.Respond(sip.NewResponseFromRequest(cn.Req, 200, "OK", nil)); err != nil {
		t.Fatal(err)
	}
	if err := inv.Tx.Respond(sip.NewResponseFromRequest(inv.Req, 487, "Request Terminated", nil)); err != nil {
		t.Fatal(err)
	}
	close(cn.Done)
	close(inv.Done)
	if r := c.final(t, "CANCEL"); r.StatusCode != 200 {
		t.Fatalf("CANCEL: %s", r.Short())
	}
	if r := c.final(t, "INVITE"); r.StatusCode != 487 {
		t.Fatalf("INVITE after CANCEL: %s", r.Short())
	}
	// The connection still serves the next request.
	c.send(t, c.request("OPTIONS", "sip:example.test", "z9hG4bK-tc3", 3))
	if r := c.final(t, "OPTIONS"); r.StatusCode != 200 {
		t.Fatalf("OPTIONS after the CANCEL: %s", r.Short())
	}
}

// tcpSplit feeds chunks through one tcpCancels and returns what it passed
// on, the CANCELs it took, and the first error.
func tcpSplit(chunks [][]byte) (out []byte, took []string, err error) {
	tc := &tcpCancels{partial: map[string]*tcpPartial{}, maxBytes: 4096}
	tc.take = func(msg []byte, _, _ net.Addr) { took = append(took, string(msg)) }
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	// A last, empty read brings out an error held for the next read.
	for _, ch := range append(chunks, nil) {
		o, e := tc.filter(local, remote, ch)
		if e != nil {
			return out, took, e
		}
		out = append(out, o...)
	}
	return out, took, nil
}

func tcpMsg(method, body string) string {
	return method + " sip:b@example.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nCSeq: 1 " + method +
		"\r\nl: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func TestTCPFraming(t *testing.T) {
	inv, can, bye := tcpMsg("INVITE", "v=0\r\n\r\n"), tcpMsg("CANCEL", ""), tcpMsg("BYE", "x")
	stream := inv + "\r\n\r\n" + can + bye + "\r\n"
	for _, size := range []int{1, 2, 7, 64, len(stream)} {
		var chunks [][]byte
		for s := []byte(stream); len(s) > 0; {
			n := min(size, len(s))
			chunks = append(chunks, s[:n])
			s = s[n:]
		}
		out, took, err := tcpSplit(chunks)
		if err != nil {
			t.Fatalf("chunks of %d: %v", size, err)
		}
		if want := inv + "\r\n\r\n" + bye + "\r\n"; string(out) != want {
			t.Errorf("chunks of %d passed on %q, want %q", size, out, want)
		}
		if len(took) != 1 || took[0] != can {
			t.Errorf("chunks of %d took %q", size, took)
		}
	}
	// A chunk of whole messages with no CANCEL is passed on as it is.
	whole := []byte(inv + bye)
	tc := &tcpCancels{partial: map[string]*tcpPartial{}, maxBytes: 4096, take: func([]byte, net.Addr, net.Addr) { t.Error("took a CANCEL") }}
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	if out, err := tc.filter(a, a, whole); err != nil || len(out) != len(whole) || &out[0] != &whole[0] {
		t.Errorf("whole messages were not passed on as they are: %q, %v", out, err)
	}
	for name, bad := range map[string]string{
		"no Content-Length":  "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a\r\n\r\n",
		"bad Content-Length": "INVITE sip:b@x SIP/2.0\r\nContent-Length: ten\r\n\r\n",
		"negative length":    "INVITE sip:b@x SIP/2.0\r\nContent-Length: -4\r\n\r\n",
		"too long a header":  "INVITE sip:b@x SIP/2.0\r\nX: " + strings.Repeat("a", 5000),
		"too long a body":    "INVITE sip:b@x SIP/2.0\r\nContent-Length: 9000\r\n\r\n",
	} {
		if _, _, err := tcpSplit([][]byte{[]byte(bad)}); err == nil {
			t.Errorf("%s: no error", name)
		}
		// What came before it in the same read is passed on first; the
		// error comes with the connection's next read.
		out, took, err := tcpSplit([][]byte{[]byte(bye + "\r\n" + can + bad)})
		if err == nil || string(out) != bye+"\r\n" || len(took) != 1 {
			t.Errorf("%s after a BYE and a CANCEL: passed %q, took %d, %v", name, out, len(took), err)
		}
	}
}

// Whatever the stream and however it is cut, what is passed on and taken
// is the same as for the stream in one piece, and nothing panics.
func FuzzTCPFraming(f *testing.F) {
	f.Add([]byte(tcpMsg("INVITE", "abc")+"\r\n"+tcpMsg("CANCEL", "")+tcpMsg("ACK", "")), uint8(3))
	f.Add([]byte("CANCEL x SIP/2.0\r\nl: 2\r\n\r\nab"+tcpMsg("BYE", "")), uint8(1))
	f.Add([]byte("\r\n\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, size uint8) {
		n := int(size%32) + 1
		var chunks [][]byte
		for s := stream; len(s) > 0; {
			k := min(n, len(s))
			chunks = append(chunks, s[:k])
			s = s[k:]
		}
		out1, took1, err1 := tcpSplit([][]byte{stream})
		out2, took2, err2 := tcpSplit(chunks)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("error in one piece %v, in chunks %v", err1, err2)
		}
		if string(out1) != string(out2) || strings.Join(took1, "|") != strings.Join(took2, "|") {
			t.Fatalf("one piece passed %q took %q; chunks passed %q took %q", out1, took1, out2, took2)
		}
	})
}

// A request over TCP without a Content-Length cannot be framed (RFC 3261
// 18.3): it gets a 400 naming the problem on its connection, which is then
// closed, as there is no message boundary left to go on from.
func TestTCPRequestWithoutContentLengthGets400(t *testing.T) {
	_, addr := startDualGateway(t, nil)
	c := dialTCP(t, addr)
	raw := strings.Replace(c.request("OPTIONS", "sip:example.test", "z9hG4bK-nl1", 1), "Content-Length: 0\r\n", "", 1)
	c.send(t, raw)
	res := c.next(t, 3*time.Second)
	if res == nil || res.StatusCode != 400 || res.Reason != "Missing or Bad Content-Length" {
		t.Fatalf("a request without Content-Length over TCP: %v", res)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the connection stayed open (read %d bytes)", n)
	}

	// Behind a good request in the same write, the good one is answered
	// too, and the connection is closed at its next read.
	c = dialTCP(t, addr)
	c.send(t, c.request("OPTIONS", "sip:example.test", "z9hG4bK-nl2", 2)+raw)
	got := map[int]bool{}
	for range 2 {
		if res := c.next(t, 3*time.Second); res != nil {
			got[res.StatusCode] = true
		}
	}
	if !got[200] || !got[400] {
		t.Fatalf("a good and a bad request in one write: answers %v, want 200 and 400", got)
	}
	c.send(t, c.request("OPTIONS", "sip:example.test", "z9hG4bK-nl3", 3))
	_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the connection served on after a request it could not frame (read %d bytes)", n)
	}
}
