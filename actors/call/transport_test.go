package call

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

// twoListeners is a node on UDP 5060 and TCP 5061 (different ports, so a
// Via or Contact on the wrong listener shows).
var twoListeners = Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP",
	Others: []Local{{Host: "127.0.0.1", Port: 5061, Transport: "TCP"}}}

func TestLocalFor(t *testing.T) {
	for _, c := range []struct {
		transport string
		want      string // host:port/transport
	}{
		{"", "127.0.0.1:5060/UDP"},
		{"udp", "127.0.0.1:5060/UDP"},
		{"tcp", "127.0.0.1:5061/TCP"},
		{"TCP", "127.0.0.1:5061/TCP"},
		{"tls", "127.0.0.1:5060/UDP"}, // not listened on: the default listener
	} {
		l := twoListeners.For(c.transport)
		if got := fmt.Sprintf("%s:%d/%s", l.Host, l.Port, l.transport()); got != c.want {
			t.Errorf("For(%q) = %s, want %s", c.transport, got, c.want)
		}
	}
	// From the TCP listener, UDP is one of the others: For goes both ways.
	tcp := twoListeners.For("tcp")
	if back := tcp.For("udp"); back.Port != 5060 || back.transport() != "UDP" || len(back.Others) != 1 || back.Others[0].Port != 5061 {
		t.Errorf("For(tcp).For(udp) = %+v", back)
	}
	if got := tcp.contact("t1"); got != "<sip:t1@127.0.0.1:5061;transport=tcp>" {
		t.Errorf("TCP contact %s", got)
	}
	if got := twoListeners.For("").via("z9hG4bKx"); got != "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport" {
		t.Errorf("UDP via %s", got)
	}
}

func TestNextHopTransport(t *testing.T) {
	for _, c := range []struct {
		target string
		routes []string
		want   string
	}{
		{"sip:bob@10.2.2.2:5080", nil, ""},
		{"sip:bob@10.2.2.2:5080;transport=tcp", nil, "tcp"},
		{"sip:bob@10.2.2.2:5080;Transport=TCP", nil, "TCP"},
		{"sip:bob@10.2.2.2:5080;user=phone;transport=udp", nil, "udp"},
		// The route set's first entry decides (loose routing), not the target.
		{"sip:bob@10.2.2.2:5080;transport=tcp", []string{"<sip:p1.example.test;lr>"}, ""},
		{"sip:bob@10.2.2.2:5080", []string{"<sip:p1.example.test;lr;transport=tcp>", "<sip:p2.example.test;lr>"}, "tcp"},
		{"sip:bob@10.2.2.2:5080", []string{`"Proxy" <sip:p1.example.test;transport=tcp;lr>;x=y`}, "tcp"},
		{"not a uri;transport=tcp", nil, ""},
		{"sip:bob@10.2.2.2", []string{"<<bad"}, ""},
		{"sip:transport=tcp@10.2.2.2", nil, ""}, // the user part is no parameter
	} {
		if got := textTransport(c.target, c.routes); got != c.want {
			t.Errorf("textTransport(%q, %q) = %q, want %q", c.target, c.routes, got, c.want)
		}
	}
}

// A caller over TCP whose Contact says transport=tcp, calling a callee
// whose contact says transport=tcp: every request Tandem sends to either
// goes out on TCP with a Via naming the TCP listener, and the Contacts it
// gives both point at that listener with transport=tcp. Before, every
// request went out on the first listener (UDP), so the callee's BYE never
// reached a TCP-only caller.
func TestRequestsGoOutOnTheTransportTheirNextHopNames(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	r.tp.local = &twoListeners
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5080;transport=tcp")
	inv.Req.SetTransport("TCP")
	inv.Req.RemoveHeader("Contact")
	inv.Req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "10.1.1.1", Port: 5070,
		UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	r.deliver(id, inv)
	var binv []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "B INVITE", func() bool { binv, ons = r.tp.sent("INVITE"); return len(binv) == 1 })
	onTCP(t, "B leg INVITE", binv[0])
	if c := binv[0].Contact(); c == nil || c.Address.Port != 5061 || uriTransport(&c.Address) != "tcp" {
		t.Errorf("B leg INVITE Contact %v, want the TCP listener with transport=tcp", c)
	}

	ok := respond(binv[0], 200, "OK", "tb", true)
	ok.RemoveHeader("Contact")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "10.2.2.2", Port: 5080,
		UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	ons[0](ok, nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	<-inv.Done
	if c := atx.last().Contact(); c == nil || c.Address.Port != 5061 || uriTransport(&c.Address) != "tcp" {
		t.Errorf("200 to A Contact %v, want the TCP listener with transport=tcp", c)
	}
	acks := r.tp.written("ACK")
	if len(acks) != 1 {
		t.Fatalf("%d ACKs to B", len(acks))
	}
	onTCP(t, "ACK to B", acks[0].(*sip.Request))

	// The callee hangs up: the BYE to the caller goes on TCP.
	bye := parseReq(t, "BYE sip:"+BLegTag(id, 1)+"@127.0.0.1:5061;transport=tcp SIP/2.0\nVia: SIP/2.0/TCP 10.2.2.2:5080;branch=z9hG4bKbbye\n"+
		"From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag="+BLegTag(id, 1)+"\nCall-ID: "+BLegTag(id, 1)+"\nCSeq: 2 BYE\nContent-Length: 0\n\n")
	bye.SetTransport("TCP")
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: &fakeTx{}, Side: "b", Leg: 1, Done: done})
	<-done
	byes, _ := r.tp.sent("BYE")
	if len(byes) != 1 {
		t.Fatalf("%d BYEs sent", len(byes))
	}
	onTCP(t, "BYE to A", byes[0])
	if byes[0].Recipient.User != "alice" || byes[0].Recipient.Port != 5070 {
		t.Errorf("BYE to A addressed to %s", byes[0].Recipient.String())
	}
}

// A UDP caller and callee on the same node keep the UDP listener.
func TestRequestsWithoutTransportStayOnUDP(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	r.tp.local = &twoListeners
	id, binv, atx := r.answered()
	if binv.Transport() != "UDP" || binv.Via().Transport != "UDP" || binv.Via().Port != 5060 || binv.Contact().Address.Port != 5060 {
		t.Errorf("B leg INVITE on %s, Via %s, Contact %s", binv.Transport(), binv.Via().Value(), binv.Contact().Value())
	}
	if c := atx.last().Contact(); c == nil || c.Address.Port != 5060 || strings.Contains(c.Value(), "transport") {
		t.Errorf("200 to A Contact %v", c)
	}
	bye := parseReq(t, "BYE sip:"+BLegTag(id, 1)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKbbye\n"+
		"From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag="+BLegTag(id, 1)+"\nCall-ID: "+BLegTag(id, 1)+"\nCSeq: 2 BYE\nContent-Length: 0\n\n")
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: &fakeTx{}, Side: "b", Leg: 1, Done: done})
	<-done
	byes, _ := r.tp.sent("BYE")
	if len(byes) != 1 || byes[0].Transport() != "UDP" || byes[0].Via().Port != 5060 {
		t.Fatalf("BYE to A: %v", byes)
	}
}

// onTCP checks that req goes out on TCP from the TCP listener.
func onTCP(t *testing.T, what string, req *sip.Request) {
	t.Helper()
	v := req.Via()
	if req.Transport() != "TCP" || v == nil || v.Transport != "TCP" || v.Port != 5061 {
		t.Errorf("%s goes out on %q with Via %v, want TCP from port 5061:\n%s", what, req.Transport(), v, req.String())
	}
}

func TestLocalReach(t *testing.T) {
	udpOnly := Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}
	for _, c := range []struct {
		l      Local
		uri    string
		reach  bool
		reason string
	}{
		{twoListeners, "sip:bob@10.2.2.2:5080", true, ""},
		{twoListeners, "sip:bob@10.2.2.2:5080;transport=udp", true, ""},
		{twoListeners, "sip:bob@10.2.2.2:5080;transport=TCP", true, ""},
		{twoListeners, "sip:bob@10.2.2.2:5080;transport=tls", false, `names transport "tls"`},
		{twoListeners, "sip:bob@10.2.2.2:5080;transport=sctp", false, `names transport "sctp"`},
		{twoListeners, "sips:bob@10.2.2.2:5081", false, "sips URI"},
		{twoListeners, "SIPS:bob@10.2.2.2:5081;transport=tcp", false, "sips URI"},
		{udpOnly, "sip:bob@10.2.2.2:5080;transport=tcp", false, `names transport "tcp"`},
		{udpOnly, "sip:bob@10.2.2.2:5080", true, ""},
		// From the TCP listener, UDP is among the others.
		{twoListeners.For("tcp"), "sip:bob@10.2.2.2:5080;transport=udp", true, ""},
	} {
		var u sip.Uri
		if err := sip.ParseUri(c.uri, &u); err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		err := c.l.reach(&u, uriTransport(&u))
		switch {
		case c.reach && err != nil:
			t.Errorf("%s from %s: %v", c.uri, c.l.transport(), err)
		case !c.reach && (!errors.Is(err, ErrNoTransport) || !strings.Contains(err.Error(), c.reason)):
			t.Errorf("%s from %s: err %v, want ErrNoTransport saying %q", c.uri, c.l.transport(), err, c.reason)
		}
	}
}

// A contact whose URI names a transport the node does not listen on (TLS
// here) or needs TLS (sips) gets no INVITE at all: sent over UDP it would
// go in the clear to a port expecting TLS. Its branch fails as a 503
// (RFC 3261 8.1.3.1, 16.9); the other branch, on UDP, answers and wins.
func TestLegToAnUnlistenedTransportFailsAs503(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	r.tp.local = &twoListeners
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5081;transport=tls", "sips:bob@10.2.2.2:5082", "sip:bob@10.2.2.3:5080")
	r.deliver(id, inv)
	waitFor(t, "both refused legs failed", func() bool { return len(legFailures(t, r, id)) == 2 })
	binv, ons := r.tp.sent("INVITE")
	if len(binv) != 1 || binv[0].Recipient.Host != "10.2.2.3" || binv[0].Transport() != "UDP" {
		t.Fatalf("INVITEs sent: %v", binv)
	}
	for _, f := range legFailures(t, r, id) {
		if f.Code != 503 || !strings.Contains(f.Reason, "no listener") {
			t.Errorf("leg %d failed with %d %q, want 503 saying why", f.Leg, f.Code, f.Reason)
		}
	}
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	closed(t, inv.Done)
}

// With every branch refused for its transport, the caller gets 500 (a
// 503 is not passed upstream, 16.7).
func TestOnlyLegToAnUnlistenedTransport(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5080;transport=tcp") // the rig listens on UDP only
	r.deliver(id, inv)
	closed(t, inv.Done)
	if c := atx.codes(); len(c) == 0 || c[len(c)-1] != 500 {
		t.Fatalf("caller got %v, want a final 500", c)
	}
	if b, _ := r.tp.sent("INVITE"); len(b) != 0 {
		t.Fatalf("%d INVITEs sent", len(b))
	}
	if f := legFailures(t, r, id); len(f) != 1 || f[0].Code != 503 {
		t.Fatalf("leg failures %v", f)
	}
}

// A B leg's INVITE whose transaction ends on a transport error (a TCP
// connection refused, an ICMP error) fails as a 503; one that times out
// (Timer B) as a 408, which is what the caller then gets.
func TestLegTransportErrorIs503AndTimeout408(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, _, ons := r.dial(2, "sip:bob@10.2.2.2:5080", "sip:bob@10.2.2.3:5080")
	ons[0](nil, fmt.Errorf("transaction ended: %w", fmt.Errorf("write: connection refused. %w", sip.ErrTransactionTransport)))
	waitFor(t, "first leg failed", func() bool { return len(legFailures(t, r, id)) == 1 })
	ons[1](nil, fmt.Errorf("transaction ended: %w", sip.ErrTransactionTimeout))
	closed(t, inv.Done)
	f := legFailures(t, r, id)
	if len(f) != 2 || f[0].Code != 503 || f[1].Code != 408 {
		t.Fatalf("leg failures %v, want 503 then 408", f)
	}
	if c := atx.codes(); len(c) == 0 || c[len(c)-1] != 408 {
		t.Fatalf("caller got %v, want a final 408", c)
	}
}

// A callee whose 2xx gives a remote target on TLS gets no ACK over UDP
// (a UDP datagram to a TLS port is lost anyway, and in the clear): the
// ACK is not built, and the log says why.
func TestAckToAnUnlistenedTransportIsNotSent(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, _, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ok := respond(binv[0], 200, "OK", "tb", true)
	ok.RemoveHeader("Contact")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "10.2.2.2", Port: 5081,
		UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
	ons[0](ok, nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	closed(t, inv.Done)
	if acks := r.tp.written("ACK"); len(acks) != 0 {
		t.Fatalf("%d ACKs written to a TLS remote target:\n%s", len(acks), acks[0].String())
	}
}

// An in-dialog request whose next hop (the first Route, else the remote
// target) needs a transport the node lacks is not built.
func TestDialogRequestToAnUnlistenedTransport(t *testing.T) {
	for _, c := range []struct {
		target string
		routes []string
		ok     bool
	}{
		{"sip:bob@10.2.2.2:5080;transport=tcp", nil, true},
		{"sip:bob@10.2.2.2:5080;transport=tls", nil, false},
		{"sips:bob@10.2.2.2:5081", nil, false},
		{"sip:bob@10.2.2.2:5080;transport=tls", []string{"<sip:p1.example.test;lr>"}, true}, // the proxy takes it on
		{"sip:bob@10.2.2.2:5080", []string{"<sip:p1.example.test;lr;transport=sctp>"}, false},
	} {
		d := &dialogRequest{method: "BYE", target: c.target, routes: c.routes, branch: "z9hG4bKx",
			from: "<sip:alice@example.test>;tag=a", to: "<sip:bob@example.test>;tag=b", callID: "c1", cseq: 2}
		_, err := d.build(twoListeners)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNoTransport)) {
			t.Errorf("BYE to %s via %v: err %v", c.target, c.routes, err)
		}
	}
}

// legFailures is the call's LegFailed events, in order.
func legFailures(t *testing.T, r *rig, id string) []*eventpb.LegFailed {
	t.Helper()
	evs, err := r.st.ReadStream(context.Background(), StreamName(id), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []*eventpb.LegFailed
	for _, e := range evs {
		m, err := events.Unwrap(e)
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := m.(*eventpb.LegFailed); ok {
			out = append(out, f)
		}
	}
	return out
}

// A caller's PRACK for a reliable 18x whose Contact (the early dialog's
// remote target) needs TLS is refused with 500 and nothing recorded or
// sent, as an in-dialog request that cannot be built is; before, it went
// out over UDP.
func TestPrackToAnUnlistenedTransport(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	_, _, id, _, _ := r.reliablyRinging(sip.Uri{Scheme: "sip", User: "bob", Host: "10.2.2.2", Port: 5081,
		UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}})
	before := len(r.types(id))
	prack := parseReq(t, "PRACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKpr\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 3 PRACK\nRAck: 1 2 INVITE\nContent-Length: 0\n\n")
	ptx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: prack, Tx: ptx, Side: "a", Done: done})
	closed(t, done)
	if c := ptx.codes(); len(c) != 1 || c[0] != 500 {
		t.Fatalf("PRACK answered %v, want 500", c)
	}
	if pr, _ := r.tp.sent("PRACK"); len(pr) != 0 {
		t.Fatalf("PRACK sent to a TLS remote target:\n%s", pr[0])
	}
	if n := len(r.types(id)); n != before {
		t.Fatalf("events after the refused PRACK: %v", r.types(id)[before:])
	}
}

// A 2xx from a branch that lost, whose Contact needs TLS, gets neither
// the ACK nor the BYE over UDP (the log says why).
func TestLosing2xxOnAnUnlistenedTransportGetsNoBye(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(2, "sip:bob@10.2.2.2:5080", "sip:bob@10.2.2.3:5080")
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	closed(t, inv.Done)
	waitFor(t, "ACK to the winner", func() bool { return len(r.tp.written("ACK")) == 1 })
	late := respond(binv[1], 200, "OK", "tc", true)
	late.RemoveHeader("Contact")
	late.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sips", User: "bob", Host: "10.2.2.3", Port: 5081}})
	ons[1](late, nil)
	// The caller then hangs up: its BYE, queued after the late 2xx, is
	// handled after it, so once it is answered every BYE is sent.
	bye := parseReq(t, "BYE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKbye\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 4 BYE\nContent-Length: 0\n\n")
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: &fakeTx{}, Side: "a", Done: done})
	closed(t, done)
	byes, _ := r.tp.sent("BYE")
	if len(byes) != 1 || byes[0].Recipient.Host != "10.2.2.2" {
		t.Fatalf("BYEs sent %v, want only the winner's (10.2.2.2)", byes)
	}
	if acks := r.tp.written("ACK"); len(acks) != 1 {
		t.Fatalf("%d ACKs written, want only the winner's", len(acks))
	}
}
