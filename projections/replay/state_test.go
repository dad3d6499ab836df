package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// history appends events to a memory store, one stream at a time, each
// at t0+at on node.
type historyBuilder struct {
	t  *testing.T
	st *memstore.Store
}

func (h historyBuilder) add(stream string, at time.Duration, node string, evs ...proto.Message) {
	h.t.Helper()
	envs := make([]*eventpb.Envelope, 0, len(evs))
	for _, ev := range evs {
		env, err := events.Wrap(ev, t0.Add(at), node, &eventpb.Cause{Method: "TEST"})
		if err != nil {
			h.t.Fatal(err)
		}
		envs = append(envs, env)
	}
	if _, err := h.st.Append(context.Background(), stream, events.AnyVersion, envs); err != nil {
		h.t.Fatal(err)
	}
}

func binding(contact string, expires time.Duration) *eventpb.Binding {
	return &eventpb.Binding{Contact: contact, ExpiresAt: timestamppb.New(t0.Add(expires)), UserAgent: "ua", Source: "udp:10.0.0.1:5060"}
}

func started(caller, callee string) *eventpb.CallStarted {
	return &eventpb.CallStarted{Caller: caller, Callee: callee}
}

func TestStateAt(t *testing.T) {
	st := memstore.New()
	h := historyBuilder{t, st}
	alice, bob := "sip:alice@example.test", "sip:bob@example.test"
	c1, c2, c3, c4 := call.IDFor("c1", "t", 1), call.IDFor("c2", "t", 1), call.IDFor("c3", "t", 1), call.IDFor("c4", "t", 1)
	leg := &eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@10.0.0.2"}

	h.add(registrar.StreamName(alice), 0, "n1", &eventpb.BindingAdded{Aor: alice, Binding: binding("sip:alice@10.0.0.1", 10*time.Minute)})
	h.add(call.StreamName(c1), 30*time.Second, "n1", started(alice, bob), leg)
	h.add(call.StreamName(c1), 31*time.Second, "n1", &eventpb.LegProgress{Leg: 1, Code: 180})
	h.add(call.StreamName(c1), 35*time.Second, "n1", &eventpb.LegAnswered{Leg: 1, Code: 200}, &eventpb.CallAnswered{Leg: 1})
	// Bob's binding lapses at 2m with no event: the state says so by time.
	h.add(registrar.StreamName(bob), time.Minute, "n1", &eventpb.BindingAdded{Aor: bob, Binding: binding("sip:bob@10.0.0.2", 2*time.Minute)})
	h.add(call.StreamName(c2), time.Minute, "n1", started(bob, alice), leg)
	h.add(call.StreamName(c2), 70*time.Second, "n1", &eventpb.LegFailed{Leg: 1, Code: 486}, &eventpb.CallFailed{Reason: "rejected", SipStatus: 486})
	// c3 is answered on n1, whose clock is ahead, then fails over to n2:
	// the hold n2 records is stamped before the answer that came first.
	h.add(call.StreamName(c3), 2*time.Minute, "n1", started(alice, bob), leg)
	h.add(call.StreamName(c3), 2*time.Minute+time.Second, "n1", &eventpb.LegProgress{Leg: 1, Code: 180})
	h.add(call.StreamName(c3), 2*time.Minute+10*time.Second, "n1", &eventpb.LegAnswered{Leg: 1, Code: 200}, &eventpb.CallAnswered{Leg: 1})
	h.add(call.StreamName(c3), 2*time.Minute+8*time.Second, "n2", &eventpb.HoldChanged{By: "a", Held: true, Direction: "sendonly"})
	h.add(call.StreamName(c1), 3*time.Minute, "n1", &eventpb.CallEnded{By: "caller", Reason: "caller_bye"})
	// c4 is cancelled; its leg's 487 comes after the call is over.
	h.add(call.StreamName(c4), 4*time.Minute, "n1", started(bob, alice), leg)
	h.add(call.StreamName(c4), 4*time.Minute+time.Second, "n1", &eventpb.LegProgress{Leg: 1, Code: 183})
	h.add(call.StreamName(c4), 4*time.Minute+5*time.Second, "n1", &eventpb.CallFailed{Reason: "cancel", SipStatus: 487})
	h.add(call.StreamName(c4), 4*time.Minute+6*time.Second, "n1", &eventpb.LegFailed{Leg: 1, Code: 487})
	// A newer binary's event, and a stream Tandem does not keep state of.
	h.add(registrar.StreamName(alice), 5*time.Minute, "n3", &eventpb.BindingRemoved{Aor: alice, Contact: "sip:alice@10.0.0.1"})
	future, _ := events.Wrap(&eventpb.CallAnswered{}, t0.Add(5*time.Minute), "n3", nil)
	future.Type = "tandem.events.v9.BindingAudited"
	if _, err := st.Append(context.Background(), registrar.StreamName(alice), events.AnyVersion, []*eventpb.Envelope{future}); err != nil {
		t.Fatal(err)
	}
	h.add("trunk-pstn", time.Minute, "n1", &eventpb.CallAnswered{Leg: 1})

	regAlice := Registration{AOR: alice, Contact: "sip:alice@10.0.0.1", ExpiresAt: "2026-11-22T10:10:00.000Z", UserAgent: "ua", Source: "udp:10.0.0.1:5060"}
	regBob := Registration{AOR: bob, Contact: "sip:bob@10.0.0.2", ExpiresAt: "2026-11-22T10:02:00.000Z", UserAgent: "ua", Source: "udp:10.0.0.1:5060"}
	for _, tc := range []struct {
		at    time.Duration
		regs  []Registration
		calls []Call
	}{
		{-time.Second, nil, nil},
		{30 * time.Second, []Registration{regAlice},
			[]Call{{c1, alice, bob, "trying", "2026-11-22T10:00:30.000Z"}}},
		{90 * time.Second, []Registration{regAlice, regBob},
			[]Call{{c1, alice, bob, "answered", "2026-11-22T10:00:35.000Z"}}},
		{2*time.Minute + 5*time.Second, []Registration{regAlice},
			[]Call{{c1, alice, bob, "answered", "2026-11-22T10:00:35.000Z"}, {c3, alice, bob, "ringing", "2026-11-22T10:02:00.000Z"}}},
		// 2m9s: c3's hold (2m8s by n2's clock) counts, and so does the
		// answer (2m10s by n1's) that its stream says came first.
		{2*time.Minute + 9*time.Second, []Registration{regAlice},
			[]Call{{c1, alice, bob, "answered", "2026-11-22T10:00:35.000Z"}, {c3, alice, bob, "held", "2026-11-22T10:02:10.000Z"}}},
		{4*time.Minute + 3*time.Second, []Registration{regAlice},
			[]Call{{c3, alice, bob, "held", "2026-11-22T10:02:10.000Z"}, {c4, bob, alice, "ringing", "2026-11-22T10:04:00.000Z"}}},
		{10 * time.Minute, nil,
			[]Call{{c3, alice, bob, "held", "2026-11-22T10:02:10.000Z"}}},
	} {
		at := t0.Add(tc.at)
		got, err := StateAt(context.Background(), st, at)
		if err != nil {
			t.Fatal(err)
		}
		want := &Snapshot{At: formatTime(at), Registrations: tc.regs, Calls: tc.calls}
		if want.Registrations == nil {
			want.Registrations = []Registration{}
		}
		if want.Calls == nil {
			want.Calls = []Call{}
		}
		if tc.at >= 5*time.Minute {
			want.Skipped = 1
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("at %s:\n got %+v\nwant %+v", tc.at, got, want)
		}
	}

	snap, err := StateAt(context.Background(), st, t0.Add(2*time.Minute+9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var text, js bytes.Buffer
	if err := snap.Render(&text, Text); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"state at 2026-11-22T10:02:09.000Z", "registrations bound: 1", "calls up: 2",
		"sip:alice@example.test  sip:alice@10.0.0.1  2026-11-22T10:10:00.000Z  ua",
		c3 + "  sip:alice@example.test  sip:bob@example.test  held      2026-11-22T10:02:10.000Z",
	} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("text lacks %q:\n%s", line, text.String())
		}
	}
	if err := snap.Render(&js, JSON); err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !reflect.DeepEqual(&back, snap) {
		t.Errorf("JSON does not read back: %v\n%s", err, js.String())
	}
	if !strings.Contains(js.String(), `"expires_at": "2026-11-22T10:10:00.000Z"`) {
		t.Errorf("JSON keys: %s", js.String())
	}
	if err := snap.Render(&js, SVG); err == nil {
		t.Error("a state rendered as SVG")
	}
}

// A call whose stream contradicts itself is left out and counted, and the
// fold goes on.
func TestStateAtSkipsAContradictoryStream(t *testing.T) {
	st := memstore.New()
	h := historyBuilder{t, st}
	bad, good := call.IDFor("bad", "t", 1), call.IDFor("good", "t", 1)
	h.add(call.StreamName(bad), 0, "n1", &eventpb.CallAnswered{Leg: 1}, started("sip:a@x", "sip:b@x"))
	h.add(call.StreamName(good), 0, "n1", started("sip:a@x", "sip:b@x"))
	h.add(call.StreamName(bad), time.Second, "n1", &eventpb.LegAttempted{Leg: 1})
	snap, err := StateAt(context.Background(), st, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Calls) != 1 || snap.Calls[0].ID != good || snap.Skipped != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
}
