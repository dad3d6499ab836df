package call

// Recorded call histories: the events this actor writes for the calls an
// auditor most needs to read back, kept as fixtures under
// projections/replay/testdata (events/history format) for the replay
// golden tests. The test checks that the fixtures are still what the actor
// writes; after a change that is meant, re-record them with
//
//	go test ./actors/call -run TestRecordedHistories -record
//
// and review the ladders that change (go test ./projections/replay -update).

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/history"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

var record = flag.Bool("record", false, "rewrite the recorded call histories in projections/replay/testdata")

const historyDir = "../../projections/replay/testdata"

// inDialog builds a request in the call's dialog from the caller (side
// "a") or from the callee on B leg 1 (side "b"), with an SDP body when sdp
// is not empty.
func inDialog(t *testing.T, id, side, method string, cseq uint32, branch, sdp string) *sip.Request {
	t.Helper()
	var raw, src string
	if side == "a" {
		raw = fmt.Sprintf("%s sip:%s@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=%s\r\n"+
			"From: <sip:alice@example.test>;tag=fa\r\nTo: <sip:bob@example.test>;tag=%s\r\nCall-ID: ca@10.1.1.1\r\n",
			method, ALegTag(id), branch, ALegTag(id))
		src = "10.1.1.1:5070"
	} else {
		tag := BLegTag(id, 1)
		raw = fmt.Sprintf("%s sip:%s@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=%s\r\n"+
			"From: <sip:bob@example.test>;tag=tb\r\nTo: <sip:alice@example.test>;tag=%s\r\nCall-ID: %s\r\n",
			method, tag, branch, tag, tag)
		src = "10.2.2.2:5080"
	}
	raw += fmt.Sprintf("CSeq: %d %s\r\n", cseq, method)
	if sdp != "" {
		raw += "Content-Type: application/sdp\r\n"
	}
	raw += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(sdp), sdp)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource(src)
	return req
}

// send delivers an in-dialog request and waits until it is answered (an
// ACK is only delivered).
func (r *rig) send(id, side string, req *sip.Request) {
	r.t.Helper()
	if req.IsAck() {
		r.deliver(id, &InDialog{Req: req, Side: side})
		return
	}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: req, Tx: &fakeTx{}, Side: side, Leg: 1, Done: done})
	<-done
}

func (r *rig) waitEvents(id string, n int) {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%d events", n), func() bool { return len(r.types(id)) == n })
}

// ring dials one callee and lets it ring 80 ms later.
func (r *rig) ring() (*Invite, string, *sip.Request, func(*sip.Response, error)) {
	inv, _, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	r.clk.Advance(80 * time.Millisecond)
	ons[0](respond(binv[0], 180, "Ringing", "tb", false), nil)
	r.waitEvents(id, 3)
	return inv, id, binv[0], ons[0]
}

// talk rings one callee, which answers 4 s later; the caller ACKs.
func (r *rig) talk() string {
	inv, id, binv, on := r.ring()
	r.clk.Advance(4 * time.Second)
	on(respond(binv, 200, "OK", "tb", true), nil)
	<-inv.Done
	r.clk.Advance(20 * time.Millisecond)
	r.send(id, "a", inDialog(r.t, id, "a", "ACK", 2, "z9hG4bKack", ""))
	return id
}

// hangUp sends, after a while, a BYE of cseq and branch from side; then
// the call has n events.
func (r *rig) hangUp(id, side string, after time.Duration, cseq uint32, branch string, n int) {
	r.t.Helper()
	r.clk.Advance(after)
	r.send(id, side, inDialog(r.t, id, side, "BYE", cseq, branch, ""))
	r.waitEvents(id, n)
}

// restartOn stops r's node and, down later, starts node on what its
// store kept and activates call id there.
func (r *rig) restartOn(node string, down time.Duration, id string) *rig {
	r.t.Helper()
	r.m.Stop()
	r.clk.Advance(down)
	r2 := newRigOn(r.t, r.st.(*memstore.Store).Reopened(), r.clk, node)
	if err := r2.m.Activate(id); err != nil {
		r.t.Fatal(err)
	}
	return r2
}

// legTerminated answers with 487, after a while, the INVITE of a ringing
// leg that Tandem cancelled; then the call has n events.
func (r *rig) legTerminated(id string, inv *sip.Request, on func(*sip.Response, error), after time.Duration, n int) {
	r.t.Helper()
	r.clk.Advance(after)
	on(respond(inv, 487, "Request Terminated", "tb", false), nil)
	r.waitEvents(id, n)
}

const sdpHold = "v=0\r\no=a 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"

// recordedCall is a scenario: the fixture's name and a run that returns
// the store it wrote.
type recordedCall struct {
	name string
	run  func(t *testing.T) events.Store
}

// hungUp is a call answered, then hung up by side ("a": the caller, "b":
// the callee) after talking, with a BYE of cseq and branch.
func hungUp(name, side string, talking time.Duration, cseq uint32, branch string) recordedCall {
	return recordedCall{name, func(t *testing.T) events.Store {
		r := newRig(t, memstore.New(), clock.NewFake(t0))
		id := r.talk()
		r.hangUp(id, side, talking, cseq, branch, 6)
		return r.st
	}}
}

func recordedCalls() []recordedCall {
	return []recordedCall{
		hungUp("call-answered-caller-bye", "a", 62*time.Second, 3, "z9hG4bKbye"),
		hungUp("call-answered-callee-bye", "b", 45*time.Second, 7, "z9hG4bKbb"),
		{"call-fork-leg2-wins", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			inv, _, id, binv, ons := r.dial(2, "sip:bob@10.2.2.2:5080", "sip:bob@10.3.3.3:5080")
			r.clk.Advance(60 * time.Millisecond)
			ons[0](respond(binv[0], 180, "Ringing", "t1", false), nil)
			r.waitEvents(id, 4)
			r.clk.Advance(30 * time.Millisecond)
			ons[1](respond(binv[1], 180, "Ringing", "t2", false), nil)
			r.waitEvents(id, 5)
			r.clk.Advance(5 * time.Second)
			ons[1](respond(binv[1], 200, "OK", "t2", true), nil)
			<-inv.Done
			waitFor(t, "CANCEL to leg 1", func() bool { c, _ := r.tp.sent("CANCEL"); return len(c) == 1 })
			r.clk.Advance(40 * time.Millisecond)
			ons[0](respond(binv[0], 487, "Request Terminated", "t1", false), nil)
			r.waitEvents(id, 8)
			r.send(id, "a", inDialog(t, id, "a", "ACK", 2, "z9hG4bKack", ""))
			r.hangUp(id, "a", 30*time.Second, 3, "z9hG4bKbye", 9)
			return r.st
		}},
		{"call-busy", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			inv, _, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
			r.clk.Advance(120 * time.Millisecond)
			ons[0](respond(binv[0], 486, "Busy Here", "tb", false), nil)
			<-inv.Done
			r.waitEvents(id, 4)
			return r.st
		}},
		{"call-cancelled", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			inv, id, binv, on := r.ring()
			r.clk.Advance(6 * time.Second)
			cancel := parseReq(t, "CANCEL sip:bob@example.test SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa1\n"+
				"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>\nCall-ID: ca@10.1.1.1\nCSeq: 2 CANCEL\nContent-Length: 0\n\n")
			cancel.SetSource("10.1.1.1:5070")
			done := make(chan struct{})
			r.deliver(id, &Cancel{Req: cancel, Tx: &fakeTx{}, Done: done})
			<-done
			<-inv.Done
			r.legTerminated(id, binv, on, 30*time.Millisecond, 5)
			return r.st
		}},
		{"call-no-answer", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			inv, id, binv, on := r.ring()
			r.clk.Advance(30 * time.Second) // the no-answer timer is 30 s
			<-inv.Done
			r.legTerminated(id, binv, on, 25*time.Millisecond, 5)
			return r.st
		}},
		{"call-hold-unhold", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			id := r.talk()
			for i, sdp := range []string{sdpHold, strings.Replace(sdpHold, "sendonly", "sendrecv", 1)} {
				r.clk.Advance(10 * time.Second)
				cseq := uint32(3 + i)
				req := inDialog(t, id, "a", "INVITE", cseq, fmt.Sprintf("z9hG4bKre%d", i), sdp)
				done := make(chan struct{})
				r.deliver(id, &InDialog{Req: req, Tx: &fakeTx{}, Side: "a", Done: done})
				var invs []*sip.Request
				var ons []func(*sip.Response, error)
				waitFor(t, "re-INVITE to B", func() bool { invs, ons = r.tp.sent("INVITE"); return len(invs) == 2+i })
				r.clk.Advance(50 * time.Millisecond)
				ons[1+i](respond(invs[1+i], 200, "OK", "tb", true), nil)
				<-done
				r.waitEvents(id, 7+2*i)
				r.send(id, "a", inDialog(t, id, "a", "ACK", cseq, fmt.Sprintf("z9hG4bKreack%d", i), ""))
			}
			r.hangUp(id, "a", 10*time.Second, 5, "z9hG4bKbye", 10)
			return r.st
		}},
		{"call-restart-answered", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			id := r.talk()
			r2 := r.restartOn("n2", 2*time.Minute, id)
			r2.hangUp(id, "b", 15*time.Second, 7, "z9hG4bKbb", 6)
			return r2.st
		}},
		{"call-delayed-offer-restart", func(t *testing.T) events.Store {
			// The node dies between the 2xx to the caller and the
			// caller's ACK, which brings the answer to the callee's
			// offer to the next activation.
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			id, binv, _ := r.delayedOffer()
			r2 := r.restartOn("n2", 300*time.Millisecond, id)
			r2.clk.Advance(30 * time.Millisecond)
			r2.deliver(id, delayedAck(t, id, "z9hG4bKd2"))
			r2.waitEvents(id, 5)
			r2.deliver(id, &Stray{Res: respond(binv, 200, "OK", "tb", true), Side: "b", Leg: 1})
			waitFor(t, "ACK to the callee", func() bool { return len(r2.tp.written("ACK")) == 1 })
			r2.hangUp(id, "b", 20*time.Second, 7, "z9hG4bKbb", 6)
			return r2.st
		}},
		{"call-restart-ringing", func(t *testing.T) events.Store {
			r := newRig(t, memstore.New(), clock.NewFake(t0))
			_, id, binv, _ := r.ring()
			r2 := r.restartOn("n2", 3*time.Second, id)
			r2.waitEvents(id, 4)
			r2.clk.Advance(40 * time.Millisecond)
			r2.deliver(id, &Stray{Res: respond(binv, 487, "Request Terminated", "tb", false), Side: "b", Leg: 1})
			r2.waitEvents(id, 5)
			return r2.st
		}},
	}
}

func TestRecordedHistories(t *testing.T) {
	for _, sc := range recordedCalls() {
		t.Run(sc.name, func(t *testing.T) {
			envs, err := sc.run(t).ReadAll(context.Background(), 1, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if err := history.CheckFile(filepath.Join(historyDir, sc.name+".events.json"), envs, *record); err != nil {
				t.Fatalf("%v\nIf the change is meant, re-record with -record and review the replay goldens.", err)
			}
		})
	}
}
