package location

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func appendTo(t *testing.T, st events.Store, stream string, msgs ...proto.Message) {
	t.Helper()
	var envs []*eventpb.Envelope
	for _, m := range msgs {
		e, err := events.Wrap(m, t0, "n1", nil)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
	}
	if _, err := st.Append(context.Background(), stream, events.AnyVersion, envs); err != nil {
		t.Fatal(err)
	}
}

func binding(contact string, ttl time.Duration, q int32) *eventpb.Binding {
	return &eventpb.Binding{Contact: contact, ExpiresAt: timestamppb.New(t0.Add(ttl)), QMilli: q}
}

func TestIndexFoldsCatchesUpAndFollows(t *testing.T) {
	st := memstore.New()
	alice, bob := "sip:alice@example.test", "sip:bob@example.test"
	appendTo(t, st, "reg-"+alice, &eventpb.BindingAdded{Aor: alice, Binding: binding("sip:a1@h", time.Hour, 500)})
	appendTo(t, st, "reg-"+alice, &eventpb.BindingAdded{Aor: alice, Binding: binding("sip:a2@h", time.Minute, -1)})
	appendTo(t, st, "call-x", &eventpb.Cause{}) // another stream: skipped silently
	appendTo(t, st, "reg-"+bob, &eventpb.BindingAdded{Aor: bob, Binding: binding("sip:b@h", time.Hour, -1)})

	ix := New()
	if err := ix.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if ix.Position() != 4 || ix.Active(t0) != 3 || ix.Active(t0.Add(2*time.Minute)) != 2 {
		t.Fatalf("position %d active %d/%d", ix.Position(), ix.Active(t0), ix.Active(t0.Add(2*time.Minute)))
	}
	got := ix.Lookup(alice, t0)
	if len(got) != 2 || got[0].Contact != "sip:a2@h" { // no q ranks first
		t.Fatalf("lookup %+v", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Subscribe(ctx, ix.Position()+1, ix.Apply) }()
	appendTo(t, st, "reg-"+bob, &eventpb.BindingExpired{Aor: bob, Contact: "sip:b@h"})
	deadline := time.Now().Add(2 * time.Second)
	for ix.Position() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("live event not folded")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	if aors := ix.AORs(); len(aors) != 1 || aors[0] != alice {
		t.Fatalf("AORs after bob expired: %v", aors)
	}
	if e := ix.Entries(t0); len(e) != 2 || e[0].AOR != alice {
		t.Fatalf("entries %+v", e)
	}
}

func TestIndexRejectsGap(t *testing.T) {
	ix := New()
	if err := ix.Apply(&eventpb.Envelope{Position: 2, Stream: "reg-x"}); err == nil {
		t.Fatal("a gap in positions was accepted")
	}
}

func TestIndexSkipsUnknownTypes(t *testing.T) {
	ix := New()
	if err := ix.Apply(&eventpb.Envelope{Position: 1, Stream: "reg-x", Type: "tandem.events.v9.FromTheFuture"}); err != nil {
		t.Fatal(err)
	}
	if ix.Skipped() != 1 || ix.Position() != 1 {
		t.Fatalf("skipped %d position %d", ix.Skipped(), ix.Position())
	}
}
