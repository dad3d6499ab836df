package call

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

// callerReinvite is the caller's re-INVITE without an offer (RFC 3261
// 14.1: the 2xx brings the offer, the ACK the answer), CSeq cseq.
func callerReinvite(t *testing.T, id string, cseq uint32) *InDialog {
	t.Helper()
	req := parseReq(t, "INVITE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKri"+fmt.Sprint(cseq)+"\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\n"+
		fmt.Sprintf("CSeq: %d INVITE\n", cseq)+"Contact: <sip:alice@10.1.1.1:5070>\nContent-Length: 0\n\n")
	return &InDialog{Req: req, Tx: &fakeTx{}, Side: "a", Done: make(chan struct{})}
}

// callerReinviteAck is the caller's ACK to the 2xx of its re-INVITE
// cseq, with the answer.
func callerReinviteAck(t *testing.T, id string, cseq uint32) *InDialog {
	t.Helper()
	req := parseReq(t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKra"+fmt.Sprint(cseq)+"\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\n"+
		fmt.Sprintf("CSeq: %d ACK\n", cseq)+"Content-Type: application/sdp\n"+
		fmt.Sprintf("Content-Length: %d\n\n%s", len(callerAnswer), sdpOffer))
	return &InDialog{Req: req, Side: "a"}
}

// okAcked delivers the caller's ACK for the call's 200 and waits until
// no timer is left (the 200's retransmission stopped).
func okAcked(r *rig, id string) {
	r.t.Helper()
	ack := parseReq(r.t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKack\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	r.deliver(id, &InDialog{Req: ack, Side: "a"})
	waitFor(r.t, "the ACK taken", func() bool { return r.clk.Pending() == 0 })
}

// closed waits at most 5 s for done to be closed.
func closed(t *testing.T, done chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the request's handling never ended")
	}
}

// A re-INVITE without an offer (RFC 3261 14.1) relayed from the caller
// survives a crash at any point of its exchange: the callee's 2xx (which
// carries the offer) is never ACKed without the caller's answer, and
// the answer reaches the callee. Before, the relay, the owed ACK and the
// caller's answer lived only in memory: after a restart the callee's
// retransmitted 2xx was ACKed empty, and a retransmitted re-INVITE was
// relayed again as a new one.
func TestDelayedOfferReinviteAfterRestart(t *testing.T) {
	const reCSeq = 4
	// start answers a call and relays the caller's re-INVITE without an
	// offer to the callee; it returns the rig, the call's id, the
	// re-INVITE sent to the callee with its response callback, and the
	// caller's transaction.
	start := func(t *testing.T) (*rig, string, *sip.Request, func(*sip.Response, error), *InDialog) {
		r := newRig(t, memstore.New(), clock.NewFake(t0))
		id, _, _ := r.answered()
		okAcked(r, id) // no retransmission of the call's 200 left
		re := callerReinvite(t, id, reCSeq)
		r.deliver(id, re)
		var invs []*sip.Request
		var ons []func(*sip.Response, error)
		waitFor(t, "re-INVITE to B", func() bool { invs, ons = r.tp.sent("INVITE"); return len(invs) == 2 })
		if len(invs[1].Body()) != 0 {
			t.Fatalf("the relayed re-INVITE has a body: %s", invs[1])
		}
		return r, id, invs[1], ons[1], re
	}
	// restart stops r's manager and starts another on its store, as after
	// a crash; the caller ACKs the call's 200 the new activation
	// retransmits (recover), as a caller does (RFC 3261 13.2.2.4).
	restart := func(r *rig, id string) *rig {
		r.m.Stop()
		r2 := newRig(r.t, r.st.(*memstore.Store).Reopened(), r.clk)
		okAcked(r2, id)
		return r2
	}
	// ackedWithAnswer waits for the n-th ACK to the callee and checks it
	// carries the caller's answer.
	ackedWithAnswer := func(r *rig, n int) *sip.Request {
		r.t.Helper()
		waitFor(r.t, "ACK to B", func() bool { return len(r.tp.written("ACK")) >= n })
		ack := r.tp.written("ACK")[n-1].(*sip.Request)
		if string(ack.Body()) != callerAnswer || ack.CSeq().SeqNo != 2 {
			r.t.Fatalf("ACK to B: %s", ack)
		}
		return ack
	}
	noNewACK := func(r *rig, n int) {
		r.t.Helper()
		time.Sleep(30 * time.Millisecond)
		if got := len(r.tp.written("ACK")); got != n {
			r.t.Fatalf("%d ACKs to B, want %d (never one without the answer)", got, n)
		}
	}
	ok200 := func(out *sip.Request) *sip.Response { return respond(out, 200, "OK", "tb", true) }
	stray := func(out *sip.Request) *Stray { return &Stray{Res: ok200(out), Side: "b", Leg: 1} }

	t.Run("no crash", func(t *testing.T) {
		r, id, out, on, re := start(t)
		on(ok200(out), nil)
		closed(t, re.Done)
		if c := re.Tx.(*fakeTx).codes(); len(c) != 1 || c[0] != 200 {
			t.Fatalf("re-INVITE answered %v", c)
		}
		noNewACK(r, 1) // the initial INVITE's ACK only: this one waits for the answer
		r.deliver(id, callerReinviteAck(t, id, reCSeq))
		ackedWithAnswer(r, 2)
		if got := r.types(id); strings.Join(got[len(got)-2:], " ") != "InDialogRelayed InDialogRelayed" {
			t.Fatalf("events %v: want the re-INVITE and the answer recorded", got)
		}
	})
	t.Run("crash after the caller's ACK", func(t *testing.T) {
		r, id, out, on, re := start(t)
		on(ok200(out), nil)
		closed(t, re.Done)
		r.deliver(id, callerReinviteAck(t, id, reCSeq))
		before := ackedWithAnswer(r, 2)
		r2 := restart(r, id)
		r2.deliver(id, stray(out))
		if again := ackedWithAnswer(r2, 1); again.String() != before.String() {
			t.Fatalf("ACK after the restart differs:\n%s\nbefore:\n%s", again, before)
		}
	})
	t.Run("crash after the 2xx went to the caller, before its ACK", func(t *testing.T) {
		r, id, out, on, re := start(t)
		on(ok200(out), nil)
		closed(t, re.Done)
		r2 := restart(r, id)
		r2.deliver(id, stray(out)) // the callee retransmits before the caller ACKs
		noNewACK(r2, 0)
		r2.deliver(id, callerReinviteAck(t, id, reCSeq))
		waitFor(t, "the answer recorded", func() bool {
			got := r2.types(id)
			return got[len(got)-1] == "InDialogRelayed"
		})
		ackedWithAnswer(r2, 1) // the held 2xx is ACKed with it
		r2.deliver(id, stray(out))
		ackedWithAnswer(r2, 2)
	})
	t.Run("crash after the 2xx went to the caller, its ACK lost", func(t *testing.T) {
		r, id, out, on, re := start(t)
		on(ok200(out), nil)
		closed(t, re.Done)
		r2 := restart(r, id)
		// No one holds the caller's transaction now: the callee's 2xx
		// goes to the caller, answering its re-INVITE rebuilt from the
		// event, and again after T1, until the caller ACKs it.
		r2.deliver(id, stray(out))
		waitFor(t, "2xx to the caller", func() bool { return len(r2.tp.written("200")) == 1 })
		ok := r2.tp.written("200")[0].(*sip.Response)
		if ok.CSeq().SeqNo != reCSeq || ok.CallID().Value() != "ca@10.1.1.1" || len(ok.Body()) == 0 ||
			!strings.Contains(ok.Via().Value(), "z9hG4bKri4") {
			t.Fatalf("2xx to the caller: %s", ok)
		}
		noNewACK(r2, 0)
		r2.clk.Advance(600 * time.Millisecond)
		waitFor(t, "2xx retransmitted", func() bool { return len(r2.tp.written("200")) == 2 })
		r2.deliver(id, callerReinviteAck(t, id, reCSeq))
		ackedWithAnswer(r2, 1)
		waitFor(t, "retransmission stopped", func() bool { return r2.clk.Pending() == 0 })
	})
	t.Run("crash before the callee's 2xx", func(t *testing.T) {
		r, id, out, _, _ := start(t)
		r2 := restart(r, id)
		n := len(r2.types(id))
		r2.deliver(id, stray(out))
		noNewACK(r2, 0)
		// The caller, with no answer to its re-INVITE, retransmits it: the
		// held 2xx goes to it, nothing new to the callee.
		re := callerReinvite(t, id, reCSeq)
		r2.deliver(id, re)
		closed(t, re.Done)
		if c := re.Tx.(*fakeTx).codes(); len(c) != 1 || c[0] != 200 || len(re.Tx.(*fakeTx).last().Body()) == 0 {
			t.Fatalf("retransmitted re-INVITE answered %v, want the callee's 2xx with its offer", c)
		}
		if invs, _ := r2.tp.sent("INVITE"); len(invs) != 0 {
			t.Fatalf("the re-INVITE went to the callee again: %v", invs)
		}
		if got := r2.types(id); len(got) != n {
			t.Fatalf("the retransmitted re-INVITE wrote events: %v", got[n:])
		}
		r2.deliver(id, callerReinviteAck(t, id, reCSeq))
		ackedWithAnswer(r2, 1)
	})
	t.Run("crash before the callee's 2xx, the re-INVITE first", func(t *testing.T) {
		r, id, out, _, _ := start(t)
		r2 := restart(r, id)
		re := callerReinvite(t, id, reCSeq)
		r2.deliver(id, re)
		time.Sleep(30 * time.Millisecond)
		r2.deliver(id, stray(out))
		closed(t, re.Done)
		if c := re.Tx.(*fakeTx).codes(); len(c) != 1 || c[0] != 200 {
			t.Fatalf("retransmitted re-INVITE answered %v", c)
		}
		r2.deliver(id, callerReinviteAck(t, id, reCSeq))
		ackedWithAnswer(r2, 1)
	})
	t.Run("the callee never answers", func(t *testing.T) {
		r, id, _, _, _ := start(t)
		r2 := restart(r, id)
		re := callerReinvite(t, id, reCSeq)
		r2.deliver(id, re)
		waitFor(t, "the relay timer", func() bool { return r2.clk.Pending() > 0 })
		r2.clk.Advance(64 * 500 * time.Millisecond)
		closed(t, re.Done)
		if c := re.Tx.(*fakeTx).codes(); len(c) != 1 || c[0] != 408 {
			t.Fatalf("re-INVITE answered %v, want 408", c)
		}
		// The dialog is free for the next offer: relayed, not 491.
		next := callerReinvite(t, id, reCSeq+1)
		r2.deliver(id, next)
		waitFor(t, "the next re-INVITE relayed", func() bool { invs, _ := r2.tp.sent("INVITE"); return len(invs) == 1 })
	})
}

// The other direction: the callee's re-INVITE without an offer, relayed
// to the caller. After a restart with the callee's ACK lost, the caller's
// 2xx goes to the callee (its re-INVITE rebuilt from the event), and the
// callee's ACK brings the answer to the caller.
func TestCalleesDelayedOfferReinviteAfterRestart(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	id, _, _ := r.answered()
	okAcked(r, id)
	bTag := BLegTag(id, 1)
	head := "From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag=" + bTag + "\nCall-ID: " + bTag + "\n"
	re := parseReq(t, "INVITE sip:"+bTag+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKbre\n"+head+
		"CSeq: 10 INVITE\nContact: <sip:bob@10.2.2.2:5080>\nContent-Length: 0\n\n")
	re.SetSource("10.2.2.2:5080")
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: re, Tx: &fakeTx{}, Side: "b", Leg: 1, Done: done})
	var invs []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "re-INVITE to A", func() bool { invs, ons = r.tp.sent("INVITE"); return len(invs) == 2 })
	toA := invs[1]
	if toA.CallID().Value() != "ca@10.1.1.1" || len(toA.Body()) != 0 {
		t.Fatalf("re-INVITE to A: %s", toA)
	}
	ons[1](respond(toA, 200, "OK", "", true), nil)
	closed(t, done)
	// Crash; the callee's ACK is lost with it.
	r.m.Stop()
	r2 := newRig(t, r.st.(*memstore.Store).Reopened(), r.clk)
	okAcked(r2, id)
	r2.deliver(id, &Stray{Res: respond(toA, 200, "OK", "", true), Side: "a"})
	waitFor(t, "2xx to the callee", func() bool { return len(r2.tp.written("200")) == 1 })
	ok := r2.tp.written("200")[0].(*sip.Response)
	if ok.CSeq().SeqNo != 10 || ok.CallID().Value() != bTag || len(ok.Body()) == 0 || !strings.Contains(ok.Via().Value(), "z9hG4bKbre") {
		t.Fatalf("2xx to the callee: %s", ok)
	}
	if n := len(r2.tp.written("ACK")); n != 0 {
		t.Fatalf("%d ACKs to the caller before the callee's answer", n)
	}
	ack := parseReq(t, "ACK sip:"+bTag+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKback\n"+head+
		"CSeq: 10 ACK\nContent-Type: application/sdp\n"+fmt.Sprintf("Content-Length: %d\n\n%s", len(callerAnswer), sdpOffer))
	r2.deliver(id, &InDialog{Req: ack, Side: "b", Leg: 1})
	waitFor(t, "ACK to the caller", func() bool { return len(r2.tp.written("ACK")) == 1 })
	toCaller := r2.tp.written("ACK")[0].(*sip.Request)
	if string(toCaller.Body()) != callerAnswer || toCaller.CallID().Value() != "ca@10.1.1.1" || toCaller.CSeq().SeqNo != toA.CSeq().SeqNo {
		t.Fatalf("ACK to the caller: %s", toCaller)
	}
}
