package call

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

// A retired call actor is garbage even while the transport still holds
// the callbacks of the client transactions it started: sipgo keeps an
// INVITE's transaction, and with it the callback, 32 s after a non-2xx
// final response (Timer D; after a 2xx, Timer M, unless the gateway ends
// it), longer than the actor lingers. A callback that held the actor kept
// every ended call whole (its requests, responses and state) for those
// 32 s: 64 MB of 280 MB live 15 s after the last of 15,000 calls at
// 1,500/s (a heap profile after a forced GC).
func TestRetiredActorNotHeldByTransactionCallbacks(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, memstore.New(), clk)
	var mu sync.Mutex
	var acts []weak.Pointer[callActor]
	r.m.spawned = func(a *callActor) {
		mu.Lock()
		defer mu.Unlock()
		acts = append(acts, weak.Make(a))
	}

	id, _, _ := r.answered()
	ack := parseReq(t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKack\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	r.deliver(id, &InDialog{Req: ack, Side: "a"})
	// A relayed request: its client transaction has a callback too.
	info := parseReq(t, "INFO sip:"+BLegTag(id, 1)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKinfo\n"+
		"From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag="+BLegTag(id, 1)+"\nCall-ID: "+BLegTag(id, 1)+"\nCSeq: 9 INFO\nContent-Length: 0\n\n")
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: info, Tx: &fakeTx{}, Side: "b", Leg: 1, Done: done})
	var out []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "INFO to A", func() bool { out, ons = r.tp.sent("INFO"); return len(out) == 1 })
	ons[0](respond(out[0], 200, "OK", "", false), nil)
	<-done
	bye := parseReq(t, "BYE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKbye\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 3 BYE\nContent-Length: 0\n\n")
	done = make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: &fakeTx{}, Side: "a", Done: done})
	<-done
	waitFor(t, "linger timer armed", func() bool { return clk.Pending() == 1 })
	clk.Advance(11 * time.Second)
	waitFor(t, "actor retired", func() bool { return r.m.Live() == 0 })

	// Every callback is still held (r.tp.ons), as sipgo holds them.
	if _, ons := r.tp.sent("INVITE"); len(ons) != 1 {
		t.Fatalf("%d INVITE callbacks held", len(ons))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acts) != 1 {
		t.Fatalf("%d activations, want 1", len(acts))
	}
	// The actor system drops a stopped actor asynchronously: collect until
	// the actor is gone, a bounded number of times.
	deadline := time.Now().Add(5 * time.Second)
	for acts[0].Value() != nil && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if acts[0].Value() != nil {
		t.Fatal("the retired call actor is still reachable: a transaction callback holds it")
	}
	runtime.KeepAlive(r.tp)
}
