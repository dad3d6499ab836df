package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

// exchangeMatching sends raw and returns the first final response with
// raw's CSeq (INVITE server transactions retransmit earlier final
// responses, which the test never ACKs). A request the server drops gets
// a 408 stand-in after 1 s.
func (tg *testGW) exchangeMatching(t *testing.T, raw string) *sip.Response {
	t.Helper()
	var cseq string
	for _, line := range strings.Split(raw, "\r\n") {
		if v, ok := strings.CutPrefix(line, "CSeq: "); ok {
			cseq = v
			break
		}
	}
	dst, _ := net.ResolveUDPAddr("udp", tg.addr)
	if _, err := tg.conn.WriteToUDP([]byte(raw), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(time.Second)
	for {
		_ = tg.conn.SetReadDeadline(deadline)
		n, _, err := tg.conn.ReadFromUDP(buf)
		if err != nil {
			return sip.NewResponse(408, "No Response")
		}
		msg, err := sip.NewParser().ParseSIP(buf[:n])
		if err != nil {
			t.Fatalf("unparsable response %q: %v", buf[:n], err)
		}
		res, ok := msg.(*sip.Response)
		if ok && res.StatusCode >= 200 && res.CSeq() != nil && res.CSeq().Value() == cseq {
			return res
		}
	}
}

// routerSpy counts what reaches the call actors.
type routerSpy struct{ n atomic.Int32 }

func (r *routerSpy) Deliver(string, any) error { r.n.Add(1); return nil }

// Malformed and hostile INVITEs get a clear 4xx from the gateway and never
// reach a call actor (nor start a call).
func TestHostileInvitesGetClearAnswers(t *testing.T) {
	spy := &routerSpy{}
	tg := startGatewayWith(t, func(g *Gateway) {
		g.SetCalls(spy)
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
	})
	sdp := "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	withBody := func(raw, ctype, body string, declared int) string {
		raw = strings.Replace(raw, "Content-Length: 0\r\n", "", 1)
		raw = strings.TrimSuffix(raw, "\r\n")
		return raw + "Content-Type: " + ctype + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", declared) + body
	}
	inv := func(extra ...string) string { return tg.request("INVITE", "sip:bob@example.test", extra...) }
	for _, tc := range []struct {
		name string
		raw  string
		code int
	}{
		{"no credentials", inv(), 407},
		{"Max-Forwards 0", strings.Replace(inv(), "Max-Forwards: 70", "Max-Forwards: 0", 1), 483},
		{"unknown Require", inv("Require: foo-bar"), 420},
		{"unknown Require beside 100rel", inv("Require: 100rel, foo-bar"), 420},
		{"Require of 100rel and timer is supported", inv("Require: 100rel, timer", "Proxy-Require: 100rel"), 407},
		{"missing From", strings.Replace(inv(), "From: <sip:alice@example.test>;tag=f1\r\n", "", 1), 400},
		{"CSeq method mismatch", strings.Replace(inv(), " INVITE\r\n", " BYE\r\n", 1), 400},
		{"huge header", inv("X-Junk: " + strings.Repeat("a", 5000)), 513},
		// Through sipgo's transaction layer (an INVITE with credentials):
		// its size on the wire comes from its pending mark.
		{"huge header with credentials", inv(`Proxy-Authorization: Digest username="alice", realm="example.test", nonce="n", uri="sip:bob@example.test", response="00"`,
			"X-Junk: "+strings.Repeat("a", 5000)), 513},
		{"too many headers", inv(strings.Repeat("X-A: 1\r\n", 40) + "X-B: 2"), 400},
		{"body is not SDP", withBody(inv(), "application/sdp", "hello", 5), 400},
		{"unsupported body type", withBody(inv(), "text/plain", "hello", 5), 415},
		{"session interval too small", inv("Session-Expires: 30"), 422},
		{"another domain (no relay)", strings.Replace(inv(), "INVITE sip:bob@example.test", "INVITE sip:bob@elsewhere.test", 1), 404},
		{"loop through ourselves", strings.Replace(inv(), "Max-Forwards:", "Via: SIP/2.0/UDP "+tg.addr+";branch=z9hG4bKloop\r\nMax-Forwards:", 1), 482},
		{"declared body longer than sent", withBody(inv(), "application/sdp", sdp, len(sdp)+40), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tg.exchangeMatching(t, tc.raw)
			if res.StatusCode != tc.code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.code == 407 && res.GetHeader("Proxy-Authenticate") == nil {
				t.Fatal("407 without Proxy-Authenticate")
			}
			if tc.code == 422 && res.GetHeader("Min-SE") == nil {
				t.Fatal("422 without Min-SE")
			}
		})
	}
	if n := spy.n.Load(); n != 0 {
		t.Fatalf("%d hostile INVITEs reached a call actor", n)
	}
	// In-dialog requests for dialogs that are not ours: 481.
	bye := strings.Replace(tg.request("BYE", "sip:x@example.test"), "To: <sip:alice@example.test>", "To: <sip:alice@example.test>;tag=not-ours", 1)
	if res := tg.exchangeMatching(t, bye); res.StatusCode != 481 {
		t.Fatalf("BYE for a foreign dialog: %d", res.StatusCode)
	}
}

func TestContentLengthScan(t *testing.T) {
	for _, tc := range []struct {
		head string
		n    int
		ok   bool
	}{
		{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: 12", 12, true},
		{"INVITE sip:a@b SIP/2.0\r\nl:  7\r\nVia: x", 7, true},
		{"INVITE sip:a@b SIP/2.0\r\nVia: x", 0, false},
		{"INVITE sip:a@b SIP/2.0\r\nContent-Length: x", 0, false},
	} {
		if n, ok := contentLength([]byte(tc.head)); n != tc.n || ok != tc.ok {
			t.Errorf("%q: %d %v", tc.head, n, ok)
		}
	}
	if !isShortRequest([]byte("INFO sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc")) ||
		isShortRequest([]byte("INFO sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc")) ||
		isShortRequest([]byte("SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc")) {
		t.Fatal("isShortRequest")
	}
}

// The ACK for a non-2xx final response takes the UDP fast path and still
// reaches the INVITE server transaction (txIndex): its retransmissions of
// the response stop. Without the ACK they go on (RFC 3261 17.2.1, Timer G
// at T1 = 500 ms), which shows the test can tell.
func TestAckForNon2xxStopsRetransmissions(t *testing.T) {
	tg := startGatewayWith(t, func(g *Gateway) {
		g.SetCalls(&routerSpy{})
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
	})
	// Credentials that do not parse: 400 from sipgo's server transaction
	// (an INVITE with credentials does not take the fast path).
	retransmits := func(ack bool) int {
		inv := tg.request("INVITE", "sip:bob@example.test", `Proxy-Authorization: Digest nonsense`)
		res := tg.exchangeMatching(t, inv)
		if res.StatusCode != 400 {
			t.Fatalf("credentials that do not parse: %d %s", res.StatusCode, res.Reason)
		}
		if ack {
			a := strings.Replace(inv, "INVITE sip:bob@example.test", "ACK sip:bob@example.test", 1)
			a = strings.Replace(a, " INVITE\r\n", " ACK\r\n", 1)
			a = strings.Replace(a, "\r\nTo: "+"<sip:alice@example.test>", "\r\nTo: "+res.To().Value(), 1)
			a = strings.Replace(a, "Proxy-Authorization: Digest nonsense\r\n", "", 1)
			dst, _ := net.ResolveUDPAddr("udp", tg.addr)
			if _, err := tg.conn.WriteToUDP([]byte(a), dst); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		buf := make([]byte, 65535)
		deadline := time.Now().Add(1200 * time.Millisecond)
		for {
			_ = tg.conn.SetReadDeadline(deadline)
			m, _, err := tg.conn.ReadFromUDP(buf)
			if err != nil {
				return n
			}
			if strings.HasPrefix(string(buf[:m]), "SIP/2.0 400 ") {
				n++
			}
		}
	}
	if n := retransmits(true); n != 0 {
		t.Fatalf("the 400 was retransmitted %d times after its ACK", n)
	}
	if n := retransmits(false); n == 0 {
		t.Fatal("without an ACK the 400 was never retransmitted: the test cannot tell")
	}
}

// slowInvites delivers to real call actors, holding each INVITE back
// first, as a handler goroutine the scheduler leaves waiting under load
// (25 ms and more at 2,000 calls/s) would.
type slowInvites struct {
	m    *call.Manager
	hold time.Duration
}

func (s *slowInvites) Deliver(id string, msg any) error {
	if _, ok := msg.(*call.Invite); ok {
		time.Sleep(s.hold)
	}
	return s.m.Deliver(id, msg)
}

// A caller may CANCEL as soon as it has a provisional response (RFC 3261
// 9.1). That CANCEL must find its INVITE with the call: when the gateway
// sent 100 Trying before handing the INVITE over, a CANCEL sent on the
// 100 could reach the call first and get 481, and the call went on
// ringing the callee.
func TestCancelOnTheFirstProvisionalFindsTheInvite(t *testing.T) {
	// sipgo's server transaction sends a 100 Trying of its own when the
	// handler has answered nothing within Timer_1xx (200 ms, RFC 3261
	// 17.2.1); with the INVITE held as long, that 100 raced the actor's,
	// and a CANCEL sent on it could still get 481 (5 runs in 15). This
	// test is about the actor's 100, so sipgo's is put off
	// (TestCancelChasingItsInviteFindsIt is about sipgo's).
	saved := sip.Timer_1xx
	sip.Timer_1xx = time.Minute
	t.Cleanup(func() { sip.Timer_1xx = saved })
	addr := startHeldInvites(t, 200*time.Millisecond)
	c := dialTCP(t, addr)
	cred := c.authorize(t, "INVITE", "sip:bob@example.test", "z9hG4bK-cp1")
	c.send(t, c.request("INVITE", "sip:bob@example.test", "z9hG4bK-cp2", 2, cred))
	first := c.next(t, 3*time.Second)
	if first == nil || first.StatusCode != 100 {
		t.Fatalf("first answer to the INVITE: %v, want 100 Trying", first)
	}
	c.send(t, c.request("CANCEL", "sip:bob@example.test", "z9hG4bK-cp2", 2))
	expectCancelled(t, c, 3*time.Second)
}

// startHeldInvites starts a UDP and TCP gateway over real call actors that
// get each INVITE hold late, calling a callee that never answers; it
// returns the address.
func startHeldInvites(t *testing.T, hold time.Duration) string {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	router := &slowInvites{hold: hold}
	_, addr := startDualGateway(t, func(g *Gateway) {
		router.m = call.NewManager(sys, call.Config{Store: memstore.New(), Clock: clock.Real{}, Node: "n1", Transport: g, Logger: quiet})
		g.SetCalls(router)
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
	})
	t.Cleanup(func() { router.m.Stop() })
	return addr
}

// expectCancelled reads c until the final answers to a CANCEL and its
// INVITE, each within d, and wants 200 and 487.
func expectCancelled(t *testing.T, c *tcpClient, d time.Duration) {
	t.Helper()
	finals := map[string]int{}
	for len(finals) < 2 {
		r := c.next(t, d)
		if r == nil {
			t.Fatalf("final answers so far %v, want the CANCEL's and the INVITE's", finals)
		}
		if r.StatusCode >= 200 {
			finals[string(r.CSeq().MethodName)] = r.StatusCode
		}
	}
	if finals["CANCEL"] != 200 || finals["INVITE"] != 487 {
		t.Fatalf("CANCEL answered %d and INVITE %d, want 200 and 487", finals["CANCEL"], finals["INVITE"])
	}
}

// codeCounter is a Metrics that keeps the response codes counted.
type codeCounter struct {
	mu    sync.Mutex
	codes []int
}

func (c *codeCounter) SIPRequest(string) {}
func (c *codeCounter) SIPResponse(code int) {
	c.mu.Lock()
	c.codes = append(c.codes, code)
	c.mu.Unlock()
}

// A response a call actor writes without a transaction (a 2xx it
// retransmits until the ACK) is counted in tandem_sip_responses_total, as
// those sent on a transaction are; it was not.
func TestResponsesWrittenWithoutTransactionAreCounted(t *testing.T) {
	m := &codeCounter{}
	tg := startGatewayWith(t, func(g *Gateway) { g.opts.Metrics = m })
	req := tg.request("INVITE", "sip:bob@example.test")
	msg, err := sip.ParseMessage([]byte(req))
	if err != nil {
		t.Fatal(err)
	}
	res := sip.NewResponseFromRequest(msg.(*sip.Request), 200, "OK", nil)
	res.SetTransport("UDP")
	res.SetDestination(tg.conn.LocalAddr().String())
	if err := tg.g.Write(res); err != nil {
		t.Fatal(err)
	}
	_ = tg.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	if _, _, err := tg.conn.ReadFromUDP(buf); err != nil {
		t.Fatalf("the response never came: %v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.codes) != 1 || m.codes[0] != 200 {
		t.Fatalf("counted %v, want [200]", m.codes)
	}
}

// TestBindLocalFixesTheDestinationSipgoWouldCompute: the destination that
// bindLocal sets is the one sipgo's Request.Destination computes for the
// same request (Route first, else the request URI, the transport's default
// port), and one already set is kept.
func TestBindLocalFixesTheDestinationSipgoWouldCompute(t *testing.T) {
	g, _ := newTestGateway(t)
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"request URI with port", "BYE sip:bob@127.0.0.31:5090 SIP/2.0\r\n", "127.0.0.31:5090"},
		{"request URI without port", "BYE sip:bob@127.0.0.31 SIP/2.0\r\n", "127.0.0.31:5060"},
		{"host name", "BYE sip:bob@pbx.example.test:5070 SIP/2.0\r\n", "pbx.example.test:5070"},
		{"route first", "BYE sip:bob@127.0.0.31:5090 SIP/2.0\r\nRoute: <sip:127.0.0.9:5099;lr>\r\nRoute: <sip:127.0.0.8;lr>\r\n", "127.0.0.9:5099"},
		{"TCP default port", "BYE sip:bob@127.0.0.31;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-1\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := func() *sip.Request {
				raw := tc.raw
				if !strings.Contains(raw, "Via:") {
					raw += "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n"
				}
				raw += "From: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
				m, err := sip.NewParser().ParseSIP([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				req := m.(*sip.Request)
				if strings.Contains(tc.raw, "SIP/2.0/TCP") {
					req.SetTransport("TCP")
				}
				return req
			}
			want := parse().Destination() // what sipgo computes, unset
			if tc.want != "" && want != tc.want {
				t.Fatalf("sipgo computes %q, the test expects %q", want, tc.want)
			}
			req := parse()
			g.bindLocal(req)
			if got := req.MessageData.Destination(); got != want {
				t.Errorf("destination set %q, sipgo computes %q", got, want)
			}
		})
	}
	req := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "127.0.0.31", Port: 5090})
	req.SetDestination("127.0.0.77:6000")
	g.bindLocal(req)
	if got := req.Destination(); got != "127.0.0.77:6000" {
		t.Errorf("a destination already set became %q", got)
	}
}

// A non-INVITE client transaction ends with its final response: sipgo
// kept it 32 s more, and with it the request and the response. A
// retransmission of that response then finds no transaction, and stray
// drops it rather than wake the call.
func TestNonInviteClientTransactionEndsWithItsFinalResponse(t *testing.T) {
	spy := &routerSpy{}
	tg := startGatewayWith(t, func(g *Gateway) { g.SetCalls(spy) })
	id := call.IDFor("ca@10.1.1.1", "fa", 1)
	raw := "BYE sip:bob@" + tg.conn.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + tg.addr + ";branch=z9hG4bK-ct-bye1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=" + call.ALegTag(id) + "\r\n" +
		"To: <sip:bob@example.test>;tag=tb\r\nCall-ID: ct-1@test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	res, ok, from, got := sentAndAnswered(t, tg.g, tg.conn, raw, "")
	if !within(2*time.Second, func() bool { return tg.g.txs.clientFor(res) == nil }) {
		t.Fatal("the BYE's client transaction outlived its final response")
	}

	// The 200 again, as a UAS whose answer seemed lost would send it.
	if _, err := tg.conn.WriteToUDP([]byte(ok), from); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := spy.n.Load(); n != 0 {
		t.Fatalf("a retransmitted 200 to a BYE reached the call router %d times", n)
	}
	select {
	case r := <-got:
		t.Fatalf("the callback got a second response: %d", r.StatusCode)
	default:
	}
}

// A request the gateway cannot get to its next hop (a TCP connection
// refused) fails with an error that wraps sip.ErrTransactionTransport,
// whether Request returns it or the callback gets it, so that the call
// actor counts the branch as a 503 (RFC 3261 8.1.3.1) and not a timeout.
func TestRequestTransportErrorsSaySo(t *testing.T) {
	tg := startGateway(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // nothing listens there now: connect is refused
	raw := fmt.Sprintf("INVITE sip:bob@127.0.0.1:%d;transport=tcp SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK-te-1\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.test>;tag=te1\r\nTo: <sip:bob@example.test>\r\nCall-ID: te-1@test\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", closedPort, tg.addr)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("TCP")
	got := make(chan error, 1)
	err = tg.g.Request(req, func(res *sip.Response, err error) {
		if res == nil {
			got <- err
		}
	})
	if err == nil {
		select {
		case err = <-got:
		case <-time.After(40 * time.Second):
			t.Fatal("no error for a request whose connection was refused")
		}
	}
	if !errors.Is(err, sip.ErrTransactionTransport) {
		t.Fatalf("error %v does not wrap sip.ErrTransactionTransport", err)
	}
}
