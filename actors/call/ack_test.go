package call

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/siphdr"
)

// ackAsText is how the ACK for a 2xx was built before ackRequest: as text,
// parsed back by sipgo. ackRequest must say the same.
func ackAsText(local Local, at *eventpb.LegAttempted, res *sip.Response, branch string, body []byte, ctype string) (*sip.Request, error) {
	target := at.RequestUri
	if c := res.Contact(); c != nil {
		target = c.Address.String()
	}
	m := newMsg("ACK", target)
	m.h("Via", local.via(branch))
	rr := siphdr.All(res, "Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		m.h("Route", rr[i].Value())
	}
	m.h("Max-Forwards", "70")
	m.h("From", at.From)
	m.h("To", res.To().Value())
	m.h("Call-ID", at.CallId)
	m.h("CSeq", fmt.Sprintf("%d ACK", res.CSeq().SeqNo))
	return m.request(ctype, body)
}

func TestAckRequestSaysWhatTheTextBuildSaid(t *testing.T) {
	at := &eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@127.0.0.31:5090", LocalTag: "c1-b1",
		From: `"Alice Smith" <sip:alice@example.test>;tag=c1-b1`, CallId: "c1-b1@tandem", Cseq: 1}
	parse := func(raw string) *sip.Response {
		t.Helper()
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Response)
	}
	head := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport=5060\r\n" +
		"From: \"Alice Smith\" <sip:alice@example.test>;tag=c1-b1\r\nTo: <sip:bob@example.test>;tag=bob-1\r\n" +
		"Call-ID: c1-b1@tandem\r\nCSeq: 1 INVITE\r\n"
	for _, tc := range []struct {
		name, extra string
		body        []byte
		ctype       string
		local       Local
	}{
		{name: "no Contact: the request URI", local: Local{Host: "127.0.0.1", Port: 5060}},
		{name: "Contact and two Record-Routes", extra: "Contact: <sip:bob@127.0.0.31:5090;transport=udp>\r\n" +
			"Record-Route: <sip:p2.example.test;lr>\r\nRecord-Route: <sip:p1.example.test;lr>,<sip:p0.example.test;lr>\r\n",
			local: Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}},
		{name: "an answer in the ACK, over TCP", extra: "Contact: <sip:bob@127.0.0.31:5090>\r\n",
			body: []byte("v=0\r\no=b 1 1 IN IP4 127.0.0.31\r\n"), ctype: "application/sdp", local: Local{Host: "::1", Port: 5070, Transport: "tcp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := parse(head + tc.extra + "Content-Length: 0\r\n\r\n")
			a := &callActor{cfg: &Config{Transport: localOnly(tc.local)}}
			got, err := a.ackRequest(at, res, "z9hG4bKc1-b1-ack1-x", tc.body, tc.ctype)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ackAsText(tc.local, at, res, "z9hG4bKc1-b1-ack1-x", tc.body, tc.ctype)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Fatalf("ACK built from typed headers:\n%s\nbuilt as text:\n%s", got.String(), want.String())
			}
			if got.Transport() != want.Transport() || got.Destination() != want.Destination() {
				t.Fatalf("transport %q to %q, want %q to %q", got.Transport(), got.Destination(), want.Transport(), want.Destination())
			}
			if (got.Route() == nil) != (want.Route() == nil) || got.Via() == nil || got.From() == nil || got.To() == nil || got.CSeq() == nil || got.CallID() == nil {
				t.Fatal("a typed header of the ACK cannot be looked up")
			}
		})
	}
}

// localOnly is a Transport that only says where Tandem is.
type localOnly Local

func (l localOnly) Request(*sip.Request, func(*sip.Response, error)) error { return nil }
func (l localOnly) Write(sip.Message) error                                { return nil }
func (l localOnly) Local() Local                                           { return Local(l) }
