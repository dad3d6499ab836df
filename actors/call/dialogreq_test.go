package call

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// requestToBAsText and requestToAAsText are how in-dialog requests were
// built before dialogRequest: as text, parsed back by sipgo. The typed
// build must say the same.
func (a *callActor) requestToBAsText(method string, cseq uint32, body []byte, ctype string, reasons []string, branch string, src *sip.Request) (*sip.Request, error) {
	l := a.state.WinningLeg()
	ans := l.Answered
	target := ans.Contact
	if target == "" {
		target = l.Attempt.RequestUri
	}
	m := newMsg(method, target)
	m.h("Via", a.cfg.Transport.Local().via(branch))
	for _, r := range ans.RouteSet {
		m.h("Route", r)
	}
	m.h("Max-Forwards", "70")
	m.h("From", l.Attempt.From)
	m.h("To", l.Attempt.To+";tag="+ans.RemoteTag)
	m.h("Call-ID", l.Attempt.CallId)
	m.h("CSeq", fmt.Sprintf("%d %s", cseq, method))
	if method == "INVITE" || method == "UPDATE" {
		m.h("Contact", a.cfg.Transport.Local().contact(l.Attempt.LocalTag))
	}
	for _, r := range reasons {
		m.h("Reason", r)
	}
	if src != nil {
		copyAllowed(m, src)
	}
	return m.request(ctype, body)
}

func (a *callActor) requestToAAsText(method string, cseq uint32, body []byte, ctype string, reasons []string, branch string, src *sip.Request) (*sip.Request, error) {
	al := a.state.Started.GetALeg()
	target := al.Contact
	if target == "" {
		target = uriOf(al.From)
	}
	m := newMsg(method, target)
	m.h("Via", a.cfg.Transport.Local().via(branch))
	for _, r := range al.RecordRoute {
		m.h("Route", r)
	}
	m.h("Max-Forwards", "70")
	m.h("From", al.To+";tag="+al.LocalTag)
	m.h("To", al.From)
	m.h("Call-ID", al.CallId)
	m.h("CSeq", fmt.Sprintf("%d %s", cseq, method))
	if method == "INVITE" || method == "UPDATE" {
		m.h("Contact", a.cfg.Transport.Local().contact(al.LocalTag))
	}
	for _, r := range reasons {
		m.h("Reason", r)
	}
	if src != nil {
		copyAllowed(m, src)
	}
	return m.request(ctype, body)
}

// answeredActor is an actor whose call was answered on leg 1, with the
// dialog facts given.
func answeredActor(t *testing.T, local Local, al *eventpb.ALeg, at *eventpb.LegAttempted, ans *eventpb.LegAnswered) *callActor {
	t.Helper()
	st := NewState("c1")
	for i, ev := range []proto.Message{
		&eventpb.CallStarted{Caller: "alice", Callee: "bob", RequestUri: "sip:bob@example.test", ALeg: al},
		at, ans, &eventpb.CallAnswered{Leg: 1},
	} {
		if err := st.Apply(uint64(i+1), time.Unix(1, 0), ev); err != nil {
			t.Fatal(err)
		}
	}
	return &callActor{id: "c1", aTag: ALegTag("c1"), state: st,
		cfg: &Config{Transport: localOnly(local), NewBranch: func() string { return "fixed" }}}
}

func TestDialogRequestSaysWhatTheTextBuildSaid(t *testing.T) {
	srcRaw := "INVITE sip:c1-a@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.11:5061;branch=z9hG4bK-7\r\n" +
		"From: <sip:alice@example.test>;tag=alice-1\r\nTo: <sip:bob@example.test>;tag=c1-a\r\nCall-ID: a-call\r\nCSeq: 3 INVITE\r\n" +
		"Supported: timer, 100rel\r\nAllow: INVITE, ACK, BYE\r\nSession-Expires: 1800;refresher=uac\r\nSubject: hold\r\n" +
		"X-Private: not copied\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(srcRaw))
	if err != nil {
		t.Fatal(err)
	}
	src := m.(*sip.Request)
	sdp := []byte("v=0\r\no=a 1 2 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n")
	al := &eventpb.ALeg{CallId: "a-call", From: `"Alice" <sip:alice@example.test>;tag=alice-1`, To: "<sip:bob@example.test>",
		Cseq: 1, LocalTag: "c1-a", Contact: "sip:alice@127.0.0.11:5061;transport=udp",
		RecordRoute: []string{"<sip:p1.example.test;lr>", "<sip:p2.example.test:5070;lr;ftag=x>"}}
	at := &eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@127.0.0.31:5090", LocalTag: "c1-b1",
		From: `"Alice" <sip:alice@example.test>;tag=c1-b1`, To: "<sip:bob@example.test>", CallId: "c1-b1", Cseq: 1}
	for _, tc := range []struct {
		name    string
		local   Local
		ans     *eventpb.LegAnswered
		al      *eventpb.ALeg
		method  string
		body    []byte
		ctype   string
		reasons []string
		src     *sip.Request
	}{
		{name: "BYE with a reason, no Contact: the request URI", local: Local{Host: "127.0.0.1", Port: 5060},
			ans: &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1"}, method: "BYE", reasons: []string{`Q.850;cause=16;text="Normal call clearing"`}},
		{name: "BYE along a route set, one entry a list", local: Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"},
			ans: &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1", Contact: "sip:bob@127.0.0.31:5090",
				RouteSet: []string{"<sip:p0.example.test;lr>", "<sip:p1.example.test;lr>,<sip:p2.example.test;lr>"}}, method: "BYE"},
		{name: "re-INVITE with SDP and copied headers, over TCP and IPv6", local: Local{Host: "::1", Port: 5070, Transport: "tcp"},
			ans:    &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1", Contact: "sip:bob@[::1]:5090;transport=tcp"},
			method: "INVITE", body: sdp, ctype: "application/sdp", src: src},
		{name: "ACK", local: Local{Host: "127.0.0.1", Port: 5060},
			ans: &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1", Contact: "sip:bob@127.0.0.31:5090"}, method: "ACK"},
		{name: "UPDATE", local: Local{Host: "127.0.0.1", Port: 5060},
			ans: &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1", Contact: "sip:bob@127.0.0.31:5090"}, method: "UPDATE",
			body: sdp, ctype: "application/sdp", src: src},
		{name: "INFO without a Contact on leg A: the From URI", local: Local{Host: "127.0.0.1", Port: 5060},
			ans: &eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "bob-1"}, method: "INFO",
			al:   &eventpb.ALeg{CallId: "a-call", From: "sip:alice@127.0.0.11:5061;tag=alice-1", To: "<sip:bob@example.test>", Cseq: 1, LocalTag: "c1-a"},
			body: []byte("Signal=5\r\nDuration=160\r\n"), ctype: "application/dtmf-relay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leg := al
			if tc.al != nil {
				leg = tc.al
			}
			a := answeredActor(t, tc.local, leg, at, tc.ans)
			for _, side := range []string{"b", "a"} {
				var got, want *sip.Request
				var errGot, errWant error
				if side == "b" {
					got, errGot = a.requestToB(tc.method, 5, tc.body, tc.ctype, tc.reasons, tc.src)
					branch := "z9hG4bKfixed"
					if tc.method == "ACK" {
						branch = ackBranch(at.LocalTag, tc.ans.RemoteTag, 5)
					}
					want, errWant = a.requestToBAsText(tc.method, 5, tc.body, tc.ctype, tc.reasons, branch, tc.src)
				} else {
					got, errGot = a.requestToA(tc.method, 5, tc.body, tc.ctype, tc.reasons, tc.src)
					branch := "z9hG4bKfixed"
					if tc.method == "ACK" {
						branch = ackBranch(leg.LocalTag, callerTag(leg), 5)
					}
					want, errWant = a.requestToAAsText(tc.method, 5, tc.body, tc.ctype, tc.reasons, branch, tc.src)
				}
				if errGot != nil || errWant != nil {
					t.Fatalf("leg %s: typed build: %v; text build: %v", side, errGot, errWant)
				}
				if got.String() != want.String() {
					t.Fatalf("leg %s: built from typed headers:\n%s\nbuilt as text:\n%s", side, got.String(), want.String())
				}
				if got.Transport() != want.Transport() || got.Destination() != want.Destination() {
					t.Fatalf("leg %s: transport %q to %q, want %q to %q", side, got.Transport(), got.Destination(), want.Transport(), want.Destination())
				}
				if (got.Route() == nil) != (want.Route() == nil) || (got.Contact() == nil) != (want.Contact() == nil) ||
					got.Via() == nil || got.From() == nil || got.To() == nil || got.CSeq() == nil || got.CallID() == nil ||
					(got.ContentType() == nil) != (want.ContentType() == nil) {
					t.Fatalf("leg %s: a typed header cannot be looked up as in the parsed build", side)
				}
				if tag, _ := got.To().Params.Get("tag"); tag == "" {
					t.Fatalf("leg %s: the To has no tag", side)
				}
			}
		})
	}
}

func TestDialogRequestRefusesWhatDoesNotParse(t *testing.T) {
	for _, d := range []dialogRequest{
		{method: "BYE", target: "", from: "<sip:a@x>;tag=1", to: "<sip:b@y>;tag=2", callID: "c", cseq: 2},
		{method: "BYE", target: "sip:b@y", from: "", to: "<sip:b@y>;tag=2", callID: "c", cseq: 2},
		{method: "BYE", target: "sip:b@y", from: "<sip:a@x>;tag=1", to: "<sip:b@y;tag=2", callID: "c", cseq: 2},
		{method: "BYE", target: "sip:b@y", routes: []string{"<>"}, from: "<sip:a@x>;tag=1", to: "<sip:b@y>;tag=2", callID: "c", cseq: 2},
	} {
		if req, err := d.build(Local{Host: "127.0.0.1", Port: 5060}); err == nil {
			t.Errorf("built %+v:\n%s", d, req)
		}
	}
}
