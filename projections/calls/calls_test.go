package calls

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

func appendCall(t *testing.T, st events.Store, id string, expected int64, evs ...proto.Message) {
	t.Helper()
	var envs []*eventpb.Envelope
	for _, e := range evs {
		env, err := events.Wrap(e, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), "n1", &eventpb.Cause{})
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, env)
	}
	if _, err := st.Append(context.Background(), call.StreamName(id), expected, envs); err != nil {
		t.Fatal(err)
	}
}

// The projection lists calls from CallStarted until they end, with their
// state and legs, and rebuilds the same from position 1.
func TestLiveCalls(t *testing.T) {
	st := memstore.New()
	a, b := call.IDFor("a", "t", 1), call.IDFor("b", "t", 1)
	appendCall(t, st, a, 0, &eventpb.CallStarted{Caller: "sip:alice@x", Callee: "sip:bob@x", ALeg: &eventpb.ALeg{}},
		&eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@10.0.0.2"}, &eventpb.LegAttempted{Leg: 2, RequestUri: "sip:bob@10.0.0.3"})
	appendCall(t, st, b, 0, &eventpb.CallStarted{Caller: "sip:carol@x", Callee: "sip:bob@x", ALeg: &eventpb.ALeg{}},
		&eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@10.0.0.2"})
	appendCall(t, st, a, 3, &eventpb.LegProgress{Leg: 2, Code: 180}, &eventpb.LegAnswered{Leg: 1, Code: 200},
		&eventpb.CallAnswered{Leg: 1}, &eventpb.HoldChanged{By: "a", Held: true})
	appendCall(t, st, b, 2, &eventpb.LegFailed{Leg: 1, Code: 486}, &eventpb.CallFailed{Reason: "rejected", SipStatus: 486})

	l := New()
	if err := l.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	list := l.List()
	if len(list) != 1 || list[0].ID != a || list[0].State != "held" || !list[0].Held || list[0].AnsweredAt == nil {
		t.Fatalf("live calls: %+v", list)
	}
	if legs := list[0].Legs; len(legs) != 2 || legs[0].State != "answered" || legs[1].State != "ringing" {
		t.Fatalf("legs: %+v", legs)
	}
	appendCall(t, st, a, 7, &eventpb.CallEnded{By: "caller", Reason: "caller_bye"})
	if err := l.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if l.Count() != 0 || len(l.IDs()) != 0 {
		t.Fatalf("ended call still listed: %v", l.IDs())
	}
	// Disposable: a fresh fold from position 1 gives the same answer.
	l2 := New()
	if err := l2.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if l2.Count() != 0 || l2.Position() != l.Position() {
		t.Fatalf("rebuild: %d calls at %d, want 0 at %d", l2.Count(), l2.Position(), l.Position())
	}
}
