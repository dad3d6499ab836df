package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

func newRegistry(t *testing.T, st events.Store, clk clock.Clock) *Registry {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	r := NewRegistry(sys, Config{Store: st, Clock: clk, Node: "n1", Limits: lim, RequestTimeout: 2 * time.Second})
	t.Cleanup(r.Stop)
	return r
}

func streamTypes(t *testing.T, st events.Store, aor string) []string {
	t.Helper()
	evs, err := st.ReadStream(context.Background(), StreamName(aor), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// waitFor polls cond for up to 2 s (timers fire in their own goroutines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestActorRegistersPersistsBeforeAnswering(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRegistry(t, st, clk)
	cause := &eventpb.Cause{CallId: "c1", Cseq: 1, Method: "REGISTER", Branch: "z9hG4bK1"}
	res, err := r.Register(context.Background(), reg("c1", 1, 600, contact("sip:alice@10.0.0.1", -1)), cause)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bindings) != 1 || !res.Bindings[0].ExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("result %+v", res)
	}
	evs, _ := st.ReadStream(context.Background(), StreamName(aor), 1, 10)
	if len(evs) != 1 || evs[0].Type != "tandem.events.v1.BindingAdded" || evs[0].Cause.GetBranch() != "z9hG4bK1" || evs[0].Node != "n1" {
		t.Fatalf("stream = %v", evs)
	}
	// A retransmission is answered from state with no new event.
	if _, err := r.Register(context.Background(), reg("c1", 1, 600, contact("sip:alice@10.0.0.1", -1)), cause); err != nil {
		t.Fatal(err)
	}
	if got := streamTypes(t, st, aor); len(got) != 1 {
		t.Fatalf("retransmission wrote events: %v", got)
	}
}

func TestActorExpiresOnTimeAndAfterRestart(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRegistry(t, st, clk)
	if _, err := r.Register(context.Background(), reg("c1", 1, 60, contact("sip:alice@10.0.0.1", -1)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(context.Background(), reg("c1", 2, 120, contact("sip:alice@10.0.0.2", -1)), nil); err != nil {
		t.Fatal(err)
	}
	clk.Advance(60 * time.Second)
	waitFor(t, "first binding to expire", func() bool { return len(streamTypes(t, st, aor)) == 3 })

	// "Restart": a new registry over the same store, clock past the second
	// expiry. Activation replays and expires the binding at once.
	r.Stop()
	clk.Advance(5 * time.Minute)
	r2 := newRegistry(t, st, clk)
	if err := r2.Activate(context.Background(), aor); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second binding to expire after restart", func() bool { return len(streamTypes(t, st, aor)) == 4 })
	got := streamTypes(t, st, aor)
	if got[2] != "tandem.events.v1.BindingExpired" || got[3] != "tandem.events.v1.BindingExpired" {
		t.Fatalf("stream types %v", got)
	}
}

func TestActorFencedOnVersionConflict(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRegistry(t, st, clk)
	if _, err := r.Register(context.Background(), reg("c1", 1, 600, contact("sip:alice@10.0.0.1", -1)), nil); err != nil {
		t.Fatal(err)
	}
	// Another writer (a split-brain twin) appends to the same stream.
	env, _ := events.Wrap(&eventpb.BindingRemoved{Aor: aor, Contact: "sip:alice@10.0.0.1", CallId: "x", Cseq: 1}, t0, "n2", nil)
	if _, err := st.Append(context.Background(), StreamName(aor), 1, []*eventpb.Envelope{env}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Register(context.Background(), reg("c1", 2, 600, contact("sip:alice@10.0.0.9", -1)), nil)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("err = %v, want ErrFenced", err)
	}
	// The next request re-activates from the store and sees the twin's event.
	res, err := r.Register(context.Background(), reg("c1", 3, 600, contact("sip:alice@10.0.0.9", -1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bindings) != 1 || res.Bindings[0].Contact != "sip:alice@10.0.0.9" {
		t.Fatalf("bindings after re-activation: %+v", res.Bindings)
	}
}

func TestActorStoreFailureIsUnavailable(t *testing.T) {
	st := memstore.New()
	st.FailAppend = func(string) error { return errors.New("disk on fire") }
	r := newRegistry(t, st, clock.NewFake(t0))
	_, err := r.Register(context.Background(), reg("c1", 1, 600, contact("sip:alice@10.0.0.1", -1)), nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestActorsConcurrentAORs(t *testing.T) {
	st := memstore.New()
	r := newRegistry(t, st, clock.NewFake(t0))
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a := fmt.Sprintf("sip:u%d@example.test", i)
			for c := uint32(1); c <= 4; c++ {
				cmd := &Register{AOR: a, CallID: "c", CSeq: c, Expires: 600, Contacts: []ContactSpec{contact("sip:u@10.0.0.1", -1)}}
				if _, err := r.Register(context.Background(), cmd, nil); err != nil {
					errs <- err
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if h := st.Head(); h != 200 {
		t.Fatalf("head = %d, want 200 (50 AORs x 1 add + 3 refreshes)", h)
	}
}

// A request the actor does not answer in time is ErrUnavailable after
// RequestTimeout; the next request gets a whole RequestTimeout again (its
// timer is reused from the pool and must not fire at once).
func TestActorRequestTimeout(t *testing.T) {
	st := memstore.New()
	release := make(chan struct{})
	var stuck atomic.Bool
	stuck.Store(true)
	st.FailAppend = func(string) error {
		if stuck.Load() {
			<-release
		}
		return nil
	}
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	r := NewRegistry(sys, Config{Store: st, Clock: clock.NewFake(t0), Node: "n1", Limits: lim, RequestTimeout: 150 * time.Millisecond})
	t.Cleanup(r.Stop)
	start := time.Now()
	_, err := r.Register(context.Background(), reg("c1", 1, 600, contact("sip:alice@10.0.0.1", -1)), nil)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("stuck actor: err = %v after %v, want ErrUnavailable after 150ms", err, time.Since(start))
	}
	stuck.Store(false)
	close(release)
	// The first request is still applied once the store answers; the
	// second is answered normally, well within its own timeout.
	for i := 0; i < 5; i++ {
		if _, err := r.Register(context.Background(), reg("c1", uint32(2+i), 600, contact("sip:alice@10.0.0.1", -1)), nil); err != nil {
			t.Fatalf("request %d after the stall: %v", i, err)
		}
	}
}

// TestActorExpiryAfterRefresh: a contact expiring sooner than the armed
// timer re-arms it earlier; a refresh then moves that expiry on while the
// timer stays armed for the old one; the early firing expires nothing and
// re-arms, and the binding expires at its new time.
func TestActorExpiryAfterRefresh(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRegistry(t, st, clk)
	register := func(cseq uint32, expires int64, uri string) {
		t.Helper()
		if _, err := r.Register(context.Background(), reg("c1", cseq, expires, contact(uri, -1)), nil); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(want int) {
		t.Helper()
		time.Sleep(50 * time.Millisecond) // a timer that fired would have written by now
		if got := streamTypes(t, st, aor); len(got) != want {
			t.Fatalf("at %v: %v, want %d events", clk.Now().Sub(t0), got, want)
		}
	}
	register(1, 3600, "sip:alice@10.0.0.1") // timer for t0+3600
	clk.Advance(10 * time.Second)
	register(2, 60, "sip:alice@10.0.0.2") // t0+70: sooner, timer re-armed
	clk.Advance(30 * time.Second)
	register(3, 60, "sip:alice@10.0.0.2") // t0+100; the timer stays at t0+70
	clk.Advance(30 * time.Second)         // t0+70: early firing
	settled(3)
	clk.Advance(29 * time.Second) // t0+99
	settled(3)
	clk.Advance(time.Second) // t0+100
	waitFor(t, "the refreshed contact to expire", func() bool { return len(streamTypes(t, st, aor)) == 4 })
	got := streamTypes(t, st, aor)
	if got[2] != "tandem.events.v1.BindingRefreshed" || got[3] != "tandem.events.v1.BindingExpired" {
		t.Fatalf("stream types %v", got)
	}
}
