package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
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

// BenchmarkReply compares the two ways a stateless 401 to a REGISTER is
// written: through sipgo (NewResponseFromRequest, then StringWrite) and
// straight from the request's bytes (appendReply).
func BenchmarkReply(b *testing.B) {
	raw := []byte("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:user0001@example.test>;tag=1\r\nTo: <sip:user0001@example.test>\r\nCall-ID: 1@bench\r\n" +
		"CSeq: 1 REGISTER\r\nContact: <sip:user0001@127.0.0.1:5061;transport=UDP>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
	m, err := sip.NewParser().ParseSIP(raw)
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("127.0.0.1:5061")
	src := netip.MustParseAddrPort("127.0.0.1:5061")
	headers := [][2]string{
		{"WWW-Authenticate", `Digest realm="example.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", algorithm=SHA-256, qop="auth"`},
		{"WWW-Authenticate", `Digest realm="example.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", algorithm=MD5, qop="auth"`},
	}
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			if to := res.To(); to != nil {
				to.Params.Add("tag", toTag(req))
			}
			res.AppendHeader(sip.NewHeader("Server", "Tandem"))
			for _, h := range headers {
				res.AppendHeader(sip.NewHeader(h[0], h[1]))
			}
			buf.Reset()
			res.StringWrite(&buf)
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		out := make([]byte, 0, 2048)
		for b.Loop() {
			var tag [16]byte
			var ok bool
			out, ok = appendReply(out[:0], raw, replySpec{code: 401, reason: "Unauthorized", method: req.Method,
				src: src, tag: appendToTag(tag[:0], req), server: "Tandem", headers: headers})
			if !ok {
				b.Fatal("refused")
			}
		}
	})
}
