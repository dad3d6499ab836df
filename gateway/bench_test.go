package gateway

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// captureResponder keeps the last response instead of sending it.
type captureResponder struct{ res *sip.Response }

func (c *captureResponder) Respond(res *sip.Response) error { c.res = res; return nil }
func (c *captureResponder) Terminate()                      {}

// BenchmarkRegister measures one authenticated registration through the
// gateway in process: parse, 401 challenge, parse again, digest check, the
// registration actor (over the in-memory store, so no fsync) and the 200.
// The client's digest computation is excluded from the timing.
func BenchmarkRegister(b *testing.B) {
	g, _ := newTestGateway(b)
	parser := sip.NewParser()
	msg := func(i, cseq int, authz string) *sip.Request {
		user := fmt.Sprintf("user%04d", i%1000)
		raw := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d-%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\nCall-ID: %d@bench\r\n"+
			"CSeq: %d REGISTER\r\nContact: <sip:%s@127.0.0.1:5061;transport=UDP>\r\nExpires: 3600\r\n%sContent-Length: 0\r\n\r\n",
			i, cseq, user, i, user, i, cseq, user, authz)
		m, err := parser.ParseSIP([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		r := m.(*sip.Request)
		r.SetTransport("UDP")
		r.SetSource("127.0.0.1:5061")
		return r
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var first captureResponder
		g.serve(msg(i, 1, ""), &first, 0)
		b.StopTimer()
		ch, err := icdigest.ParseChallenge(first.res.GetHeader("WWW-Authenticate").Value())
		if err != nil {
			b.Fatal(err)
		}
		cr, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:example.test",
			Username: fmt.Sprintf("user%04d", i%1000), Password: "secret", Count: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var second captureResponder
		g.serve(msg(i, 2, "Authorization: "+cr.String()+"\r\n"), &second, 0)
		if second.res == nil || second.res.StatusCode != 200 {
			b.Fatalf("registration %d: %v", i, second.res)
		}
	}
}
