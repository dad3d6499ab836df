package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// BenchmarkRegister measures one authenticated registration through the
// gateway's UDP fast path in process, as the server does it for two
// datagrams: parse the REGISTER without credentials and answer the 401
// from its bytes, then parse the one with credentials, check the digest,
// run the registration actor (over the in-memory store, so no fsync) and
// write the 200. The datagrams, and the client's digest answers, are made
// before the timing starts; sending is left out (the answers are taken
// off the socket writer's queue, not sent).
func BenchmarkRegister(b *testing.B) {
	g, _ := newTestGateway(b)
	w := &udpWriter{out: make(chan outDatagram, 4), bufs: &g.fast.bufs, closed: g.closed}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5061}
	raw := func(i, cseq int, authz string) []byte {
		user := fmt.Sprintf("user%04d", i%1000)
		return fmt.Appendf(nil, "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\nCall-ID: %d@bench\r\n"+
			"CSeq: %d REGISTER\r\nContact: <sip:%s@127.0.0.1:5061;transport=UDP>\r\nExpires: 3600\r\n%sContent-Length: 0\r\n\r\n",
			i, cseq, user, i, user, i, cseq, user, authz)
	}
	// serve runs one datagram through the fast path and returns the answer.
	serve := func(data []byte) []byte {
		g.fastServe(udpJob{data: data, conn: w, to: to})
		d := <-w.out
		out := bytes.Clone(d.buf.Bytes())
		g.fast.bufs.Put(d.buf)
		return out
	}
	type pair struct{ first, second []byte }
	pairs := make([]pair, b.N)
	parser := sip.NewParser()
	for i := range pairs {
		first := raw(i, 1, "")
		m, err := parser.ParseSIP(serve(first))
		if err != nil {
			b.Fatal(err)
		}
		ch, err := icdigest.ParseChallenge(m.(*sip.Response).GetHeader("WWW-Authenticate").Value())
		if err != nil {
			b.Fatal(err)
		}
		cr, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:example.test",
			Username: fmt.Sprintf("user%04d", i%1000), Password: "secret", Count: 1})
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = pair{first, raw(i, 2, "Authorization: "+cr.String()+"\r\n")}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range pairs {
		g.fastServe(udpJob{data: pairs[i].first, conn: w, to: to})
		d := <-w.out
		g.fast.bufs.Put(d.buf)
		g.fastServe(udpJob{data: pairs[i].second, conn: w, to: to})
		d = <-w.out
		if !bytes.HasPrefix(d.buf.Bytes(), []byte("SIP/2.0 200 ")) {
			b.Fatalf("registration %d: %q", i, d.buf.Bytes())
		}
		g.fast.bufs.Put(d.buf)
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
