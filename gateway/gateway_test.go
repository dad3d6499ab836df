package gateway

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"

	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/gateway/digest"
	"github.com/tandemswitch/tandem/internal/clock"
)

type testGW struct {
	g     *Gateway
	addr  string
	store *memstore.Store
	conn  *net.UDPConn
	seq   atomic.Int64
}

// newTestGateway builds a gateway over a real registry on the in-memory
// store (max 3 contacts per AOR; users alice and bob, and user0000..user0999
// for the benchmark, all with password "secret"), without binding sockets.
// Everything is stopped when the test ends.
func newTestGateway(tb testing.TB) (*Gateway, *memstore.Store) {
	tb.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st := memstore.New()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	reg := registrar.NewRegistry(sys, registrar.Config{
		Store: st, Clock: clock.Real{}, Node: "n1", Logger: quiet,
		Limits: registrar.Limits{MinExpires: 60, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 3},
	})
	tb.Cleanup(reg.Stop)
	auth, err := digest.New(digest.Options{Realm: "example.test", MaxTrackedNonces: 1 << 22, Users: func(u, alg string) (string, bool) {
		if u != "alice" && u != "bob" && !strings.HasPrefix(u, "user") {
			return "", false
		}
		return icdigestHA1(u, alg)
	}})
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(Options{
		Listen: []string{"udp:127.0.0.1:0"}, Domain: "example.test",
		MaxMessageBytes: 4096, MaxHeaders: 30, Auth: auth, Registrar: reg, Logger: quiet,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return g, st
}

func startGateway(t *testing.T) *testGW { t.Helper(); return startGatewayWith(t, nil) }

// startGatewayWith is startGateway with a hook that configures the
// gateway before it starts serving.
func startGatewayWith(t *testing.T, setup func(*Gateway)) *testGW {
	t.Helper()
	g, st := newTestGateway(t)
	if setup != nil {
		setup(g)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(g.Addrs()[0], "udp:")
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &testGW{g: g, addr: addr, store: st, conn: conn}
}

// icdigestHA1 computes the HA1 for password "secret" with the client-side
// library, independent of our server code.
func icdigestHA1(user, alg string) (string, bool) {
	h := newHash(alg)
	h.Write([]byte(user + ":example.test:secret"))
	return fmt.Sprintf("%x", h.Sum(nil)), true
}

// request renders a request from a start line and header lines.
func (tg *testGW) request(method, ruri string, extra ...string) string {
	n := tg.seq.Add(1)
	local := tg.conn.LocalAddr().String()
	hdrs := []string{
		fmt.Sprintf("%s %s SIP/2.0", method, ruri),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-test-%d;rport", local, n),
		"Max-Forwards: 70",
		"From: <sip:alice@example.test>;tag=f1",
		"To: <sip:alice@example.test>",
		"Call-ID: call-1@test",
		fmt.Sprintf("CSeq: %d %s", n, method),
	}
	hdrs = append(hdrs, extra...)
	return strings.Join(hdrs, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}

// exchange sends raw and returns the first final response.
func (tg *testGW) exchange(t *testing.T, raw string) *sip.Response {
	t.Helper()
	dst, _ := net.ResolveUDPAddr("udp", tg.addr)
	if _, err := tg.conn.WriteToUDP([]byte(raw), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		_ = tg.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := tg.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no response to:\n%s\nerr: %v", raw, err)
		}
		msg, err := sip.NewParser().ParseSIP(buf[:n])
		if err != nil {
			t.Fatalf("unparsable response %q: %v", buf[:n], err)
		}
		res, ok := msg.(*sip.Response)
		if ok && res.StatusCode >= 200 {
			return res
		}
	}
}

// register performs a challenge/response REGISTER as user with password
// and the given extra headers; it returns the final response.
func (tg *testGW) register(t *testing.T, user, password string, extra ...string) *sip.Response {
	t.Helper()
	to := []string{"To: <sip:" + user + "@example.test>"}
	first := strings.Replace(tg.request("REGISTER", "sip:example.test", extra...), "To: <sip:alice@example.test>", to[0], 1)
	res := tg.exchange(t, first)
	if res.StatusCode != 401 {
		return res
	}
	ch, err := icdigest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cr, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:example.test", Username: user, Password: password, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(tg.request("REGISTER", "sip:example.test", append(extra, "Authorization: "+cr.String())...),
		"To: <sip:alice@example.test>", to[0], 1)
	return tg.exchange(t, second)
}

func TestOptionsAndUnsupportedMethods(t *testing.T) {
	tg := startGateway(t)
	res := tg.exchange(t, tg.request("OPTIONS", "sip:example.test"))
	if res.StatusCode != 200 || !strings.Contains(res.GetHeader("Allow").Value(), "REGISTER") {
		t.Fatalf("OPTIONS: %v", res.Short())
	}
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		t.Fatal("response without To tag")
	}
	if res := tg.exchange(t, tg.request("SUBSCRIBE", "sip:example.test")); res.StatusCode != 405 || res.GetHeader("Allow") == nil {
		t.Fatalf("SUBSCRIBE: %v", res.Short())
	}
	if res := tg.exchange(t, tg.request("FROBNICATE", "sip:example.test")); res.StatusCode != 501 || res.GetHeader("Allow") == nil {
		t.Fatalf("FROBNICATE: %v", res.Short())
	}
}

func TestMalformedRequestsGetClearAnswers(t *testing.T) {
	tg := startGateway(t)
	cases := []struct {
		name string
		raw  string
		code int
	}{
		{"unknown Require", tg.request("OPTIONS", "sip:example.test", "Require: foo, 100rel"), 420},
		{"missing Call-ID", strings.Replace(tg.request("OPTIONS", "sip:example.test"), "Call-ID: call-1@test\r\n", "", 1), 400},
		{"missing From", strings.Replace(tg.request("OPTIONS", "sip:example.test"), "From: <sip:alice@example.test>;tag=f1\r\n", "", 1), 400},
		{"CSeq method mismatch", strings.Replace(tg.request("OPTIONS", "sip:example.test"), " OPTIONS\r\n", " INVITE\r\n", 1), 400},
		{"too many headers", tg.request("OPTIONS", "sip:example.test", strings.Repeat("X-Pad: 1\r\n", 40)+"X-End: 1"), 400},
		{"too large", tg.request("OPTIONS", "sip:example.test", "X-Big: "+strings.Repeat("a", 5000)), 513},
		{"bad Expires", tg.request("REGISTER", "sip:example.test", "Contact: <sip:alice@10.0.0.1>", "Expires: soon"), 401},
		{"foreign domain", tg.request("REGISTER", "sip:elsewhere.test", "Contact: <sip:alice@10.0.0.1>"), 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tg.exchange(t, tc.raw)
			if res.StatusCode != tc.code || res.Reason == "" {
				t.Fatalf("got %d %q, want %d with a reason", res.StatusCode, res.Reason, tc.code)
			}
			if tc.code == 420 && res.GetHeader("Unsupported") == nil {
				t.Fatal("420 without Unsupported")
			}
		})
	}
	// Garbage must not stop the server.
	dst, _ := net.ResolveUDPAddr("udp", tg.addr)
	for _, junk := range []string{"\x00\x01\x02", "INVITE\r\n\r\n", "SIP/2.0 200 OK\r\n\r\n", strings.Repeat("A", 3000)} {
		_, _ = tg.conn.WriteToUDP([]byte(junk), dst)
	}
	if res := tg.exchange(t, tg.request("OPTIONS", "sip:example.test")); res.StatusCode != 200 {
		t.Fatalf("after garbage: %v", res.Short())
	}
}

func TestRegisterFlow(t *testing.T) {
	tg := startGateway(t)
	// No credentials: 401 with one challenge per algorithm.
	res := tg.exchange(t, tg.request("REGISTER", "sip:example.test", "Contact: <sip:alice@10.0.0.1:5060>", "Expires: 600"))
	if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 2 {
		t.Fatalf("unauthenticated REGISTER: %v with %d challenges", res.Short(), len(res.GetHeaders("WWW-Authenticate")))
	}
	res = tg.register(t, "alice", "secret", "Contact: <sip:alice@10.0.0.1:5060>;q=0.5", "Expires: 600")
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res.Short())
	}
	c := res.GetHeader("Contact")
	if c == nil || !strings.Contains(c.Value(), "expires=600") || !strings.Contains(c.Value(), "q=0.5") {
		t.Fatalf("200 Contact = %v", c)
	}
	if tg.store.Head() != 1 {
		t.Fatalf("store head %d after one registration", tg.store.Head())
	}
	// Wrong password and unknown users: 403, after the same 401.
	if res := tg.register(t, "alice", "wrong", "Contact: <sip:alice@10.0.0.1:5060>"); res.StatusCode != 403 {
		t.Fatalf("wrong password: %v", res.Short())
	}
	if res := tg.register(t, "mallory", "secret", "Contact: <sip:m@10.0.0.1:5060>"); res.StatusCode != 403 {
		t.Fatalf("unknown user: %v", res.Short())
	}
	// Too brief: 423 with Min-Expires.
	res = tg.register(t, "alice", "secret", "Contact: <sip:alice@10.0.0.2:5060>", "Expires: 30")
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "60" {
		t.Fatalf("too brief: %v", res.Short())
	}
	// Bad q-value: 400 naming it.
	res = tg.register(t, "alice", "secret", "Contact: <sip:alice@10.0.0.2:5060>;q=2")
	if res.StatusCode != 400 || !strings.Contains(res.Reason, "q-value") {
		t.Fatalf("bad q: %v", res.Short())
	}
	// Authenticated as bob, registering alice's AOR: 403.
	bobForAlice := tg.register(t, "bob", "secret", "Contact: <sip:bob@10.0.0.3:5060>")
	if bobForAlice.StatusCode != 200 {
		t.Fatalf("bob's own AOR: %v", bobForAlice.Short())
	}
	if tg.store.Head() != 2 {
		t.Fatalf("refused requests wrote events: head %d", tg.store.Head())
	}
	// Contact: * with Expires: 0 removes all of alice's bindings.
	res = tg.register(t, "alice", "secret", "Contact: *", "Expires: 0")
	if res.StatusCode != 200 || res.GetHeader("Contact") != nil {
		t.Fatalf("wildcard removal: %v", res.Short())
	}
}

func FuzzParseQ(f *testing.F) {
	for _, s := range []string{"0", "1", "0.5", "1.000", "0.125", "1.001", "0.", ".5", "00", "0.1234", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseQ(s)
		if err == nil && (q < 0 || q > 1000) {
			t.Fatalf("parseQ(%q) = %d", s, q)
		}
		if err == nil {
			back, err := parseQ(formatQ(q))
			if err != nil || back != q {
				t.Fatalf("formatQ(%d) = %q does not round-trip", q, formatQ(q))
			}
		}
	})
}

func FuzzParseExpires(f *testing.F) {
	for _, s := range []string{"0", "3600", "4294967296", "99999999999", "-1", " 60 ", "6e1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseExpires(s)
		if err == nil && (n < 0 || n > maxExpires) {
			t.Fatalf("parseExpires(%q) = %d", s, n)
		}
	})
}

// FuzzRequest runs whatever sipgo's parser makes of arbitrary bytes through
// our validation and REGISTER parsing: no input may panic them.
func FuzzRequest(f *testing.F) {
	g := &Gateway{opts: Options{Domain: "example.test", MaxMessageBytes: 4096, MaxHeaders: 30}, ours: map[string]bool{"example.test": true}}
	f.Add([]byte("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:a@example.test>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@1.2.3.4>;expires=60;q=0.5, *\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nRequire: a,,b\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Add([]byte("REGISTER sip:example.test SIP/2.0\r\nContact: <sip:a@>;q=;expires=\r\nTo: <sip:@example.test>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		if g.validate(req, 0) != nil || req.Method != sip.REGISTER {
			return
		}
		_, _ = g.registerCommand(req)
		_ = g.uriMatches("sip:example.test", &req.Recipient)
	})
}

func newHash(alg string) interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
} {
	if alg == "SHA-256" {
		return sha256.New()
	}
	return md5.New()
}

// TestReadFilterFastPathBoundaries: REGISTER, OPTIONS, BYE, CANCEL, ACK,
// responses and INVITEs that can only be challenged, on our own UDP
// sockets, take the fast path; everything else (an INVITE with credentials
// or a To tag, INFO) is handed back to sipgo untouched, and the filter
// never fails (an error would stop sipgo's read loop). Unparsable
// fast-path datagrams are dropped without harm.
func TestReadFilterFastPathBoundaries(t *testing.T) {
	tg := startGateway(t)
	local, _ := net.ResolveUDPAddr("udp", tg.addr)
	remote := tg.conn.LocalAddr()
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: local, RemoteAddr: remote}
	invite := strings.Replace(tg.request("OPTIONS", "sip:example.test"), "OPTIONS", "INVITE", -1)
	withHeader := func(h string) []byte {
		return []byte(strings.Replace(invite, "Content-Length:", h+"\r\nContent-Length:", 1))
	}
	for name, data := range map[string][]byte{
		"INVITE with credentials": withHeader(`proxy-authorization: Digest username="alice"`),
		"INVITE in a dialog":      []byte(strings.Replace(invite, "\r\nTo: <sip:alice@example.test>", "\r\nt: <sip:alice@example.test>;x=1;tag=9", 1)),
		"INFO":                    []byte(strings.Replace(invite, "INVITE", "INFO", -1)),
	} {
		if !strings.Contains(string(data), "tag=9") && strings.Contains(name, "dialog") {
			t.Fatalf("the test's To header was not rewritten: %q", data)
		}
		out, err := tg.g.readFilter(props, data)
		if err != nil || string(out) != string(data) {
			t.Errorf("%s: filter returned %q, %v; want the datagram back", name, out, err)
		}
	}
	// What the workers answer to these goes to a port nobody reads.
	away := props
	away.RemoteAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for name, data := range map[string][]byte{
		"INVITE to be challenged": []byte(invite),
		"INVITE with a URI tag":   []byte(strings.Replace(invite, "\r\nTo: <sip:alice@example.test>", "\r\nTo: <sip:alice@example.test;tag=1>", 1)),
		"ACK":                     []byte(strings.Replace(invite, "INVITE", "ACK", -1)),
		"response":                []byte("SIP/2.0 200 OK\r\n\r\n"),
	} {
		if out, err := tg.g.readFilter(away, data); err != nil || len(out) != 0 {
			t.Errorf("%s should be taken: %q, %v", name, out, err)
		}
	}
	other := props
	other.LocalAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	opts := []byte(tg.request("OPTIONS", "sip:example.test"))
	if out, err := tg.g.readFilter(other, opts); err != nil || len(out) == 0 {
		t.Fatalf("a socket that is not ours: %q, %v", out, err)
	}
	if out, err := tg.g.readFilter(props, opts); err != nil || len(out) != 0 {
		t.Fatalf("OPTIONS on our socket should be taken: %q, %v", out, err)
	}
	// Unparsable or Via-less fast-path datagrams are dropped; the server
	// still answers afterwards (the answer to the OPTIONS above is drained
	// first, so that it cannot stand in for the next one).
	buf := make([]byte, 65535)
	_ = tg.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := tg.conn.ReadFromUDP(buf); err != nil {
		t.Fatalf("no answer to the OPTIONS the fast path took: %v", err)
	}
	for _, junk := range []string{
		"REGISTER \x00\x01 nonsense\r\n\r\n",
		strings.Replace(tg.request("OPTIONS", "sip:example.test"), "Via:", "X-Via:", 1),
	} {
		w := newUDPWriter(tg.conn, &tg.g.fast.bufs, tg.g.closed, func(net.Addr, error) {})
		tg.g.fastServe(udpJob{data: []byte(junk), conn: w, to: remote})
	}
	if res := tg.exchange(t, tg.request("OPTIONS", "sip:example.test")); res.StatusCode != 200 {
		t.Fatalf("after junk: %v", res.Short())
	}
}

// TestStartReturnsOnceUDPIsServed: a request Tandem sends right after
// Start (a recovered call's CANCEL) must find sipgo's connection for the
// UDP socket; before Start waited for it, sipgo sometimes had not added
// the socket to its pool yet and tried to bind the address a second time.
func TestStartReturnsOnceUDPIsServed(t *testing.T) {
	for i := range 20 {
		g, _ := newTestGateway(t)
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		addr := strings.TrimPrefix(g.Addrs()[0], "udp:")
		if g.ua.TransportLayer().Pool("udp").Get(addr) == nil {
			t.Fatalf("start %d: udp:%s not in sipgo's pool when Start returned", i, addr)
		}
		_ = g.Shutdown(context.Background())
	}
}
