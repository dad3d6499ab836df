package call

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// newResponse renders what sipgo's NewResponseFromRequest renders (with
// the To tag the call actor puts on it), for requests with and without
// Record-Route, several Vias, an empty rport, a To tag, a Timestamp and
// compact header names, and for provisional, final and error codes; it
// leaves the request as it was.
func TestResponseSaysWhatSipgoSaid(t *testing.T) {
	invite := "INVITE sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa1;rport\r\n" +
		"Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKa0;received=10.9.9.8\r\n" +
		"Record-Route: <sip:10.5.5.5;lr>\r\nRecord-Route: <sip:10.6.6.6;lr>\r\n" +
		"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.test>;tag=fa\r\nTo: <sip:bob@example.test>\r\n" +
		"Call-ID: ca@10.1.1.1\r\nCSeq: 2 INVITE\r\nTimestamp: 54\r\nContact: <sip:alice@10.1.1.1:5070>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
	bye := "BYE sip:x-a@127.0.0.1:5060 SIP/2.0\r\n" +
		"v: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKbye\r\n" +
		"f: <sip:alice@example.test>;tag=fa\r\nt: <sip:bob@example.test>;tag=x-a\r\n" +
		"i: ca@10.1.1.1\r\nCSeq: 3 BYE\r\nl: 0\r\n\r\n"
	register := "REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKr1\r\nRecord-Route: <sip:10.5.5.5;lr>\r\n" +
		"From: <sip:alice@example.test>;tag=fr\r\nTo: <sip:alice@example.test>\r\n" +
		"Call-ID: reg@10.1.1.1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
	cases := []struct {
		name, raw string
		codes     []int
		tag       string
		body      []byte
	}{
		{"initial INVITE", invite, []int{100, 180, 183, 200, 486, 487, 500}, "x-a", nil},
		{"initial INVITE with an answer", invite, []int{183, 200}, "x-a", []byte("v=0\r\no=- 1 1 IN IP4 10.2.2.2\r\n")},
		{"in-dialog BYE, compact names", bye, []int{200, 481, 500}, "", nil},
		{"in-dialog BYE tagged again", bye, []int{200}, "x-a", nil},
		{"REGISTER", register, []int{100, 200, 401}, "t1", nil},
	}
	for _, c := range cases {
		for _, code := range c.codes {
			req := parseUDP(t, c.raw, "10.1.1.1:5070")
			before := req.String()
			want := sip.NewResponseFromRequest(req, code, "Reason", c.body)
			if code > 100 && c.tag != "" {
				want.To().Params.Add("tag", c.tag)
			}
			got := newResponse(req, code, "Reason", c.body, c.tag)
			if g, w := got.String(), want.String(); g != w {
				t.Errorf("%s, %d:\n got %q\nwant %q", c.name, code, g, w)
			}
			if got.Transport() != want.Transport() || got.Destination() != want.Destination() {
				t.Errorf("%s, %d: transport %q destination %q, want %q %q", c.name, code,
					got.Transport(), got.Destination(), want.Transport(), want.Destination())
			}
			if got.Via() == nil || got.Via().Value() != want.Via().Value() || got.To().Value() != want.To().Value() ||
				got.CSeq().Value() != want.CSeq().Value() || got.CallID().Value() != want.CallID().Value() {
				t.Errorf("%s, %d: typed headers differ", c.name, code)
			}
			if req.String() != before {
				t.Errorf("%s, %d: the request changed:\n%s", c.name, code, req.String())
			}
		}
	}
}

func parseUDP(t *testing.T, raw, source string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource(source)
	return req
}

// A response over UDP goes to the source address at the top Via's port
// (RFC 3261 18.2.2), or rport's (RFC 3581); over TCP to the source.
func TestResponseDestination(t *testing.T) {
	for _, c := range []struct{ via, transport, source, want string }{
		{"SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK1", "UDP", "10.1.1.1:5070", "10.1.1.1:5070"},
		{"SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK1", "UDP", "192.0.2.7:40000", "192.0.2.7:5070"},
		{"SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK1", "UDP", "192.0.2.7:40000", "192.0.2.7:5060"},
		{"SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK1;rport", "UDP", "192.0.2.7:40000", "192.0.2.7:40000"},
		{"SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK1;rport=41000", "UDP", "192.0.2.7:40000", "192.0.2.7:41000"},
		{"SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1", "UDP", "[2001:db8::9]:40000", "[2001:db8::9]:5070"},
		{"SIP/2.0/TCP 10.1.1.1:5070;branch=z9hG4bK1", "TCP", "192.0.2.7:40000", "192.0.2.7:40000"},
	} {
		raw := "OPTIONS sip:bob@example.test SIP/2.0\r\nVia: " + c.via + "\r\n" +
			"From: <sip:alice@example.test>;tag=f\r\nTo: <sip:bob@example.test>\r\nCall-ID: d@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		req := parseUDP(t, raw, c.source)
		req.SetTransport(c.transport)
		if got := responseDestination(req); got != c.want {
			t.Errorf("Via %s from %s over %s: %s, want %s", c.via, c.source, c.transport, got, c.want)
		}
		if res := newResponse(req, 200, "OK", nil, "t"); res.Destination() != c.want || !strings.EqualFold(res.Transport(), c.transport) {
			t.Errorf("Via %s: response to %s over %s", c.via, res.Destination(), res.Transport())
		}
	}
}
