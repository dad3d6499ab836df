package call

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// fakeTransport records what the actor sends; the test answers client
// transactions through their callbacks.
type fakeTransport struct {
	mu     sync.Mutex
	reqs   []*sip.Request
	ons    []func(*sip.Response, error)
	writes []sip.Message
	local  *Local // nil: UDP 127.0.0.1:5060 only
}

func (f *fakeTransport) Request(req *sip.Request, on func(*sip.Response, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	f.ons = append(f.ons, on)
	return nil
}

func (f *fakeTransport) Write(m sip.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, m)
	return nil
}

func (f *fakeTransport) Local() Local {
	if f.local != nil {
		return *f.local
	}
	return Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}
}

// sent returns the requests sent so far with method (and their callbacks).
func (f *fakeTransport) sent(method string) ([]*sip.Request, []func(*sip.Response, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []*sip.Request
	var os []func(*sip.Response, error)
	for i, r := range f.reqs {
		if string(r.Method) == method {
			rs, os = append(rs, r), append(os, f.ons[i])
		}
	}
	return rs, os
}

// written returns what went out of transaction: requests by method or
// responses by code ("ACK", "200").
func (f *fakeTransport) written(what string) []sip.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sip.Message
	for _, m := range f.writes {
		switch v := m.(type) {
		case *sip.Request:
			if string(v.Method) == what {
				out = append(out, m)
			}
		case *sip.Response:
			if fmt.Sprint(v.StatusCode) == what {
				out = append(out, m)
			}
		}
	}
	return out
}

type fakeTx struct {
	mu   sync.Mutex
	resp []*sip.Response
}

func (t *fakeTx) Respond(res *sip.Response) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resp = append(t.resp, res)
	return nil
}

func (t *fakeTx) codes() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, r := range t.resp {
		out = append(out, r.StatusCode)
	}
	return out
}

func (t *fakeTx) last() *sip.Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.resp) == 0 {
		return nil
	}
	return t.resp[len(t.resp)-1]
}

type rig struct {
	t   *testing.T
	st  events.Store
	clk *clock.Fake
	tp  *fakeTransport
	m   *Manager
}

func newRig(t *testing.T, st events.Store, clk *clock.Fake) *rig {
	t.Helper()
	return newRigOn(t, st, clk, "n1")
}

// newRigOn is newRig for a manager that writes as node.
func newRigOn(t *testing.T, st events.Store, clk *clock.Fake, node string) *rig {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	tp := &fakeTransport{}
	n := 0
	var mu sync.Mutex
	m := NewManager(sys, Config{Store: st, Clock: clk, Node: node, Transport: tp,
		NoAnswerTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler),
		NewBranch: func() string { mu.Lock(); defer mu.Unlock(); n++; return fmt.Sprintf("br%d", n) }})
	t.Cleanup(m.Stop)
	return &rig{t: t, st: st, clk: clk, tp: tp, m: m}
}

func parseReq(t *testing.T, raw string) *sip.Request {
	t.Helper()
	raw = strings.ReplaceAll(raw, "\n", "\r\n")
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("127.0.0.9:5070")
	return req
}

const sdpOffer = "v=0\no=a 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"

// invite builds the caller's INVITE (with an SDP offer) for targets.
func (r *rig) invite(targets ...string) (*Invite, *fakeTx, string) {
	body := strings.ReplaceAll(sdpOffer, "\n", "\r\n")
	raw := "INVITE sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=fa\r\nTo: <sip:bob@example.test>\r\nCall-ID: ca@10.1.1.1\r\n" +
		"CSeq: 2 INVITE\r\nContact: <sip:alice@10.1.1.1:5070>\r\nContent-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		r.t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("10.1.1.1:5070")
	tx := &fakeTx{}
	id := IDFor("ca@10.1.1.1", "fa", 2)
	return &Invite{Req: req, Tx: tx, Caller: "sip:alice@example.test", Callee: "sip:bob@example.test",
		Targets: targets, Done: make(chan struct{})}, tx, id
}

// dial delivers a caller's INVITE to targets and waits for the n B-leg
// INVITEs it causes; it returns them with their response callbacks.
func (r *rig) dial(n int, targets ...string) (*Invite, *fakeTx, string, []*sip.Request, []func(*sip.Response, error)) {
	r.t.Helper()
	inv, atx, id := r.invite(targets...)
	r.deliver(id, inv)
	var binv []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(r.t, "B INVITEs", func() bool { binv, ons = r.tp.sent("INVITE"); return len(binv) == n })
	return inv, atx, id, binv, ons
}

// respond builds a response of the callee to req.
func respond(req *sip.Request, code int, reason, toTag string, sdp bool) *sip.Response {
	var body []byte
	if sdp {
		body = []byte(strings.ReplaceAll("v=0\no=b 1 1 IN IP4 10.2.2.2\ns=-\nc=IN IP4 10.2.2.2\nt=0 0\nm=audio 5000 RTP/AVP 0\n", "\n", "\r\n"))
	}
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if toTag != "" {
		res.To().Params.Add("tag", toTag)
	}
	if code >= 200 && code < 300 {
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "10.2.2.2", Port: 5080}})
	}
	if sdp {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	return res
}

func (r *rig) types(id string) []string {
	r.t.Helper()
	evs, err := r.st.ReadStream(context.Background(), StreamName(id), 1, 100)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, strings.TrimPrefix(e.Type, "tandem.events.v1."))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *rig) deliver(id string, msg any) {
	r.t.Helper()
	if err := r.m.Deliver(id, msg); err != nil {
		r.t.Fatal(err)
	}
}

// answered sets up an answered call and returns its id, the B leg's INVITE
// and the caller's transaction.
func (r *rig) answered() (string, *sip.Request, *fakeTx) {
	t := r.t
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ons[0](respond(binv[0], 180, "Ringing", "tb", false), nil)
	waitFor(t, "180 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 180 })
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	<-inv.Done
	return id, binv[0], atx
}

func TestCallAnsweredThenCallerHangsUp(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	id, binv, atx := r.answered()

	// Leg B is a new dialog: our own Call-ID, tags and Via, nothing of A.
	raw := binv.String()
	for _, leak := range []string{"ca@10.1.1.1", "fa", "z9hG4bKa1", "alice@10.1.1.1"} {
		if strings.Contains(raw, leak) {
			t.Errorf("B leg INVITE leaks %q:\n%s", leak, raw)
		}
	}
	if binv.CallID().Value() != BLegTag(id, 1) || binv.MaxForwards().Val() != 69 {
		t.Errorf("B leg Call-ID %q Max-Forwards %d", binv.CallID().Value(), binv.MaxForwards().Val())
	}
	ok := atx.last()
	if tag, _ := ok.To().Params.Get("tag"); tag != ALegTag(id) || !strings.Contains(ok.Contact().Address.User, id) {
		t.Errorf("200 to A: To tag %q Contact %v", tag, ok.Contact())
	}
	if len(r.tp.written("ACK")) != 1 {
		t.Fatalf("B's 2xx ACKed %d times", len(r.tp.written("ACK")))
	}
	want := "CallStarted LegAttempted LegProgress LegAnswered CallAnswered"
	if got := strings.Join(r.types(id), " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}

	// BYE from A: CallEnded durable, 200 to A, BYE to B.
	bye := parseReq(t, "BYE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKbye\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 3 BYE\nContent-Length: 0\n\n")
	btx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: btx, Side: "a", Done: done})
	<-done
	if c := btx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("BYE answered %v", c)
	}
	byes, _ := r.tp.sent("BYE")
	if len(byes) != 1 || byes[0].CallID().Value() != BLegTag(id, 1) || byes[0].CSeq().SeqNo != 2 || byes[0].Recipient.Host != "10.2.2.2" {
		t.Fatalf("BYE to B: %v", byes)
	}
	// A retransmitted BYE is answered from state: no new event, no new BYE.
	btx2 := &fakeTx{}
	done2 := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: btx2, Side: "a", Done: done2})
	<-done2
	if c := btx2.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("retransmitted BYE answered %v", c)
	}
	if got := r.types(id); len(got) != 6 || got[5] != "CallEnded" {
		t.Fatalf("events after BYE: %v", got)
	}
	if byes, _ := r.tp.sent("BYE"); len(byes) != 1 {
		t.Fatalf("%d BYEs sent to B", len(byes))
	}
}

// After a crash (a new manager on the same store) the answered call is
// still known; the callee's BYE reaches the caller, and ends the call once.
func TestAnsweredCallSurvivesRestart(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRig(t, st, clk)
	id, _, _ := r.answered()
	r.m.Stop()

	r2 := newRig(t, st.Reopened(), clk)
	if err := r2.m.Activate(id); err != nil {
		t.Fatal(err)
	}
	bye := parseReq(t, "BYE sip:"+BLegTag(id, 1)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKbb\n"+
		"From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag="+BLegTag(id, 1)+"\nCall-ID: "+BLegTag(id, 1)+"\nCSeq: 7 BYE\nContent-Length: 0\n\n")
	tx := &fakeTx{}
	done := make(chan struct{})
	r2.deliver(id, &InDialog{Req: bye, Tx: tx, Side: "b", Leg: 1, Done: done})
	<-done
	if c := tx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("BYE answered %v", c)
	}
	byes, _ := r2.tp.sent("BYE")
	if len(byes) != 1 {
		t.Fatalf("%d BYEs to A", len(byes))
	}
	b := byes[0]
	if b.CallID().Value() != "ca@10.1.1.1" || b.Recipient.Host != "10.1.1.1" || b.CSeq().SeqNo != 1 {
		t.Errorf("BYE to A: %s", b)
	}
	if tag, _ := b.From().Params.Get("tag"); tag != ALegTag(id) {
		t.Errorf("BYE to A From tag %q", tag)
	}
	if tag, _ := b.To().Params.Get("tag"); tag != "fa" {
		t.Errorf("BYE to A To tag %q", tag)
	}
	n := 0
	for _, ty := range r2.types(id) {
		if ty == "CallEnded" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d CallEnded events", n)
	}
}

// A call ringing when the node died is ended cleanly by the next
// activation: CallFailed, CANCEL to the pending leg, 487 to the caller.
func TestRingingCallEndedAfterRestart(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRig(t, st, clk)
	_, _, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ons[0](respond(binv[0], 180, "Ringing", "tb", false), nil)
	waitFor(t, "LegProgress", func() bool { return len(r.types(id)) == 3 })
	r.m.Stop()

	r2 := newRig(t, st.Reopened(), clk)
	if err := r2.m.Activate(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "487 to A", func() bool { return len(r2.tp.written("487")) == 1 })
	cancels, _ := r2.tp.sent("CANCEL")
	if len(cancels) != 1 {
		t.Fatalf("%d CANCELs", len(cancels))
	}
	c := cancels[0]
	br, _ := c.Via().Params.Get("branch")
	ib, _ := binv[0].Via().Params.Get("branch")
	if br != ib || c.CSeq().SeqNo != 1 || c.CallID().Value() != BLegTag(id, 1) {
		t.Errorf("CANCEL does not match the INVITE: %s", c)
	}
	res := r2.tp.written("487")[0].(*sip.Response)
	if res.CallID().Value() != "ca@10.1.1.1" || res.Via().Host != "10.1.1.1" {
		t.Errorf("487 to A: %s", res)
	}
	got := r2.types(id)
	if got[len(got)-1] != "CallFailed" {
		t.Fatalf("events %v", got)
	}
	// The callee's 487 arrives with no transaction: ACKed, and a late 200
	// from it would be ACKed and hung up.
	r2.deliver(id, &Stray{Res: respond(binv[0], 200, "OK", "tb", true), Side: "b", Leg: 1})
	waitFor(t, "ACK+BYE of the late 200", func() bool { b, _ := r2.tp.sent("BYE"); return len(b) == 1 })
}

func TestForkFirstAnswerWinsOthersCancelledLateAnswerHungUp(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(2, "sip:bob@10.2.2.2:5080", "sip:bob@10.3.3.3:5080")
	ons[1](respond(binv[1], 180, "Ringing", "t2", false), nil)
	ons[0](respond(binv[0], 200, "OK", "t1", true), nil)
	<-inv.Done
	waitFor(t, "CANCEL to leg 2", func() bool { c, _ := r.tp.sent("CANCEL"); return len(c) == 1 })
	if c, _ := r.tp.sent("CANCEL"); c[0].CallID().Value() != BLegTag(id, 2) {
		t.Fatalf("CANCEL went to %s", c[0].CallID().Value())
	}
	if c := atx.codes(); c[len(c)-1] != 200 {
		t.Fatalf("A got %v", c)
	}
	// Leg 2 answers anyway (crossing the CANCEL): ACK then BYE.
	ons[1](respond(binv[1], 200, "OK", "t2", true), nil)
	waitFor(t, "BYE to leg 2", func() bool { b, _ := r.tp.sent("BYE"); return len(b) == 1 })
	if b, _ := r.tp.sent("BYE"); b[0].CallID().Value() != BLegTag(id, 2) {
		t.Fatalf("BYE went to %s", b[0].CallID().Value())
	}
	if n := len(r.tp.written("ACK")); n != 2 {
		t.Fatalf("%d ACKs, want one per 2xx", n)
	}
}

func TestAllLegsFailBestResponse(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(2, "sip:bob@10.2.2.2:5080", "sip:bob@10.3.3.3:5080")
	ons[0](respond(binv[0], 486, "Busy Here", "t1", false), nil)
	ons[1](respond(binv[1], 603, "Decline", "t2", false), nil)
	<-inv.Done
	if c := atx.codes(); c[len(c)-1] != 603 {
		t.Fatalf("A got %v, want 603 (16.7: a 6xx wins)", c)
	}
	if got := r.types(id); got[len(got)-1] != "CallFailed" {
		t.Fatalf("events %v", got)
	}
}

func TestBestResponse(t *testing.T) {
	legs := func(codes ...uint32) []*Leg {
		var out []*Leg
		for _, c := range codes {
			out = append(out, &Leg{Failed: eventpbLegFailed(c)})
		}
		return out
	}
	for _, tc := range []struct {
		codes []uint32
		want  uint32
	}{
		{[]uint32{486}, 486}, {[]uint32{486, 404}, 486}, {[]uint32{500, 486}, 486},
		{[]uint32{486, 603}, 603}, {[]uint32{503}, 500}, {[]uint32{407}, 403}, {nil, 480},
	} {
		if got, _ := bestResponse(legs(tc.codes...)); got != tc.want {
			t.Errorf("bestResponse(%v) = %d, want %d", tc.codes, got, tc.want)
		}
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ons[0](respond(binv[0], 180, "Ringing", "tb", false), nil)
	cancel := parseReq(t, "CANCEL sip:bob@example.test SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa1\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>\nCall-ID: ca@10.1.1.1\nCSeq: 2 CANCEL\nContent-Length: 0\n\n")
	ctx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &Cancel{Req: cancel, Tx: ctx, Done: done})
	<-done
	<-inv.Done
	if c := ctx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("CANCEL answered %v", c)
	}
	if c := atx.codes(); c[len(c)-1] != 487 {
		t.Fatalf("INVITE answered %v", c)
	}
	if c, _ := r.tp.sent("CANCEL"); len(c) != 1 {
		t.Fatalf("%d CANCELs to B", len(c))
	}
	got := r.types(id)
	if got[len(got)-1] != "CallFailed" {
		t.Fatalf("events %v", got)
	}
}

func TestNoAnswerTimer(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, memstore.New(), clk)
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5080")
	r.deliver(id, inv)
	waitFor(t, "B INVITE", func() bool { b, _ := r.tp.sent("INVITE"); return len(b) == 1 })
	waitFor(t, "timer armed", func() bool { return clk.Pending() > 0 })
	clk.Advance(31 * time.Second)
	<-inv.Done
	if c := atx.codes(); c[len(c)-1] != 480 {
		t.Fatalf("A got %v, want 480", c)
	}
	if c, _ := r.tp.sent("CANCEL"); len(c) != 1 {
		t.Fatalf("%d CANCELs", len(c))
	}
}

func TestReInviteRelayedHoldAndGlare(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	id, _, _ := r.answered()
	hold := strings.ReplaceAll(sdpOffer+"a=sendonly\n", "\n", "\r\n")
	raw := "INVITE sip:" + ALegTag(id) + "@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKre\r\n" +
		"From: <sip:alice@example.test>;tag=fa\r\nTo: <sip:bob@example.test>;tag=" + ALegTag(id) + "\r\nCall-ID: ca@10.1.1.1\r\nCSeq: 4 INVITE\r\n" +
		"Contact: <sip:alice@10.1.1.1:5070>\r\nContent-Type: application/sdp\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(hold), hold)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	re := msg.(*sip.Request)
	re.SetTransport("UDP")
	re.SetSource("10.1.1.1:5070")
	tx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: re, Tx: tx, Side: "a", Done: done})
	var invs []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "re-INVITE to B", func() bool { invs, ons = r.tp.sent("INVITE"); return len(invs) == 2 })
	out := invs[1]
	if out.CSeq().SeqNo != 2 || out.CallID().Value() != BLegTag(id, 1) || !strings.Contains(string(out.Body()), "a=sendonly") {
		t.Fatalf("re-INVITE to B: %s", out)
	}
	// A second offer while this one is pending: 491 (14.1).
	tx2 := &fakeTx{}
	done2 := make(chan struct{})
	r.deliver(id, &InDialog{Req: re, Tx: tx2, Side: "b", Leg: 1, Done: done2})
	<-done2
	if c := tx2.codes(); len(c) != 1 || c[0] != 491 {
		t.Fatalf("glare answered %v", c)
	}
	ons[1](respond(out, 200, "OK", "tb", true), nil)
	<-done
	if c := tx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("re-INVITE answered %v", c)
	}
	got := r.types(id)
	if strings.Join(got[5:], " ") != "InDialogRelayed HoldChanged" {
		t.Fatalf("events %v", got)
	}
	if n := len(r.tp.written("ACK")); n != 2 {
		t.Fatalf("%d ACKs (the re-INVITE's 2xx must be ACKed at once)", n)
	}
}

func TestRetransmittedInviteAnsweredFromState(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRig(t, st, clk)
	id, _, _ := r.answered()
	r.m.Stop()
	r2 := newRig(t, st.Reopened(), clk)
	inv, tx, id2 := r2.invite("sip:bob@10.2.2.2:5080")
	if id2 != id {
		t.Fatal("the same INVITE must name the same call")
	}
	r2.deliver(id, inv)
	<-inv.Done
	// 100 first: a fresh activation takes the INVITE for a new call until
	// the append of CallStarted finds the stream.
	if c := tx.codes(); len(c) != 2 || c[0] != 100 || c[1] != 200 {
		t.Fatalf("retransmission answered %v, want [100 200]", c)
	}
	if n := len(r2.types(id)); n != 5 {
		t.Fatalf("%d events; a retransmission adds none", n)
	}
	if b, _ := r2.tp.sent("INVITE"); len(b) != 0 {
		t.Fatal("a retransmission forked again")
	}
}

func TestTags(t *testing.T) {
	id := IDFor("c@h", "t", 1)
	if !ValidID(id) || IDFor("c@h", "t", 2) == id {
		t.Fatalf("IDFor: %q", id)
	}
	for _, tc := range []struct {
		tag  string
		side string
		leg  uint32
		ok   bool
	}{
		{ALegTag(id), "a", 0, true}, {BLegTag(id, 3), "b", 3, true},
		{id + "-b0", "", 0, false}, {id + "-c", "", 0, false}, {"x-a", "", 0, false}, {"", "", 0, false},
		{strings.ToUpper(id) + "-a", "", 0, false},
	} {
		gid, side, leg, ok := ParseTag(tc.tag)
		if ok != tc.ok || side != tc.side || leg != tc.leg || ok && gid != id {
			t.Errorf("ParseTag(%q) = %q %q %d %v", tc.tag, gid, side, leg, ok)
		}
	}
}

func TestQ850(t *testing.T) {
	for code, want := range map[uint32]uint32{486: 17, 404: 1, 480: 18, 603: 21, 503: 41, 200: 16, 499: 127, 599: 41, 699: 31} {
		if got := Q850(code); got != want {
			t.Errorf("Q850(%d) = %d, want %d", code, got, want)
		}
	}
}

func eventpbLegFailed(code uint32) *eventpb.LegFailed { return &eventpb.LegFailed{Code: code} }

// The 2xx to the caller is retransmitted (T1 doubling) until its ACK;
// after the ACK, a session timer with no refresh ends the call with BYE on
// both sides (RFC 4028 10).
func TestOKRetransmittedUntilAckThenSessionTimerExpires(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, memstore.New(), clk)
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ok := respond(binv[0], 200, "OK", "tb", true)
	ok.AppendHeader(sip.NewHeader("Session-Expires", "120;refresher=uac"))
	ons[0](ok, nil)
	<-inv.Done
	if se := atx.last().GetHeader("Session-Expires"); se == nil || se.Value() != "120;refresher=uac" {
		t.Fatalf("200 to A lacks the session timer: %v", atx.last())
	}
	clk.Advance(600 * time.Millisecond)
	waitFor(t, "retransmitted 200", func() bool { return len(r.tp.written("200")) == 1 })
	ack := parseReq(t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKack\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	r.deliver(id, &InDialog{Req: ack, Side: "a"})
	waitFor(t, "ACK taken", func() bool { return clk.Pending() == 1 }) // only the session timer is left
	clk.Advance(10 * time.Second)
	if n := len(r.tp.written("200")); n != 1 {
		t.Fatalf("200 retransmitted %d times after the ACK", n)
	}
	clk.Advance(80 * time.Second) // 120 - min(32, 120/3) = 88 s after the answer
	waitFor(t, "BYE on both legs", func() bool { b, _ := r.tp.sent("BYE"); return len(b) == 2 })
	evs, _ := r.st.ReadStream(context.Background(), StreamName(id), 1, 100)
	last, err := events.Unwrap(evs[len(evs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := last.(*eventpb.CallEnded); !ok || e.Reason != "session_expired" || e.By != "system" {
		t.Fatalf("last event %v", last)
	}
}

// A caller that requires reliable provisionals (Require: 100rel) makes the
// B leg require them too; no other required option tag is passed on.
func TestRequiredExtensionsPassedToTheBLeg(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, _, id := r.invite("sip:bob@10.2.2.2:5080")
	inv.Req.AppendHeader(sip.NewHeader("Supported", "100rel, timer"))
	inv.Req.AppendHeader(sip.NewHeader("Require", "100rel, timer"))
	r.deliver(id, inv)
	var binv []*sip.Request
	waitFor(t, "B INVITE", func() bool { binv, _ = r.tp.sent("INVITE"); return len(binv) == 1 })
	if got := headerValue(binv[0], "Require"); got != "100rel, timer" {
		t.Fatalf("B INVITE Require %q, want \"100rel, timer\"", got)
	}
	r2 := newRig(t, memstore.New(), clock.NewFake(t0))
	plain, _, id2 := r2.invite("sip:bob@10.2.2.2:5080")
	plain.Req.AppendHeader(sip.NewHeader("Supported", "100rel"))
	r2.deliver(id2, plain)
	waitFor(t, "B INVITE of a caller that requires nothing", func() bool { binv, _ = r2.tp.sent("INVITE"); return len(binv) == 1 })
	if h := binv[0].GetHeader("Require"); h != nil {
		t.Fatalf("B INVITE of a caller that requires nothing carries Require: %s", h.Value())
	}
}

// reliablyRinging dials bob@10.2.2.2:5080 from a caller supporting 100rel
// and has the callee answer with a reliable 180 (RSeq 5) whose Contact is
// contact; it returns once that 180 reached the caller.
func (r *rig) reliablyRinging(contact sip.Uri) (*Invite, *fakeTx, string, []*sip.Request, []func(*sip.Response, error)) {
	t := r.t
	t.Helper()
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5080")
	inv.Req.AppendHeader(sip.NewHeader("Supported", "100rel, timer"))
	r.deliver(id, inv)
	var binv []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "B INVITE", func() bool { binv, ons = r.tp.sent("INVITE"); return len(binv) == 1 })
	if !hasOption(binv[0], "Supported", "100rel") {
		t.Fatalf("B INVITE does not offer 100rel: %s", binv[0])
	}
	ringing := respond(binv[0], 180, "Ringing", "tb", false)
	ringing.AppendHeader(sip.NewHeader("Require", "100rel"))
	ringing.AppendHeader(sip.NewHeader("RSeq", "5"))
	ringing.AppendHeader(&sip.ContactHeader{Address: contact})
	ons[0](ringing, nil)
	waitFor(t, "reliable 180 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 180 })
	return inv, atx, id, binv, ons
}

// RFC 3262 end to end: the callee's reliable 180 reaches the caller
// reliably (under Tandem's RSeq), the caller's PRACK reaches the callee
// (with the callee's RSeq), and the B leg's CSeq accounts for it.
func TestReliableProvisionalAndPrackRelayed(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.reliablyRinging(sip.Uri{Scheme: "sip", User: "bob", Host: "10.2.2.2", Port: 5080})
	p := atx.last()
	if !hasOption(p, "Require", "100rel") || headerValue(p, "RSeq") != "1" {
		t.Fatalf("180 to A is not reliable: %s", p)
	}
	prackRaw := "PRACK sip:" + ALegTag(id) + "@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKpr\n" +
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag=" + ALegTag(id) + "\nCall-ID: ca@10.1.1.1\nCSeq: 3 PRACK\nRAck: 1 2 INVITE\nContent-Length: 0\n\n"
	prack := parseReq(t, prackRaw)
	ptx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: prack, Tx: ptx, Side: "a", Done: done})
	var pr []*sip.Request
	var pons []func(*sip.Response, error)
	waitFor(t, "PRACK to B", func() bool { pr, pons = r.tp.sent("PRACK"); return len(pr) == 1 })
	if headerValue(pr[0], "RAck") != "5 1 INVITE" || pr[0].CSeq().SeqNo != 2 || pr[0].Recipient.Host != "10.2.2.2" {
		t.Fatalf("PRACK to B: %s", pr[0])
	}
	if tag, _ := pr[0].To().Params.Get("tag"); tag != "tb" {
		t.Fatalf("PRACK to B To tag %q", tag)
	}
	pons[0](respond(pr[0], 200, "OK", "", false), nil)
	<-done
	if c := ptx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("A's PRACK answered %v", c)
	}
	// A PRACK for an RSeq never sent: 481.
	bad := parseReq(t, strings.Replace(prackRaw, "RAck: 1 2 INVITE", "RAck: 9 2 INVITE", 1))
	btx := &fakeTx{}
	bdone := make(chan struct{})
	r.deliver(id, &InDialog{Req: bad, Tx: btx, Side: "a", Done: bdone})
	<-bdone
	if c := btx.codes(); len(c) != 1 || c[0] != 481 {
		t.Fatalf("PRACK for an unknown RSeq answered %v", c)
	}
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	<-inv.Done
	bye := parseReq(t, "BYE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKbye\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 4 BYE\nContent-Length: 0\n\n")
	bd := make(chan struct{})
	r.deliver(id, &InDialog{Req: bye, Tx: &fakeTx{}, Side: "a", Done: bd})
	<-bd
	if b, _ := r.tp.sent("BYE"); len(b) != 1 || b[0].CSeq().SeqNo != 3 {
		t.Fatalf("BYE to B after a PRACK: %v", b)
	}
}

// An ended call's actor stops once it has been quiet for Linger; a late
// message re-activates it by replay and is answered from state.
func TestEndedCallActorRetires(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, memstore.New(), clk)
	inv, _, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ons[0](respond(binv[0], 486, "Busy Here", "tb", false), nil)
	<-inv.Done
	if r.m.Live() != 1 {
		t.Fatalf("%d live actors right after the end, want 1 (lingering)", r.m.Live())
	}
	// The caller's answer can go out before the actor, at the end of that
	// message, arms its linger timer: a clock advanced before that left
	// the timer armed for later (6 runs in 100 under -race).
	waitFor(t, "linger timer armed", func() bool { return clk.Pending() == 1 })
	clk.Advance(11 * time.Second)
	waitFor(t, "actor retired", func() bool { return r.m.Live() == 0 })
	n := len(r.types(id))
	again, tx, _ := r.invite("sip:bob@10.2.2.2:5080") // a retransmission
	r.deliver(id, again)
	<-again.Done
	if c := tx.codes(); len(c) != 2 || c[0] != 100 || c[1] != 486 {
		t.Fatalf("retransmitted INVITE after retirement answered %v, want 100 and the 486 again", c)
	}
	if len(r.types(id)) != n {
		t.Fatal("answering from state added events")
	}
}

// In-dialog INFO from the callee reaches the caller (on leg A, with
// Tandem's next CSeq there) and its answer comes back; an UPDATE from the
// caller reaches the callee likewise.
func TestInfoAndUpdateRelayedBothWays(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	id, _, _ := r.answered()
	info := parseReq(t, "INFO sip:"+BLegTag(id, 1)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.2.2.2:5080;branch=z9hG4bKinfo\n"+
		"From: <sip:bob@example.test>;tag=tb\nTo: <sip:alice@example.test>;tag="+BLegTag(id, 1)+"\nCall-ID: "+BLegTag(id, 1)+"\nCSeq: 9 INFO\nContent-Length: 0\n\n")
	tx := &fakeTx{}
	done := make(chan struct{})
	r.deliver(id, &InDialog{Req: info, Tx: tx, Side: "b", Leg: 1, Done: done})
	var out []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "INFO to A", func() bool { out, ons = r.tp.sent("INFO"); return len(out) == 1 })
	if out[0].CallID().Value() != "ca@10.1.1.1" || out[0].CSeq().SeqNo != 1 || out[0].Recipient.Host != "10.1.1.1" {
		t.Fatalf("INFO to A: %s", out[0])
	}
	ons[0](respond(out[0], 200, "OK", "", false), nil)
	<-done
	if c := tx.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("INFO answered %v", c)
	}
	upd := parseReq(t, "UPDATE sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKupd\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 5 UPDATE\nContent-Length: 0\n\n")
	tx2 := &fakeTx{}
	done2 := make(chan struct{})
	r.deliver(id, &InDialog{Req: upd, Tx: tx2, Side: "a", Done: done2})
	waitFor(t, "UPDATE to B", func() bool { out, ons = r.tp.sent("UPDATE"); return len(out) == 1 })
	if out[0].CallID().Value() != BLegTag(id, 1) || out[0].CSeq().SeqNo != 2 {
		t.Fatalf("UPDATE to B: %s", out[0])
	}
	ons[0](respond(out[0], 200, "OK", "tb", false), nil)
	<-done2
	if c := tx2.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("UPDATE answered %v", c)
	}
	if got := r.types(id); strings.Join(got[5:], " ") != "InDialogRelayed InDialogRelayed" {
		t.Fatalf("events %v", got)
	}
}

// delayedOffer sets up a call whose INVITE carries no SDP (RFC 3261
// 13.2.1), answered by the callee with an offer; it returns the call's id
// and the B leg's INVITE and response callback.
func (r *rig) delayedOffer() (string, *sip.Request, func(*sip.Response, error)) {
	t := r.t
	t.Helper()
	raw := "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKd1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=fd\r\nTo: <sip:bob@example.test>\r\nCall-ID: cd@10.1.1.1\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:alice@10.1.1.1:5070>\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("10.1.1.1:5070")
	id := IDFor("cd@10.1.1.1", "fd", 1)
	atx := &fakeTx{}
	inv := &Invite{Req: req, Tx: atx, Caller: "sip:alice@example.test", Callee: "sip:bob@example.test",
		Targets: []string{"sip:bob@10.2.2.2:5080"}, Done: make(chan struct{})}
	r.deliver(id, inv)
	var binv []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "B INVITE", func() bool { binv, ons = r.tp.sent("INVITE"); return len(binv) == 1 })
	if len(binv[0].Body()) != 0 {
		t.Fatal("B INVITE carries a body the caller never sent")
	}
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	<-inv.Done
	if c := atx.codes(); len(c) == 0 || c[len(c)-1] != 200 {
		t.Fatalf("caller got %v", c)
	}
	return id, binv[0], ons[0]
}

// callerAnswer is the answer in the caller's ACK to a delayed offer.
var callerAnswer = strings.ReplaceAll(sdpOffer, "\n", "\r\n")

// delayedAck is the caller's ACK, with the answer, to the 2xx of call id
// set up by delayedOffer.
func delayedAck(t *testing.T, id, branch string) *InDialog {
	t.Helper()
	ackRaw := "ACK sip:" + ALegTag(id) + "@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=" + branch + "\r\n" +
		"From: <sip:alice@example.test>;tag=fd\r\nTo: <sip:bob@example.test>;tag=" + ALegTag(id) + "\r\nCall-ID: cd@10.1.1.1\r\n" +
		"CSeq: 1 ACK\r\nContent-Type: application/sdp\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(callerAnswer), callerAnswer)
	amsg, err := sip.ParseMessage([]byte(ackRaw))
	if err != nil {
		t.Fatal(err)
	}
	req := amsg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("10.1.1.1:5070")
	return &InDialog{Req: req, Side: "a"}
}

// Delayed offer (RFC 3261 13.2.1): the caller's INVITE has no SDP, the
// callee's 2xx carries the offer, and the callee's ACK waits for the
// answer the caller's ACK brings, which is made durable before that ACK
// goes out.
func TestDelayedOfferAnswerCarriedInAck(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	id, binv, on := r.delayedOffer()
	// The callee retransmits its 2xx before the caller's ACK came: still
	// no ACK, it waits for the answer.
	on(respond(binv, 200, "OK", "tb", true), nil)
	time.Sleep(20 * time.Millisecond)
	if n := len(r.tp.written("ACK")); n != 0 {
		t.Fatalf("callee ACKed before the caller's answer came (%d ACKs)", n)
	}
	r.deliver(id, delayedAck(t, id, "z9hG4bKd2"))
	waitFor(t, "ACK to B", func() bool { return len(r.tp.written("ACK")) == 1 })
	ack := r.tp.written("ACK")[0].(*sip.Request)
	if string(ack.Body()) != callerAnswer || ack.CallID().Value() != BLegTag(id, 1) {
		t.Fatalf("ACK to B: %s", ack)
	}
	if got := r.types(id); got[len(got)-1] != "InDialogRelayed" {
		t.Fatalf("events after the caller's ACK: %v", got)
	}
	n := len(r.types(id))
	// The callee retransmits its 2xx: the same ACK again, answer included.
	on(respond(binv, 200, "OK", "tb", true), nil)
	waitFor(t, "second ACK to B", func() bool { return len(r.tp.written("ACK")) == 2 })
	if again := r.tp.written("ACK")[1].(*sip.Request); again.String() != ack.String() {
		t.Fatalf("ACK for the retransmitted 2xx differs:\n%s\nfirst:\n%s", again, ack)
	}
	// The caller's ACK again (for a retransmitted 2xx): no new event.
	r.deliver(id, delayedAck(t, id, "z9hG4bKd3"))
	time.Sleep(20 * time.Millisecond)
	if got := r.types(id); len(got) != n {
		t.Fatalf("a repeated ACK wrote events: %v", got)
	}
}

// A delayed-offer call survives a crash at either side of the caller's
// ACK: the callee's retransmitted 2xx is ACKed with the caller's answer,
// never without it (B2BUA-PITFALLS 3: with a delayed offer the ACK
// carries the answer).
func TestDelayedOfferAckAfterRestart(t *testing.T) {
	// crash sets up a delayed-offer call, lets the caller ACK it before
	// the crash when acked, and returns the next activation's rig, the
	// call's id, the callee's INVITE and the ACKs it got before the crash.
	crash := func(t *testing.T, acked bool) (*rig, string, *sip.Request, []sip.Message) {
		st := memstore.New()
		r := newRig(t, st, clock.NewFake(t0))
		id, binv, _ := r.delayedOffer()
		if acked {
			r.deliver(id, delayedAck(t, id, "z9hG4bKd2"))
			waitFor(t, "ACK to B", func() bool { return len(r.tp.written("ACK")) == 1 })
		}
		r.m.Stop()
		return newRig(t, st.Reopened(), r.clk), id, binv, r.tp.written("ACK")
	}
	// acked waits for the n-th ACK to the callee after its 2xx came again
	// and checks that it carries the caller's answer.
	acked := func(r *rig, id string, binv *sip.Request, n int) *sip.Request {
		r.deliver(id, &Stray{Res: respond(binv, 200, "OK", "tb", true), Side: "b", Leg: 1})
		waitFor(r.t, "ACK to B", func() bool { return len(r.tp.written("ACK")) == n })
		ack := r.tp.written("ACK")[n-1].(*sip.Request)
		if string(ack.Body()) != callerAnswer || ack.ContentType() == nil {
			r.t.Fatalf("ACK to B without the answer: %s", ack)
		}
		return ack
	}
	t.Run("crash after the caller's ACK", func(t *testing.T) {
		r2, id, binv, before := crash(t, true)
		if again := acked(r2, id, binv, 1); again.String() != before[0].String() {
			t.Fatalf("ACK after the restart differs:\n%s\nfirst:\n%s", again, before[0])
		}
	})
	t.Run("crash before the caller's ACK, the callee's 2xx first", func(t *testing.T) {
		r2, id, binv, _ := crash(t, false)
		r2.deliver(id, &Stray{Res: respond(binv, 200, "OK", "tb", true), Side: "b", Leg: 1})
		time.Sleep(20 * time.Millisecond)
		if n := len(r2.tp.written("ACK")); n != 0 {
			t.Fatalf("the 2xx was ACKed before the caller's answer came (%d ACKs)", n)
		}
		// The activation retransmits the 2xx to the caller (recover);
		// the caller ACKs it with the answer, which goes to the callee.
		waitFor(t, "2xx retransmission armed", func() bool { return r2.clk.Pending() > 0 })
		r2.clk.Advance(600 * time.Millisecond)
		waitFor(t, "2xx retransmitted to the caller", func() bool { return len(r2.tp.written("200")) == 1 })
		r2.deliver(id, delayedAck(t, id, "z9hG4bKd2"))
		waitFor(t, "ACK to B", func() bool { return len(r2.tp.written("ACK")) == 1 })
		ack := r2.tp.written("ACK")[0].(*sip.Request)
		if again := acked(r2, id, binv, 2); again.String() != ack.String() {
			t.Fatalf("second ACK differs:\n%s\nfirst:\n%s", again, ack)
		}
	})
	t.Run("crash before the caller's ACK, the caller's ACK first", func(t *testing.T) {
		r2, id, binv, _ := crash(t, false)
		r2.deliver(id, delayedAck(t, id, "z9hG4bKd2"))
		waitFor(t, "the answer recorded", func() bool {
			got := r2.types(id)
			return got[len(got)-1] == "InDialogRelayed"
		})
		acked(r2, id, binv, 1)
	})
}

// Every 2xx the callee retransmits gets the same ACK (RFC 3261 13.2.2.4):
// same branch and all, also from an activation after a restart, which
// hears the 2xx as a stray. A peer takes an ACK with a new branch for a
// new request (sipp aborted calls on it under load).
func TestRetransmitted2xxGetsTheSameAck(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRig(t, st, clk)
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ok := respond(binv[0], 200, "OK", "tb", true)
	ons[0](ok, nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	<-inv.Done
	waitFor(t, "ACK to B", func() bool { return len(r.tp.written("ACK")) == 1 })
	first := r.tp.written("ACK")[0].(*sip.Request)
	branch, _ := first.Via().Params.Get("branch")
	if !strings.HasPrefix(branch, "z9hG4bK"+BLegTag(id, 1)+"-ack1-") {
		t.Fatalf("ACK branch %q", branch)
	}
	for i := 2; i <= 3; i++ {
		ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
		waitFor(t, "another ACK to B", func() bool { return len(r.tp.written("ACK")) == i })
		if again := r.tp.written("ACK")[i-1].(*sip.Request); again.String() != first.String() {
			t.Fatalf("ACK %d differs:\n%s\nfirst:\n%s", i, again, first)
		}
	}
	if n := len(r.types(id)); n != 4 {
		t.Fatalf("retransmitted 2xx wrote events: %v", r.types(id))
	}

	r.m.Stop()
	r2 := newRig(t, st.Reopened(), clk)
	r2.deliver(id, &Stray{Res: respond(binv[0], 200, "OK", "tb", true), Side: "b", Leg: 1})
	waitFor(t, "ACK after the restart", func() bool { return len(r2.tp.written("ACK")) == 1 })
	if again := r2.tp.written("ACK")[0].(*sip.Request); again.String() != first.String() {
		t.Fatalf("ACK after the restart differs:\n%s\nfirst:\n%s", again, first)
	}
}

// A proxy beyond the B leg forks the INVITE and a second 2xx comes from
// another dialog (another To tag) after the call is answered: it gets an
// ACK of its own (its To tag, another branch) and one BYE, however often it
// is retransmitted; the answered dialog is left alone.
func TestSecond2xxFromAnotherDialogAckedAndHungUp(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	waitFor(t, "200 to A", func() bool { c := atx.codes(); return len(c) > 0 && c[len(c)-1] == 200 })
	<-inv.Done
	waitFor(t, "ACK to B", func() bool { return len(r.tp.written("ACK")) == 1 })
	first := r.tp.written("ACK")[0].(*sip.Request)
	for i := 2; i <= 3; i++ {
		ons[0](respond(binv[0], 200, "OK", "tc", true), nil)
		waitFor(t, "ACK for the other dialog", func() bool { return len(r.tp.written("ACK")) == i })
	}
	acks := r.tp.written("ACK")
	other := acks[1].(*sip.Request)
	if tag, _ := other.To().Params.Get("tag"); tag != "tc" {
		t.Fatalf("ACK for the other dialog has To tag %q", tag)
	}
	b1, _ := first.Via().Params.Get("branch")
	b2, _ := other.Via().Params.Get("branch")
	if b1 == b2 {
		t.Fatalf("both dialogs' ACKs have branch %q", b1)
	}
	if acks[2].(*sip.Request).String() != other.String() {
		t.Fatal("the retransmitted 2xx of the other dialog got another ACK")
	}
	byes, _ := r.tp.sent("BYE")
	if len(byes) != 1 {
		t.Fatalf("%d BYEs, want one for the other dialog", len(byes))
	}
	if tag, _ := byes[0].To().Params.Get("tag"); tag != "tc" {
		t.Fatalf("BYE to the To tag %q", tag)
	}
	if st := r.types(id); st[len(st)-1] != "CallAnswered" {
		t.Fatalf("events after the second 2xx: %v", st)
	}
}

// A call answered just before a crash gets its 2xx retransmission
// re-armed from the events; the caller's ACK stops it.
func TestOKRetransmissionReArmedAfterRestart(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRig(t, st, clk)
	id, _, _ := r.answered()
	r.m.Stop()
	clk.Advance(2 * time.Second)
	r2 := newRig(t, st.Reopened(), clk)
	if err := r2.m.Activate(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retransmission armed", func() bool { return clk.Pending() > 0 })
	clk.Advance(600 * time.Millisecond)
	waitFor(t, "200 retransmitted", func() bool { return len(r2.tp.written("200")) == 1 })
	ack := parseReq(t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKack2\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	r2.deliver(id, &InDialog{Req: ack, Side: "a"})
	time.Sleep(20 * time.Millisecond)
	clk.Advance(40 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if n := len(r2.tp.written("200")); n != 1 {
		t.Fatalf("200 retransmitted %d times after the ACK", n)
	}
	if b, _ := r2.tp.sent("BYE"); len(b) != 0 {
		t.Fatal("the call was ended although the ACK came")
	}
}

// The caller asks for a session timer the callee ignores: Tandem answers
// with it (refresher=uac) and ends the call if the caller never refreshes.
func TestCallersSessionTimerHonouredWhenCalleeIgnoresIt(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, memstore.New(), clk)
	inv, atx, id := r.invite("sip:bob@10.2.2.2:5080")
	inv.Req.AppendHeader(sip.NewHeader("Session-Expires", "90"))
	inv.Req.AppendHeader(sip.NewHeader("Supported", "timer"))
	r.deliver(id, inv)
	var binv []*sip.Request
	var ons []func(*sip.Response, error)
	waitFor(t, "B INVITE", func() bool { binv, ons = r.tp.sent("INVITE"); return len(binv) == 1 })
	if headerValue(binv[0], "Session-Expires") != "90" {
		t.Fatalf("Session-Expires not passed to the callee: %s", binv[0])
	}
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	<-inv.Done
	if v := headerValue(atx.last(), "Session-Expires"); v != "90;refresher=uac" {
		t.Fatalf("200 to A: Session-Expires %q", v)
	}
	ack := parseReq(t, "ACK sip:"+ALegTag(id)+"@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKack3\n"+
		"From: <sip:alice@example.test>;tag=fa\nTo: <sip:bob@example.test>;tag="+ALegTag(id)+"\nCall-ID: ca@10.1.1.1\nCSeq: 2 ACK\nContent-Length: 0\n\n")
	r.deliver(id, &InDialog{Req: ack, Side: "a"})
	waitFor(t, "ACK taken", func() bool { return clk.Pending() == 1 })
	clk.Advance(61 * time.Second) // 90 - min(32, 30) = 60 s
	waitFor(t, "BYE on both legs", func() bool { b, _ := r.tp.sent("BYE"); return len(b) == 2 })
}

// The B leg's INVITE, built from typed headers, says on the wire exactly
// what LegAttempted recorded (CANCEL, ACK and BYE are built from those
// strings), and survives a round trip through the parser.
func TestLegInviteMatchesLegAttempted(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, _, id := r.invite("sip:bob@10.2.2.2:5080;transport=udp")
	inv.Req.AppendHeader(sip.NewHeader("Supported", "timer, 100rel"))
	r.deliver(id, inv)
	var binv []*sip.Request
	waitFor(t, "B INVITE", func() bool { binv, _ = r.tp.sent("INVITE"); return len(binv) == 1 })
	wire, err := sip.ParseMessage([]byte(binv[0].String()))
	if err != nil {
		t.Fatalf("B INVITE does not parse back: %v\n%s", err, binv[0])
	}
	got := wire.(*sip.Request)
	evs, _ := r.st.ReadStream(context.Background(), StreamName(id), 2, 1)
	m, _ := events.Unwrap(evs[0])
	at := m.(*eventpb.LegAttempted)
	parse := func(name, value string) string {
		msg, err := sip.ParseMessage([]byte("OPTIONS sip:x@y SIP/2.0\r\n" + name + ": " + value + "\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Request).GetHeader(name).Value()
	}
	for _, c := range []struct{ name, got, want string }{
		{"Via", got.Via().Value(), parse("Via", at.Via)},
		{"From", got.From().Value(), parse("From", at.From)},
		{"To", got.To().Value(), parse("To", at.To)},
		{"Call-ID", got.CallID().Value(), at.CallId},
		{"CSeq", got.CSeq().Value(), "1 INVITE"},
		{"Request-URI", got.Recipient.String(), "sip:bob@10.2.2.2:5080;transport=udp"},
		{"Contact", got.Contact().Value(), "<sip:" + BLegTag(id, 1) + "@127.0.0.1:5060>"},
		{"Max-Forwards", got.MaxForwards().Value(), "69"},
		{"Supported", got.GetHeader("Supported").Value(), "timer, 100rel"},
		{"Content-Type", got.ContentType().Value(), "application/sdp"},
		{"body", string(got.Body()), strings.ReplaceAll(sdpOffer, "\n", "\r\n")},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}

// A response without To (hostile or broken) is ignored; the call goes on.
func TestResponseWithoutToIgnored(t *testing.T) {
	r := newRig(t, memstore.New(), clock.NewFake(t0))
	inv, atx, id, binv, ons := r.dial(1, "sip:bob@10.2.2.2:5080")
	bad := sip.NewResponse(200, "OK")
	bad.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	bad.AppendHeader(binv[0].From())
	r.deliver(id, &Stray{Res: bad, Side: "b", Leg: 1})
	ons[0](bad, nil)
	ons[0](respond(binv[0], 200, "OK", "tb", true), nil)
	<-inv.Done
	if c := atx.codes(); c[len(c)-1] != 200 {
		t.Fatalf("A got %v", c)
	}
}
