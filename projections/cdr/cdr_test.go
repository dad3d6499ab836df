package cdr

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/projections"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// history appends one call's events, each ms milliseconds after t0 and
// written by node.
type step struct {
	ms   int64
	node string
	msg  proto.Message
}

func appendCall(t *testing.T, st events.Store, id string, steps []step) {
	t.Helper()
	ctx := context.Background()
	stream := "call-" + id
	for _, s := range steps {
		env, err := events.Wrap(s.msg, t0.Add(time.Duration(s.ms)*time.Millisecond), s.node, &eventpb.Cause{Method: "INVITE"})
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := st.ReadStream(ctx, stream, 1, 1000)
		if _, err := st.Append(ctx, stream, int64(len(cur)), []*eventpb.Envelope{env}); err != nil {
			t.Fatal(err)
		}
	}
}

func started(callee string) *eventpb.CallStarted {
	return &eventpb.CallStarted{Caller: "sip:alice@example.test", Callee: "sip:" + callee + "@example.test",
		RequestUri: "sip:" + callee + "@example.test", Source: "udp:127.0.0.1:5061", Node: "n1"}
}

// scenario writes a mix of calls whose CDRs are known.
func scenario(t *testing.T, st events.Store) {
	// Answered, caller hangs up after 61.2 s of talk.
	appendCall(t, st, "answered", []step{
		{0, "n1", started("bob")},
		{5, "n1", &eventpb.LegAttempted{Leg: 1}},
		{900, "n1", &eventpb.LegProgress{Leg: 1, Code: 180}},
		{2000, "n1", &eventpb.LegAnswered{Leg: 1, Code: 200}},
		{2000, "n1", &eventpb.CallAnswered{Leg: 1}},
		{63200, "n1", &eventpb.CallEnded{By: "caller", Reason: "caller_bye", SipStatus: 200, Q850Cause: 16}},
	})
	// Forked to two contacts, leg 2 answers; spans a restart onto n2,
	// where the callee hangs up.
	appendCall(t, st, "forked", []step{
		{10, "n1", started("carol")},
		{11, "n1", &eventpb.LegAttempted{Leg: 1}},
		{11, "n1", &eventpb.LegAttempted{Leg: 2}},
		{3000, "n1", &eventpb.LegAnswered{Leg: 2, Code: 200}},
		{3000, "n1", &eventpb.CallAnswered{Leg: 2}},
		{3001, "n1", &eventpb.LegFailed{Leg: 1, Code: 487}},
		{9000, "n2", &eventpb.InDialogRelayed{FromSide: "b", Method: "INFO"}},
		{10000, "n2", &eventpb.CallEnded{By: "callee", Reason: "callee_bye", SipStatus: 200, Q850Cause: 16}},
	})
	appendCall(t, st, "busy", []step{
		{20, "n1", started("dave")},
		{21, "n1", &eventpb.LegAttempted{Leg: 1}},
		{300, "n1", &eventpb.LegFailed{Leg: 1, Code: 486}},
		{300, "n1", &eventpb.CallFailed{Reason: "rejected", SipStatus: 486, Q850Cause: 17}},
	})
	appendCall(t, st, "cancelled", []step{
		{30, "n1", started("erin")},
		{31, "n1", &eventpb.LegAttempted{Leg: 1}},
		{4000, "n1", &eventpb.CallFailed{Reason: "cancel", SipStatus: 487, Q850Cause: 16}},
	})
	appendCall(t, st, "noanswer", []step{
		{40, "n1", started("frank")},
		{41, "n1", &eventpb.LegAttempted{Leg: 1}},
		{60040, "n1", &eventpb.CallFailed{Reason: "no_answer", SipStatus: 480, Q850Cause: 19}},
	})
	appendCall(t, st, "failed", []step{
		{50, "n1", started("gina")},
		{51, "n1", &eventpb.LegAttempted{Leg: 1}},
		{80, "n1", &eventpb.CallFailed{Reason: "rejected", SipStatus: 503, Q850Cause: 41}},
	})
	// Still ringing: no CDR yet.
	appendCall(t, st, "ringing", []step{{60, "n1", started("hank")}, {61, "n1", &eventpb.LegAttempted{Leg: 1}}})
	// Not a call: ignored.
	env, _ := events.Wrap(&eventpb.CallEnded{By: "caller"}, t0, "n1", nil)
	if _, err := st.Append(context.Background(), "reg-sip:alice@example.test", events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
		t.Fatal(err)
	}
}

func openSink(t *testing.T) *Sink {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "cdr.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func export(t *testing.T, s *Sink, format string) string {
	t.Helper()
	cdrs, err := s.Export(context.Background(), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, format, cdrs); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestCDRsOfEveryDisposition(t *testing.T) {
	st := memstore.New()
	scenario(t, st)
	sink := openSink(t)
	r := &projections.Runner{Store: st, P: New(sink), BatchEvents: 3, CatchUpCommit: 3}
	if _, err := r.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Checkpoint() != st.Head() {
		t.Fatalf("checkpoint %d, head %d", r.Checkpoint(), st.Head())
	}
	want := `call_id,caller,callee,request_uri,source,start,answer,end,duration,billable,disposition,sip_status,q850_cause,hangup_side,legs,nodes
answered,sip:alice@example.test,sip:bob@example.test,sip:bob@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.000Z,2026-11-22T10:00:02.000Z,2026-11-22T10:01:03.200Z,63,62,ANSWERED,200,16,caller,1,n1
forked,sip:alice@example.test,sip:carol@example.test,sip:carol@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.010Z,2026-11-22T10:00:03.000Z,2026-11-22T10:00:10.000Z,9,7,ANSWERED,200,16,callee,2,"n1,n2"
busy,sip:alice@example.test,sip:dave@example.test,sip:dave@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.020Z,,2026-11-22T10:00:00.300Z,0,0,BUSY,486,17,callee,1,n1
cancelled,sip:alice@example.test,sip:erin@example.test,sip:erin@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.030Z,,2026-11-22T10:00:04.000Z,3,0,CANCELLED,487,16,caller,1,n1
noanswer,sip:alice@example.test,sip:frank@example.test,sip:frank@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.040Z,,2026-11-22T10:01:00.040Z,60,0,NO ANSWER,480,19,system,1,n1
failed,sip:alice@example.test,sip:gina@example.test,sip:gina@example.test,udp:127.0.0.1:5061,2026-11-22T10:00:00.050Z,,2026-11-22T10:00:00.080Z,0,0,FAILED,503,41,callee,1,n1
`
	if got := export(t, sink, "csv"); got != want {
		t.Fatalf("CSV export:\n%s\nwant:\n%s", got, want)
	}
	// The ringing call is kept in progress with the checkpoint.
	_, opens, err := sink.load(context.Background(), Name)
	if err != nil || len(opens) != 1 || opens["ringing"] == nil || opens["ringing"].Legs != 1 {
		t.Fatalf("calls in progress: %v %v", opens, err)
	}
	if !strings.Contains(export(t, sink, "json"), `"disposition": "NO ANSWER"`) {
		t.Fatal("JSON export lacks the no-answer call")
	}
}

// Folding in one go, in batches across restarts (a new Projection that
// Loads the checkpoint each time), and rebuilding from zero give
// byte-identical exports.
func TestResumeAndRebuildAreIdentical(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	scenario(t, st)
	whole := openSink(t)
	if _, err := (&projections.Runner{Store: st, P: New(whole)}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}

	// Resume: feed the store's events in slices through fresh runners.
	parts := openSink(t)
	partial := memstore.New()
	all, _ := st.ReadAll(ctx, 1, 1000)
	for i, env := range all {
		e := proto.Clone(env).(*eventpb.Envelope)
		if _, err := partial.Append(ctx, e.GetStream(), events.AnyVersion, []*eventpb.Envelope{e}); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 || i == len(all)-1 {
			if _, err := (&projections.Runner{Store: partial, P: New(parts), BatchEvents: 2, CatchUpCommit: 2}).CatchUp(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a, b := export(t, whole, "csv"), export(t, parts, "csv"); a != b {
		t.Fatalf("resumed fold differs:\n%s\nvs one go:\n%s", b, a)
	}
	before := export(t, whole, "json")
	r := &projections.Runner{Store: st, P: New(whole)}
	if _, err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if after := export(t, whole, "json"); after != before {
		t.Fatalf("rebuild differs:\n%s\nvs\n%s", after, before)
	}
}

// A CDR is never written twice: replaying a batch whose commit already
// happened (a checkpoint that went backwards) fails loudly on the
// primary key instead of doubling the row.
func TestDuplicateCDRRefused(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	scenario(t, st)
	sink := openSink(t)
	if _, err := (&projections.Runner{Store: st, P: New(sink)}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sink.write(ctx, "other", []CDR{{CallID: "busy", Start: t0, End: t0}}, nil, nil, 1); err == nil {
		t.Fatal("a second CDR for the same call was accepted")
	}
	if got := strings.Count(export(t, sink, "csv"), "\nbusy,"); got != 1 {
		t.Fatalf("busy CDRs: %d", got)
	}
}

func TestUnknownEventTypesAreSkippedAndCounted(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	appendCall(t, st, "x", []step{{0, "n1", started("bob")}})
	odd := &eventpb.Envelope{Type: "tandem.events.v1.FutureThing", Data: []byte{1, 2}, Node: "n1"}
	if _, err := st.Append(ctx, "call-x", 1, []*eventpb.Envelope{odd}); err != nil {
		t.Fatal(err)
	}
	r := &projections.Runner{Store: st, P: New(openSink(t))}
	if _, err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Skipped() != 1 || r.Checkpoint() != 2 {
		t.Fatalf("skipped %d, checkpoint %d", r.Skipped(), r.Checkpoint())
	}
}

// Run follows live events: a call that ends after the runner caught up
// gets its CDR within the flush interval.
func TestRunFollowsLiveEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memstore.New()
	sink := openSink(t)
	r := &projections.Runner{Store: st, P: New(sink), FlushInterval: 5 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	scenario(t, st)
	deadline := time.Now().Add(5 * time.Second)
	for r.Checkpoint() != st.Head() {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d, head %d", r.Checkpoint(), st.Head())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := strings.Count(export(t, sink, "csv"), "\n"); got != 7 {
		t.Fatalf("%d lines exported, want header + 6", got)
	}
}

// startedFields reads what proto.Unmarshal reads, for every field the CDR
// takes, and refuses what it refuses.
func TestStartedFieldsMatchesUnmarshal(t *testing.T) {
	m := started("bob")
	m.ALeg = &eventpb.ALeg{CallId: "x@y", Via: []string{"SIP/2.0/UDP a"}}
	m.Offer, m.MaxForwards, m.SessionExpires = []byte("v=0\r\n"), 70, 1800
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	o, err := startedFields(b)
	if err != nil {
		t.Fatal(err)
	}
	if o.Caller != m.Caller || o.Callee != m.Callee || o.RequestURI != m.RequestUri || o.Source != m.Source {
		t.Fatalf("got %+v from %v", o, m)
	}
	for _, bad := range [][]byte{b[:len(b)-1], {0x0a, 0x05, 'a'}, {0x0a, 0x01, 0xff}, {0xff}} {
		_, err := startedFields(bad)
		var want eventpb.CallStarted
		if (err == nil) != (proto.Unmarshal(bad, &want) == nil) {
			t.Errorf("%x: startedFields err %v, proto.Unmarshal disagrees", bad, err)
		}
	}
}

// The calls in progress are stored and dropped with multi-row statements,
// in chunks of stateRows: more than two chunks' worth round-trips through
// load, a second store of the same calls updates them in place, and
// dropping them all leaves none.
func TestCallsInProgressStoredAndDroppedInBatches(t *testing.T) {
	ctx := context.Background()
	s := openSink(t)
	n := 2*stateRows + 7
	opens := map[string]*open{}
	var ids []string
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		ids = append(ids, id)
		opens[id] = &open{Caller: "sip:a@x", Callee: "sip:b@x", StartMS: int64(i), Legs: 1}
	}
	if err := s.write(ctx, Name, nil, opens, nil, 10); err != nil {
		t.Fatal(err)
	}
	for _, o := range opens {
		o.AnswerMS = o.StartMS + 1000
	}
	if err := s.write(ctx, Name, nil, opens, nil, 20); err != nil {
		t.Fatal(err)
	}
	cp, got, err := s.load(ctx, Name)
	if err != nil {
		t.Fatal(err)
	}
	if cp != 20 || len(got) != n {
		t.Fatalf("checkpoint %d with %d calls in progress, want 20 and %d", cp, len(got), n)
	}
	for id, o := range opens {
		if g := got[id]; g == nil || *g != *o {
			t.Fatalf("call %s came back as %+v, want %+v", id, g, o)
		}
	}
	if err := s.write(ctx, Name, nil, nil, ids[1:], 30); err != nil {
		t.Fatal(err)
	}
	if _, got, err = s.load(ctx, Name); err != nil || len(got) != 1 || got[ids[0]] == nil {
		t.Fatalf("after dropping all but %s: %d left (%v)", ids[0], len(got), err)
	}
}
