package registrar

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

// countingStore counts the events ReadStream returns, by stream.
type countingStore struct {
	*memstore.Store
	mu   sync.Mutex
	read map[string]int
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]*eventpb.Envelope, error) {
	evs, err := c.Store.ReadStream(ctx, stream, from, max)
	c.mu.Lock()
	c.read[stream] += len(evs)
	c.mu.Unlock()
	return evs, err
}

func (c *countingStore) reads(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read[stream]
}

func snapRegistry(t *testing.T, st events.Store, clk clock.Clock, every int) *Registry {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	r := NewRegistry(sys, Config{Store: st, Clock: clk, Node: "n1", Limits: lim, SnapshotEvery: every, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(r.Stop)
	return r
}

// An activation after a restart starts from the newest snapshot and
// replays only the events after it, and ends in the state a full replay
// gives; without a usable snapshot it replays the whole stream.
func TestActorSnapshots(t *testing.T) {
	mem := memstore.New()
	clk := clock.NewFake(t0)
	r := snapRegistry(t, mem, clk, 5)
	var last *Result
	for c := uint32(1); c <= 23; c++ {
		contacts := []ContactSpec{contact("sip:alice@10.0.0.1", -1)}
		if c%4 == 0 {
			contacts = append(contacts, contact("sip:alice@10.0.0.2", int64(600+c)))
		}
		res, err := r.Register(context.Background(), reg("c1", c, 3000, contacts...), nil)
		if err != nil {
			t.Fatal(err)
		}
		last = res
		clk.Advance(time.Second)
		// A snapshot is written off the actor's goroutine, and one that
		// comes due while another is being written waits for the next
		// event: without waiting here, how many are written depended on
		// when that goroutine ran (the last one written could be 11
		// events old, and one still being written when the count below
		// was taken changed what the activation read). The actor starts
		// it before answering, so Wait sees it.
		r.snaps.Wait()
	}
	snaps := SnapshotStreamName(aor)
	total, _ := mem.StreamVersion(context.Background(), StreamName(aor))
	// One every 5 events (one that comes due while another is being
	// written waits for the next event).
	var newest uint64
	waitFor(t, "a snapshot of one of the last 10 events", func() bool {
		v, _ := mem.StreamVersion(context.Background(), snaps)
		if v == 0 {
			return false
		}
		evs, _ := mem.ReadStream(context.Background(), snaps, v, 1)
		msg, _ := events.Unwrap(evs[0])
		newest = msg.(*eventpb.RegistrationSnapshot).GetVersion()
		return newest+10 >= total
	})
	if v, _ := mem.StreamVersion(context.Background(), snaps); v < total/10 || v > total/5 {
		t.Fatalf("%d snapshots of %d events, one every 5 wanted", v, total)
	}
	r.Stop()

	// The state a full replay gives.
	var full State
	all, _ := mem.ReadStream(context.Background(), StreamName(aor), 1, 1000)
	for _, env := range all {
		msg, _ := events.Unwrap(env)
		full.Apply(msg)
		full.Version = env.GetVersion()
	}
	if uint64(len(all)) != total || len(full.Binds) != 2 {
		t.Fatalf("%d events, %d bindings", len(all), len(full.Binds))
	}

	activate := func(st *countingStore, every int) *Result {
		t.Helper()
		r := snapRegistry(t, st, clk, every)
		if err := r.Activate(context.Background(), aor); err != nil {
			t.Fatal(err)
		}
		// A retransmission of the last REGISTER is answered from the
		// activated state, with no new event.
		res, err := r.Register(context.Background(), reg("c1", 23, 3000, contact("sip:alice@10.0.0.1", -1)), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Stop()
		return res
	}
	same := func(what string, got *Result) {
		t.Helper()
		if len(got.Bindings) != len(last.Bindings) {
			t.Fatalf("%s: %+v, want %+v", what, got.Bindings, last.Bindings)
		}
		for i := range got.Bindings {
			g, w := got.Bindings[i], last.Bindings[i]
			if g.Contact != w.Contact || !g.ExpiresAt.Equal(w.ExpiresAt) || g.CallID != w.CallID || g.CSeq != w.CSeq || g.QMilli != w.QMilli {
				t.Fatalf("%s: binding %d is %+v, want %+v", what, i, g, w)
			}
		}
	}

	st := &countingStore{Store: mem.Reopened(), read: map[string]int{}}
	same("from the snapshot", activate(st, 5))
	if n := uint64(st.reads(StreamName(aor))); n != total-newest {
		t.Fatalf("the activation read %d events of the stream, want %d (those after the snapshot at %d)", n, total-newest, newest)
	}
	// Snapshots off: the whole stream, the same state.
	st = &countingStore{Store: st.Store.Reopened(), read: map[string]int{}}
	same("by full replay", activate(st, -1))
	if n := uint64(st.reads(StreamName(aor))); n != total {
		t.Fatalf("the activation read %d events, want all %d", n, total)
	}
	// A snapshot that is not this AOR's is not used.
	bad, _ := events.Wrap(&eventpb.RegistrationSnapshot{Aor: "sip:mallory@example.test", Version: total}, t0, "n9", nil)
	if _, err := st.Store.Append(context.Background(), snaps, events.AnyVersion, []*eventpb.Envelope{bad}); err != nil {
		t.Fatal(err)
	}
	st = &countingStore{Store: st.Store.Reopened(), read: map[string]int{}}
	same("past a foreign snapshot", activate(st, 5))
	if n := uint64(st.reads(StreamName(aor))); n != total {
		t.Fatalf("the activation read %d events, want all %d", n, total)
	}
}
