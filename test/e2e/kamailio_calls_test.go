package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// callCase is one call scenario pair: a caller scenario, the callee
// scenarios registered as contacts of one user (none: the user has no
// binding), the number of calls, and lines the caller's and the callees' message traces must hold.
type callCase struct {
	name    string
	uac     string
	uas     []string
	calls   int
	uacWant []string
	uasWant []string // in every callee's trace (a forked call_uas_ring.xml: its CANCEL)
}

// callCases are the pairs of test/sipp/call_*.xml, in the order a reader
// meets them (a test against Tandem can run the same pairs).
func callCases() []callCase {
	return []callCase{
		{name: "basic", uac: "call_uac.xml", uas: []string{"call_uas.xml"}, calls: 3,
			uacWant: []string{"SIP/2.0 407 ", "Proxy-Authorization: Digest", "BYE "}, uasWant: []string{"SIP/2.0 180 Ringing", "BYE "}},
		{name: "callee-hangs-up", uac: "call_uac_wait_bye.xml", uas: []string{"call_uas_bye.xml"}, calls: 3,
			uacWant: []string{"CSeq: 1 BYE"}, uasWant: []string{"CSeq: 1 BYE"}},
		{name: "busy", uac: "call_uac_busy.xml", uas: []string{"call_uas_busy.xml"}, calls: 3,
			uacWant: []string{"SIP/2.0 486 Busy Here", "CSeq: 2 ACK"}},
		{name: "caller-cancels", uac: "call_uac_cancel.xml", uas: []string{"call_uas_ring.xml"}, calls: 3,
			uacWant: []string{"CSeq: 2 CANCEL", "SIP/2.0 487 "}, uasWant: []string{"CANCEL sip:", "SIP/2.0 487 "}},
		// Kamailio's no-answer timer is tm's fr_inv_timer (FR_INV_TIMER=3000
		// below), and proxy.cfg's failure_route turns its 408 into 480.
		{name: "no-answer", uac: "call_uac_noanswer.xml", uas: []string{"call_uas_ring.xml"}, calls: 1,
			uacWant: []string{"SIP/2.0 480 "}, uasWant: []string{"CANCEL sip:"}},
		{name: "unregistered", uac: "call_uac_unregistered.xml", calls: 2,
			uacWant: []string{"SIP/2.0 480 "}},
		{name: "caller-holds", uac: "call_uac_hold.xml", uas: []string{"call_uas_hold.xml"}, calls: 2,
			uacWant: []string{"a=recvonly", "CSeq: 4 INVITE"}, uasWant: []string{"a=sendonly", "CSeq: 5 BYE"}},
		{name: "callee-holds", uac: "call_uac_held.xml", uas: []string{"call_uas_hold_b.xml"}, calls: 2,
			uacWant: []string{"a=sendonly", "CSeq: 2 INVITE", "CSeq: 3 BYE"}, uasWant: []string{"a=recvonly"}},
		// Two contacts of one user: the call forks, call_uas_answer_late.xml answers
		// and the proxy CANCELs call_uas_ring.xml.
		{name: "forking", uac: "call_uac.xml", uas: []string{"call_uas_answer_late.xml", "call_uas_ring.xml"}, calls: 2,
			uacWant: []string{"SIP/2.0 200 OK"}},
		{name: "100rel-prack", uac: "call_uac_100rel.xml", uas: []string{"call_uas_100rel.xml"}, calls: 2,
			uacWant: []string{"RSeq: 1", "CSeq: 3 PRACK"}, uasWant: []string{"RAck: 1 "}},
		{name: "delayed-offer", uac: "call_uac_delayed.xml", uas: []string{"call_uas_delayed.xml"}, calls: 2,
			uacWant: []string{"CSeq: 2 ACK"}, uasWant: []string{"m=audio"}},
	}
}

// The call scenarios and peers.RunCall are checked against a proxy this
// project did not write: Kamailio 5.6 with test/bench/kamailio/proxy.cfg
// (the call benchmark's reference), a stateful proxy with Record-Route and
// the dialog module. A pair that fails here is wrong itself, whatever Tandem
// does. Kamailio runs 2 workers, so 180/200 and 200/487 may be relayed out
// of order: the scenarios must tolerate that.
func TestCallScenariosAgainstKamailio(t *testing.T) {
	if !peers.HaveSipp() {
		peers.Missing(t, "sipp not installed")
	}
	if _, err := peers.KamailioBinary(); err != nil {
		peers.Missing(t, "%v", err)
	}
	root, err := peers.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tandem-e2e-kamailio-calls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TANDEM_E2E_KEEP") != "" {
			t.Logf("work directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	server := fmt.Sprintf("127.0.0.1:%d", port)
	k, err := peers.StartKamailio(peers.KamailioOptions{
		Config: root + "/test/bench/kamailio/proxy.cfg",
		Listen: "udp:" + server, Children: 2, Realm: domain, Password: "secret",
		ShmMB: 64, PkgMB: 8, LogDir: dir,
		Defines: []string{"FR_INV_TIMER=3000"},
	}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop(5 * time.Second)

	caller := peers.Cred{User: "user0001", Password: "secret"}
	start := time.Now()
	for i, c := range callCases() {
		t.Run(c.name, func(t *testing.T) {
			callee := peers.UserName(10 + i)
			var uas []peers.CallSipp
			for j, sc := range c.uas {
				ip := fmt.Sprintf("127.0.0.%d", 21+i)
				p, err := peers.FreePort(ip)
				if err != nil {
					t.Fatal(err)
				}
				addr := fmt.Sprintf("%s:%d", ip, p)
				name := fmt.Sprintf("%s-uas%d", c.name, j)
				if _, err := peers.RegisterContact(dir, name+"-reg", server, domain,
					peers.Cred{User: callee, Password: "secret"}, addr, "127.0.0.1"); err != nil {
					t.Fatalf("%v\n--- kamailio\n%s", err, k.Tail(20))
				}
				uas = append(uas, peers.CallSipp{Name: name, Dir: dir, Scenario: sc, Server: server,
					Addr: addr, Calls: c.calls, Timeout: 30 * time.Second, TraceMsg: true})
			}
			p, err := peers.FreePort("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			uac := peers.CallSipp{Name: c.name + "-uac", Dir: dir, Scenario: c.uac, Server: server,
				Addr: fmt.Sprintf("127.0.0.1:%d", p), Calls: c.calls, Rate: 10, Timeout: 30 * time.Second,
				Callee: callee, Domain: domain, Callers: []peers.Cred{caller}, TraceMsg: true}
			res, err := peers.RunCall(uac, 10*time.Second, uas...)
			if err != nil {
				t.Fatalf("%v\n--- kamailio\n%s", err, k.Tail(20))
			}
			if err := res.Check(); err != nil {
				t.Fatalf("%s against Kamailio:\n%v\n--- kamailio\n%s", c.name, err, k.Tail(20))
			}
			checkTrace(t, res.Caller, c.uacWant)
			for _, r := range res.Callees {
				if strings.Contains(r.Run.Scenario, "call_uas_ring") && c.name == "forking" {
					checkTrace(t, r, []string{"CANCEL sip:"})
					continue
				}
				checkTrace(t, r, c.uasWant)
			}
		})
	}
	t.Logf("all pairs in %v", time.Since(start).Round(time.Millisecond))
}

// checkTrace fails the test unless the sipp run's message trace holds every
// line of want.
func checkTrace(t *testing.T, res *peers.SippResult, want []string) {
	t.Helper()
	msgs := peers.TailFile(res.MsgFile, 1000000)
	for _, w := range want {
		if !strings.Contains(msgs, w) {
			t.Errorf("%s: the message trace lacks %q\n%s", res.Run.Name, w, res.Diagnostics())
		}
	}
}
