package gateway

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/call"
)

// answering is a call router that answers every INVITE 200 at once, as a
// call actor does, and passes on the strays it gets.
type answering struct{ strays chan *call.Stray }

func (r *answering) Deliver(id string, msg any) error {
	switch m := msg.(type) {
	case *call.Invite:
		res := sip.NewResponseFromRequest(m.Req, 200, "OK", nil)
		res.To().Params.Add("tag", call.ALegTag(id))
		_ = m.Tx.Respond(res)
		close(m.Done)
	case *call.Stray:
		r.strays <- m
	}
	return nil
}

// within polls cond every 5 ms for at most d.
func within(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			return false
		}
	}
	return true
}

func countOf(m interface{ Range(func(any, any) bool) }) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// INVITE transactions end on a 2xx, as RFC 3261 has them (17.1.1.2,
// 17.2.1), rather than 32 s later (RFC 6026's Accepted state): the server
// transaction a caller's INVITE came in on, and the client transaction of
// an INVITE Tandem sends. A retransmission of that 2xx then reaches the
// call as a stray, for the call to ACK again.
func TestInviteTransactionsEndOnA2xx(t *testing.T) {
	r := &answering{strays: make(chan *call.Stray, 4)}
	g, addr := startDualGateway(t, func(g *Gateway) {
		g.SetCalls(r)
		g.opts.Locate = func(string) []string { return []string{"sip:bob@127.0.0.1:9"} }
	})

	// The server side: an authorized INVITE over UDP, answered 200.
	c := dialUDP(t, addr)
	cred := c.authorize(t, "INVITE", "sip:bob@example.test", "z9hG4bK-it1")
	c.send(t, c.request("INVITE", "sip:bob@example.test", "z9hG4bK-it2", 2, cred))
	if res := c.final(t, "INVITE"); res.StatusCode != 200 {
		t.Fatalf("authorized INVITE answered %d", res.StatusCode)
	}
	if !within(2*time.Second, func() bool { return countOf(&g.txs.server) == 0 }) {
		t.Fatal("the INVITE's server transaction outlived its 2xx")
	}

	// The client side: an INVITE from a B leg to a UAS that answers 200.
	uas, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	id := call.IDFor("it-1@test", "fa", 1)
	local := g.Local()
	raw := "INVITE sip:bob@" + uas.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + net.JoinHostPort(local.Host, strconv.Itoa(local.Port)) + ";branch=z9hG4bK-it-b1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=" + call.BLegTag(id, 1) + "\r\n" +
		"To: <sip:bob@example.test>\r\nCall-ID: " + call.BLegTag(id, 1) + "\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:" + call.BLegTag(id, 1) + "@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
	res, ok, from, _ := sentAndAnswered(t, g, uas, raw, "tb")
	if !within(2*time.Second, func() bool { return g.txs.clientFor(res) == nil }) {
		t.Fatal("the INVITE's client transaction outlived its 2xx")
	}
	if _, err := uas.WriteToUDP([]byte(ok), from); err != nil { // the UAS got no ACK
		t.Fatal(err)
	}
	select {
	case s := <-r.strays:
		if s.Side != "b" || s.Leg != 1 || s.Res.StatusCode != 200 {
			t.Fatalf("stray %+v", s)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the retransmitted 2xx never reached the call")
	}
}

// sentAndAnswered sends raw (a request as a call actor builds it) through
// g.Request to the UAS listening on uas, which answers it 200 (with To
// tag toTag when not empty). It returns the response the callback got,
// the 200 as sent (for a test to send again), where it came from, and the
// callback's channel.
func sentAndAnswered(t *testing.T, g *Gateway, uas *net.UDPConn, raw, toTag string) (*sip.Response, string, *net.UDPAddr, chan *sip.Response) {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	got := make(chan *sip.Response, 4)
	if err := g.Request(req, func(res *sip.Response, err error) {
		if res != nil {
			got <- res
		}
	}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = uas.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := uas.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("the %s never came: %v", req.Method, err)
	}
	in, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	okRes := sip.NewResponseFromRequest(in.(*sip.Request), 200, "OK", nil)
	if toTag != "" {
		okRes.To().Params.Add("tag", toTag)
	}
	ok := okRes.String()
	if _, err := uas.WriteToUDP([]byte(ok), from); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		if res.StatusCode != 200 {
			t.Fatalf("callback got %d", res.StatusCode)
		}
		return res, ok, from, got
	case <-time.After(3 * time.Second):
		t.Fatal("the 200 never reached the callback")
		return nil, "", nil, nil
	}
}
