package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// Calls through Tandem between sipp callers (test/sipp/call_uac*.xml) and
// sipp callees (call_uas*.xml) whose addresses are registered as contacts:
// Tandem challenges the caller (407), looks the callee up, and runs a B2BUA
// between the two. Every scenario was checked against Kamailio's stateful
// proxy first (kamailio_calls_test.go), so a failure here is Tandem's.

// callUsers: user0001.. are callers, the callees are named per test.
func callUsers() []peers.Cred {
	users := peers.Users(100, "secret")
	for _, n := range []string{"bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kate", "load", "mallory", "nina", "oscar", "olivia", "peggy", "quentin", "rupert", "sybil"} {
		users = append(users, peers.Cred{User: n, Password: "secret"})
	}
	return users
}

// callee registers a fresh address as a contact of user and returns the
// callee sipp for scenario there.
func (h *harness) callee(user, scenario string, calls int) peers.CallSipp {
	h.t.Helper()
	return h.calleeOn("", user, scenario, calls)
}

// calleeOn is callee listening on a transport: "" for UDP, "t1" for TCP
// (its registered contact then says transport=tcp).
func (h *harness) calleeOn(transport, user, scenario string, calls int) peers.CallSipp {
	h.t.Helper()
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		h.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	contact := addr
	if transport == "t1" {
		contact += ";transport=tcp"
	}
	name := fmt.Sprintf("uas-%s-%d", user, port)
	if _, err := peers.RegisterContact(h.dir, "reg-"+name, h.sipAddr, domain, peers.Cred{User: user, Password: "secret"}, contact, "127.0.0.1"); err != nil {
		h.t.Fatal(err)
	}
	return peers.CallSipp{Name: name, Dir: h.dir, Scenario: scenario, Server: h.sipAddr, Addr: addr, Calls: calls, TraceMsg: true, Transport: transport}
}

// caller is a caller sipp calling callee with scenario, as user0001.
func (h *harness) caller(callee, scenario string) peers.CallSipp {
	h.t.Helper()
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		h.t.Fatal(err)
	}
	return peers.CallSipp{Name: fmt.Sprintf("uac-%s-%d", callee, port), Dir: h.dir, Scenario: scenario, Server: h.sipAddr,
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Calls: 1, Callee: callee, Domain: domain,
		Callers: []peers.Cred{{User: "user0001", Password: "secret"}}, TraceMsg: true}
}

// call runs one call and fails the test unless every sipp succeeded.
func (h *harness) call(caller peers.CallSipp, callees ...peers.CallSipp) peers.CallResult {
	h.t.Helper()
	res, err := peers.RunCall(caller, 10*time.Second, callees...)
	for _, r := range res.All() {
		if r != nil {
			h.runs = append(h.runs, r)
		}
	}
	if err != nil {
		h.t.Fatalf("call: %v", err)
	}
	if err := res.Check(); err != nil {
		h.t.Fatal(err)
	}
	return res
}

// noLiveCalls waits (bounded) until Tandem lists no live call.
func (h *harness) noLiveCalls() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls, err := h.tandem.Calls()
		if err == nil && len(calls) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("calls still live: %+v (err %v)", calls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCalls(t *testing.T) {
	h := newHarness(t, callUsers(), func(c *peers.TandemConfig) { c.NoAnswerTimeout = 2 })
	h.start()

	t.Run("BYE from the caller", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("bob", "call_uac.xml"), h.callee("bob", "call_uas.xml", 1))
		h.noLiveCalls()
	})
	t.Run("BYE from the callee", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("carol", "call_uac_wait_bye.xml"), h.callee("carol", "call_uas_bye.xml", 1))
		h.noLiveCalls()
	})
	t.Run("busy", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("dave", "call_uac_busy.xml"), h.callee("dave", "call_uas_busy.xml", 1))
	})
	t.Run("no answer", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("erin", "call_uac_noanswer.xml"), h.callee("erin", "call_uas_ring.xml", 1))
	})
	t.Run("CANCEL before answer", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("frank", "call_uac_cancel.xml"), h.callee("frank", "call_uas_ring.xml", 1))
	})
	t.Run("CANCEL before answer, the caller over TCP", func(t *testing.T) {
		// One TCP connection (sipp -t t1) to the address UDP is served on
		// too: the 407, the 180, the CANCEL's 200 and the 487 all come
		// back on it, and the call, not sipgo, answers the CANCEL.
		h := h.sub(t)
		uac := h.caller("oscar", "call_uac_cancel.xml")
		uac.Transport = "t1"
		h.call(uac, h.callee("oscar", "call_uas_ring.xml", 1))
	})
	t.Run("BYE from the callee, the caller over TCP", func(t *testing.T) {
		// The callee's BYE reaches the caller as Tandem's BYE on the
		// caller's TCP connection (its Contact says transport=TCP); sipp
		// reads nothing else. That the BYE's Via says TCP is checked by
		// TestRequestsGoOutOnTheTransportTheirNextHopNames.
		h := h.sub(t)
		uac := h.caller("olivia", "call_uac_wait_bye.xml")
		uac.Transport = "t1"
		h.call(uac, h.callee("olivia", "call_uas_bye.xml", 1))
		h.noLiveCalls()
	})
	t.Run("hold and resume by the callee, the caller over TCP", func(t *testing.T) {
		h := h.sub(t)
		uac := h.caller("peggy", "call_uac_held.xml")
		uac.Transport = "t1"
		h.call(uac, h.callee("peggy", "call_uas_hold_b.xml", 1))
		h.noLiveCalls()
	})
	t.Run("a callee over TCP: BYE from the caller", func(t *testing.T) {
		// The callee's contact says transport=tcp: Tandem's INVITE, ACK and
		// BYE go to it on TCP.
		h := h.sub(t)
		h.call(h.caller("quentin", "call_uac.xml"), h.calleeOn("t1", "quentin", "call_uas.xml", 1))
		h.noLiveCalls()
	})
	t.Run("forking to a TCP and a UDP contact: the TCP one is cancelled on TCP", func(t *testing.T) {
		// The TCP callee's sipp (-t t1) listens on TCP only: its INVITE,
		// CANCEL and the ACK of its 487 can only reach it there.
		h := h.sub(t)
		h.call(h.caller("rupert", "call_uac.xml"), h.callee("rupert", "call_uas_answer_late.xml", 1), h.calleeOn("t1", "rupert", "call_uas_ring.xml", 1))
		h.noLiveCalls()
	})
	t.Run("forking to a TLS contact and a UDP one: nothing goes to the TLS one in the clear", func(t *testing.T) {
		// Tandem has no TLS listener: the contact saying transport=tls
		// gets no INVITE (before, it got one over UDP, in the clear), its
		// branch fails as a 503, and the UDP contact's answer wins.
		h := h.sub(t)
		tlsSide, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer tlsSide.Close()
		if _, err := peers.RegisterContact(h.dir, "reg-sybil-tls", h.sipAddr, domain, peers.Cred{User: "sybil", Password: "secret"},
			tlsSide.LocalAddr().String()+";transport=tls", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		h.call(h.caller("sybil", "call_uac.xml"), h.callee("sybil", "call_uas.xml", 1))
		h.noLiveCalls()
		buf := make([]byte, 65536)
		_ = tlsSide.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := tlsSide.ReadFrom(buf); err == nil {
			t.Fatalf("the TLS contact got %d bytes over UDP:\n%s", n, buf[:n])
		}
	})
	t.Run("unregistered callee", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("mallory", "call_uac_unregistered.xml"))
	})
	t.Run("hold and resume by the caller", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("grace", "call_uac_hold.xml"), h.callee("grace", "call_uas_hold.xml", 1))
	})
	t.Run("hold and resume by the callee", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("heidi", "call_uac_held.xml"), h.callee("heidi", "call_uas_hold_b.xml", 1))
	})
	t.Run("forking: one contact answers, the other is cancelled", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("ivan", "call_uac.xml"), h.callee("ivan", "call_uas_answer_late.xml", 1), h.callee("ivan", "call_uas_ring.xml", 1))
	})
	t.Run("delayed offer: the offer in the 200, the answer in the ACK", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("nina", "call_uac_delayed.xml"), h.callee("nina", "call_uas_delayed.xml", 1))
		h.noLiveCalls()
	})
	t.Run("reliable provisionals: 100rel and PRACK end to end", func(t *testing.T) {
		h := h.sub(t)
		h.call(h.caller("kate", "call_uac_100rel.xml"), h.callee("kate", "call_uas_100rel.xml", 1))
	})
	t.Run("hostile INVITEs during a call", func(t *testing.T) {
		h := h.sub(t)
		uac := h.caller("judy", "call_uac.xml")
		uac.Hold = 3 * time.Second
		done := make(chan struct{})
		var hostileErr error
		go func() {
			defer close(done)
			time.Sleep(500 * time.Millisecond)
			hostileErr = hostileInvites(h.sipAddr)
		}()
		h.call(uac, h.callee("judy", "call_uas.xml", 1))
		<-done
		if hostileErr != nil {
			t.Fatal(hostileErr)
		}
	})
	h.noLiveCalls()
	m, err := h.tandem.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tandem_calls_answered_total 13", `tandem_calls_failed_total{code="486"} 1`,
		`tandem_calls_failed_total{code="480"} 1`, `tandem_calls_failed_total{code="487"} 2`, "tandem_calls_active 0"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The call actors' answers are counted with the gateway's.
	for _, code := range []string{"100", "180", "487"} {
		if !regexp.MustCompile(`(?m)^tandem_sip_responses_total\{code="` + code + `"\} [1-9][0-9]*$`).MatchString(m) {
			t.Errorf("metrics lack a non-zero tandem_sip_responses_total for %s", code)
		}
	}
	// Every call event was fsynced: the store's WAL fsyncs are counted.
	if !regexp.MustCompile(`(?m)^tandem_store_fsync_duration_seconds_count [1-9][0-9]*$`).MatchString(m) {
		t.Error("metrics lack a non-zero tandem_store_fsync_duration_seconds_count")
	}
}

// sub is h for a subtest: same tandem, the subtest's t.
func (h *harness) sub(t *testing.T) *harness {
	c := *h
	c.t = t
	t.Cleanup(func() {
		if t.Failed() {
			c.dump()
		}
	})
	return &c
}

// hostileInvites sends malformed and hostile INVITEs over UDP and checks
// each gets its 4xx.
func hostileInvites(server string) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	inv := func(i int, extra string, body string, declared int) string {
		return fmt.Sprintf("INVITE sip:judy@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-hostile-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:user0002@example.test>;tag=h%d\r\nTo: <sip:judy@example.test>\r\n"+
			"Call-ID: hostile-%d@test\r\nCSeq: 1 INVITE\r\nContact: <sip:user0002@%s>\r\n%sContent-Length: %d\r\n\r\n%s",
			local, i, i, i, local, extra, declared, body)
	}
	sdp := "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	cases := []struct {
		name string
		raw  string
		code string
	}{
		{"missing Call-ID", strings.Replace(inv(1, "", "", 0), "Call-ID: hostile-1@test\r\n", "", 1), "400"},
		{"bad SDP length", inv(2, "Content-Type: application/sdp\r\n", sdp, len(sdp)+100), "400"},
		{"huge header", inv(3, "X-Huge: "+strings.Repeat("x", 20000)+"\r\n", "", 0), "513"},
		{"unknown Require", inv(4, "Require: x-unknown\r\n", "", 0), "420"},
		{"no credentials", inv(5, "", "", 0), "407"},
	}
	dst, _ := net.ResolveUDPAddr("udp", server)
	buf := make([]byte, 65535)
	for i, c := range cases {
		if _, err := conn.WriteToUDP([]byte(c.raw), dst); err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return fmt.Errorf("%s: no answer: %v", c.name, err)
			}
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			if strings.HasPrefix(line, "SIP/2.0 1") {
				continue
			}
			if !strings.HasPrefix(line, "SIP/2.0 "+c.code+" ") {
				if strings.Contains(string(buf[:n]), fmt.Sprintf("branch=z9hG4bK-hostile-%d;", i+1)) {
					return fmt.Errorf("%s: got %q, want %s", c.name, line, c.code)
				}
				continue // a retransmission of an earlier case's answer
			}
			break
		}
	}
	return nil
}

// An answered call survives a kill -9: after the restart it is listed, and
// the caller's BYE reaches the callee and is answered; "call ended" is
// persisted exactly once.
func TestCallSurvivesKill(t *testing.T) {
	h := newHarness(t, callUsers(), nil)
	h.start()
	uac := h.caller("bob", "call_uac.xml")
	uac.Hold = 6 * time.Second
	id := h.callAcrossKill(uac, h.callee("bob", "call_uas.xml", 1), "answered", func(id string) {
		calls, err := h.tandem.Calls()
		if err != nil || len(calls) != 1 || calls[0].ID != id || calls[0].State != "answered" {
			t.Fatalf("after restart: %+v (%v)", calls, err)
		}
	})
	h.expectEnded(id, "CallEnded", 1)
}

// A call ringing when tandem is killed is ended cleanly after the restart:
// CANCEL to the callee, 487 to the caller, one CallFailed.
func TestRingingCallEndedAfterKill(t *testing.T) {
	h := newHarness(t, callUsers(), nil)
	h.start()
	id := h.callAcrossKill(h.caller("carol", "call_uac_ring_crash.xml"), h.callee("carol", "call_uas_ring.xml", 1), "ringing", nil)
	h.expectEnded(id, "CallFailed", 1)
}

// callAcrossKill runs a call, kills tandem (SIGKILL) once the call is in
// state, restarts it (then runs afterRestart, if any), and fails the test
// unless both sipps end well and no call is left live. It returns the
// call's id.
func (h *harness) callAcrossKill(uac, uas peers.CallSipp, state string, afterRestart func(id string)) string {
	h.t.Helper()
	var res peers.CallResult
	var err error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); res, err = peers.RunCall(uac, 15*time.Second, uas) }()
	id := h.waitCall(state)
	h.kill()
	h.start()
	if afterRestart != nil {
		afterRestart(id)
	}
	wg.Wait()
	for _, r := range res.All() {
		if r != nil {
			h.runs = append(h.runs, r)
		}
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		h.t.Fatal(err)
	}
	h.noLiveCalls()
	return id
}

// waitCall waits (bounded) for one live call in state and returns its id.
func (h *harness) waitCall(state string) string {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		calls, err := h.tandem.Calls()
		if err == nil && len(calls) == 1 && calls[0].State == state {
			return calls[0].ID
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no %s call: %+v (%v)", state, calls, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectEnded checks that call id's stream holds typ exactly n times.
func (h *harness) expectEnded(id, typ string, n int) {
	h.t.Helper()
	evs, err := h.tandem.CallEvents(id)
	if err != nil {
		h.t.Fatal(err)
	}
	got := 0
	var types []string
	for _, e := range evs {
		ty := strings.TrimPrefix(e.Type, "tandem.events.v1.")
		types = append(types, ty)
		if ty == typ {
			got++
		}
	}
	if got != n {
		h.t.Fatalf("%s %d times, want %d: %v", typ, got, n, types)
	}
}

// Load: 5,000 calls at 200 calls/s from 100 callers to one callee, every
// call held 1 s then hung up by the caller; no failed call, no unexpected
// message on either side.
func TestCallLoad(t *testing.T) {
	h := newHarness(t, callUsers(), nil)
	h.start()
	const calls, rate = 5000, 200
	uas := h.callee("load", "call_uas.xml", calls)
	uas.Timeout = 120 * time.Second
	uas.BuffSize = 4 << 20
	uas.TraceMsg = false
	uac := h.caller("load", "call_uac.xml")
	uac.Callers = peers.Users(100, "secret")
	uac.Calls, uac.Rate, uac.Limit = calls, rate, 1000
	uac.Hold = time.Second
	uac.Timeout = 120 * time.Second
	uac.BuffSize = 4 << 20
	uac.TraceMsg = false
	res, err := peers.RunCall(uac, 20*time.Second, uas)
	for _, r := range res.All() {
		if r != nil {
			h.runs = append(h.runs, r)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.All() {
		if _, ok := r.Stats["FailedUnexpectedMessage(C)"]; !ok || r.Unexpected != 0 {
			t.Errorf("%s: unexpected messages: %d (column present: %v)", r.Run.Name, r.Unexpected, ok)
		}
		if r.Retransmissions > 0 {
			t.Logf("%s: %d retransmissions", r.Run.Name, r.Retransmissions)
		}
	}
	h.noLiveCalls()
	m, err := h.tandem.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m, fmt.Sprintf("tandem_calls_answered_total %d\n", calls)) {
		t.Errorf("metrics: want %d answered calls", calls)
	}
}
