package traffic

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

// at is 22 November 2026 at clock ("15:04:05.999"), UTC.
func at(t testing.TB, clock string) time.Time {
	t.Helper()
	c, err := time.Parse("15:04:05.999", clock)
	if err != nil {
		t.Fatal(err)
	}
	return time.Date(2026, 11, 22, c.Hour(), c.Minute(), c.Second(), c.Nanosecond(), time.UTC)
}

// ev is one event of a call history: at clock, in stream "call-<id>".
type ev struct {
	clock string
	id    string
	msg   proto.Message
}

// appendAll appends evs in the order given, each after its stream's last.
func appendAll(t testing.TB, st events.Store, evs []ev) {
	t.Helper()
	ctx := context.Background()
	for _, e := range evs {
		env, err := events.Wrap(e.msg, at(t, e.clock), "n1", &eventpb.Cause{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(ctx, "call-"+e.id, events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			t.Fatal(err)
		}
	}
}

func started(caller string) *eventpb.CallStarted {
	return &eventpb.CallStarted{Caller: caller, Callee: "sip:bob@a.test", ALeg: &eventpb.ALeg{}}
}

// scenario is eight calls of two domains (and one without) over the
// minutes 10:00, 10:01 and 10:02, in time order, with every disposition.
func scenario() []ev {
	return []ev{
		{"10:00:10", "c1", started("sip:alice@A.test")}, // answered, ends 10:01:30.5
		{"10:00:11", "c1", &eventpb.LegAttempted{Leg: 1}},
		{"10:00:20", "c1", &eventpb.LegAnswered{Leg: 1, Code: 200}},
		{"10:00:20", "c1", &eventpb.CallAnswered{Leg: 1}},
		{"10:00:30", "c2", started("sip:alice@a.test")}, // busy
		{"10:00:35", "c2", &eventpb.CallFailed{Reason: "rejected", SipStatus: 486}},
		{"10:00:40", "c3", started("sip:carol@b.test:5060")}, // cancelled
		{"10:01:05", "c3", &eventpb.CallFailed{Reason: "cancel", SipStatus: 487}},
		{"10:01:10", "c4", started("sip:carol@b.test")}, // answered, ends 10:02:15
		{"10:01:15", "c4", &eventpb.CallAnswered{Leg: 1}},
		{"10:01:15", "c4", &eventpb.HoldChanged{By: "a", Held: true}},
		{"10:01:30.5", "c1", &eventpb.CallEnded{By: "caller", Reason: "caller_bye", SipStatus: 200}},
		{"10:01:50", "c5", started("sip:alice@a.test")}, // no answer
		{"10:02:00", "c6", started("sip:dave@b.test")},  // failed
		{"10:02:01", "c6", &eventpb.CallFailed{Reason: "rejected", SipStatus: 503}},
		{"10:02:15", "c4", &eventpb.CallEnded{By: "callee", Reason: "callee_bye", SipStatus: 200}},
		{"10:02:30", "c7", started("sip:alice@a.test")}, // answered, still up
		{"10:02:40", "c7", &eventpb.CallAnswered{Leg: 1}},
		{"10:02:45", "c8", started("")}, // no caller domain, still ringing
		{"10:02:50", "c5", &eventpb.CallFailed{Reason: "no_answer", SipStatus: 480}},
	}
}

func fold(t testing.TB, p *Projection, st events.Store) {
	t.Helper()
	if err := p.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// render writes a report as text, one line a total or a minute:
// attempts answered asr acd peak end (or now, for totals).
func render(r Report) string {
	var b strings.Builder
	f := func(v *float64, prec int) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, *v)
	}
	view := func(name string, t Totals, s []Minute) {
		fmt.Fprintf(&b, "%-6s total %d %d %s %s peak=%d now=%d", name, t.Attempts, t.Answered, f(t.ASR, 3), f(t.ACD, 1), t.ConcurrentPeak, t.Concurrent)
		for _, d := range Dispositions() {
			if n := t.ByDisposition[d]; n != 0 {
				fmt.Fprintf(&b, " %s=%d", d, n)
			}
		}
		b.WriteString("\n")
		for _, m := range s {
			fmt.Fprintf(&b, "%-6s %s %d %d %s %s %d %d\n", name, m.Minute.Format("15:04"), m.Attempts, m.Answered, f(m.ASR, 3), f(m.ACD, 1), m.ConcurrentPeak, m.ConcurrentEnd)
		}
	}
	fmt.Fprintf(&b, "%s..%s %q\n", r.From.Format("15:04"), r.To.Format("15:04"), r.Domain)
	view("*", r.Totals, r.Series)
	for _, d := range r.Domains {
		view(fmt.Sprintf("%q", d.Domain), d.Totals, d.Series)
	}
	return b.String()
}

func check(t *testing.T, what string, r Report, want string) {
	t.Helper()
	if got := render(r); got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
	}
}

// The figures of the scenario, worked out by hand: answered, busy,
// cancelled, no-answer and failed calls of two domains over three minutes,
// with calls up across the minute boundaries.
func TestFold(t *testing.T) {
	st := memstore.New()
	appendAll(t, st, scenario())
	// Not a call: ignored. An unknown type in a call stream: skipped.
	reg, _ := events.Wrap(&eventpb.CallEnded{By: "caller"}, at(t, "10:02:55"), "n1", nil)
	unknown := &eventpb.Envelope{Type: "tandem.events.v1.FromTheFuture", Time: reg.GetTime(), Data: []byte{1}}
	ctx := context.Background()
	if _, err := st.Append(ctx, "reg-sip:alice@a.test", events.AnyVersion, []*eventpb.Envelope{reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, "call-c7", events.AnyVersion, []*eventpb.Envelope{unknown}); err != nil {
		t.Fatal(err)
	}
	p := New()
	fold(t, p, st)
	if p.Skipped() != 1 || p.Position() != st.Head() {
		t.Fatalf("skipped %d at %d (head %d), want 1 at the head", p.Skipped(), p.Position(), st.Head())
	}

	check(t, "all domains", p.Stats(at(t, "10:00:00"), at(t, "10:03:00"), ""), `10:00..10:03 ""
*      total 8 3 0.375 65.5 peak=3 now=2 ANSWERED=2 BUSY=1 NO ANSWER=1 CANCELLED=1 FAILED=1
*      10:00 3 1 0.333 - 2 2
*      10:01 2 1 0.500 71.0 2 2
*      10:02 3 1 0.333 60.0 3 2
""     total 1 0 0.000 - peak=1 now=1
""     10:00 0 0 - - 0 0
""     10:01 0 0 - - 0 0
""     10:02 1 0 0.000 - 1 1
"a.test" total 4 2 0.500 71.0 peak=2 now=1 ANSWERED=1 BUSY=1 NO ANSWER=1
"a.test" 10:00 2 1 0.500 - 2 1
"a.test" 10:01 1 0 0.000 71.0 1 1
"a.test" 10:02 1 1 1.000 - 2 1
"b.test" total 3 1 0.333 60.0 peak=2 now=0 ANSWERED=1 CANCELLED=1 FAILED=1
"b.test" 10:00 1 0 0.000 - 1 1
"b.test" 10:01 1 1 1.000 - 1 1
"b.test" 10:02 1 0 0.000 60.0 2 0
`)
	// A filter (any case) reports that domain alone. Minutes overlapping
	// the range count; quiet minutes carry the calls up.
	check(t, "a.test to 10:04:30", p.Stats(at(t, "10:01:59"), at(t, "10:04:30"), "A.Test"), `10:01..10:05 "a.test"
*      total 2 1 0.500 71.0 peak=2 now=1 ANSWERED=1 NO ANSWER=1
*      10:01 1 0 0.000 71.0 1 1
*      10:02 1 1 1.000 - 2 1
*      10:03 0 0 - - 1 1
*      10:04 0 0 - - 1 1
"a.test" total 2 1 0.500 71.0 peak=2 now=1 ANSWERED=1 NO ANSWER=1
"a.test" 10:01 1 0 0.000 71.0 1 1
"a.test" 10:02 1 1 1.000 - 2 1
"a.test" 10:03 0 0 - - 1 1
"a.test" 10:04 0 0 - - 1 1
`)
	// Before any call: nothing up, no domain listed; an empty range.
	check(t, "before", p.Stats(at(t, "09:58:00"), at(t, "10:00:00"), ""), `09:58..10:00 ""
*      total 0 0 - - peak=0 now=2
*      09:58 0 0 - - 0 0
*      09:59 0 0 - - 0 0
`)
	check(t, "empty range", p.Stats(at(t, "10:01:00"), at(t, "10:01:00"), ""), `10:01..10:01 ""
*      total 0 0 - - peak=0 now=2
`)

	life := p.Lifetimes()
	want := []Lifetime{
		{Key: Key{""}, Attempts: 1, Up: 1},
		{Key: Key{"a.test"}, Attempts: 4, Answered: 2, Billable: 71, Up: 1},
		{Key: Key{"b.test"}, Attempts: 3, Answered: 1, Billable: 60},
	}
	ended := []map[string]int64{{}, {"ANSWERED": 1, "BUSY": 1, "NO ANSWER": 1}, {"ANSWERED": 1, "CANCELLED": 1, "FAILED": 1}}
	for i := range want {
		want[i].Ended = map[string]int64{}
		for _, d := range Dispositions() {
			want[i].Ended[d] = ended[i][d]
		}
	}
	if !reflect.DeepEqual(life, want) {
		t.Fatalf("lifetimes:\n%+v\nwant\n%+v", life, want)
	}
}

// Disposable: folding in one go, or following the store (Subscribe) while
// the events arrive, gives the same figures.
func TestRunMatchesCatchUp(t *testing.T) {
	st := memstore.New()
	evs := scenario()
	appendAll(t, st, evs[:7])
	p := New()
	fold(t, p, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Subscribe(ctx, p.Position()+1, p.Apply) }()
	appendAll(t, st, evs[7:])
	for deadline := time.Now().Add(5 * time.Second); p.Position() < st.Head(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Run reached %d of %d", p.Position(), st.Head())
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	whole := New()
	fold(t, whole, st)
	from, to := at(t, "10:00:00"), at(t, "10:03:00")
	if a, b := render(p.Stats(from, to, "")), render(whole.Stats(from, to, "")); a != b {
		t.Fatalf("followed:\n%s\nin one go:\n%s", a, b)
	}
	if !reflect.DeepEqual(p.Lifetimes(), whole.Lifetimes()) {
		t.Fatal("lifetimes differ")
	}
}

// Only the newest KeepMinutes minutes are kept: older buckets are
// dropped as the events' time moves on, queries are cut to what is kept,
// and the calls up stay right across the cut.
func TestWindow(t *testing.T) {
	st := memstore.New()
	appendAll(t, st, scenario())
	p := New(KeepMinutes(2))
	fold(t, p, st)
	if len(p.minutes) != 2 || len(p.buckets) != 2 {
		t.Fatalf("kept minutes %v", p.minutes)
	}
	check(t, "cut to the window", p.Stats(at(t, "09:00:00"), at(t, "10:03:00"), ""), `10:01..10:03 ""
*      total 5 2 0.400 65.5 peak=3 now=2 ANSWERED=2 NO ANSWER=1 CANCELLED=1 FAILED=1
*      10:01 2 1 0.500 71.0 2 2
*      10:02 3 1 0.333 60.0 3 2
""     total 1 0 0.000 - peak=1 now=1
""     10:01 0 0 - - 0 0
""     10:02 1 0 0.000 - 1 1
"a.test" total 2 1 0.500 71.0 peak=2 now=1 ANSWERED=1 NO ANSWER=1
"a.test" 10:01 1 0 0.000 71.0 1 1
"a.test" 10:02 1 1 1.000 - 2 1
"b.test" total 2 1 0.500 60.0 peak=2 now=0 ANSWERED=1 CANCELLED=1 FAILED=1
"b.test" 10:01 1 1 1.000 - 1 1
"b.test" 10:02 1 0 0.000 60.0 2 0
`)
	// Time jumps: the next call is an hour later; everything before it
	// goes, and a long range is cut to the last two minutes.
	appendAll(t, st, []ev{{"11:00:00", "c9", started("sip:erin@b.test")}})
	fold(t, p, st)
	if len(p.minutes) != 1 {
		t.Fatalf("kept minutes %v", p.minutes)
	}
	check(t, "after the jump", p.Stats(at(t, "10:00:00"), at(t, "11:01:00"), "b.test"), `10:59..11:01 "b.test"
*      total 1 0 0.000 - peak=1 now=1
*      10:59 0 0 - - 0 0
*      11:00 1 0 0.000 - 1 1
"b.test" total 1 0 0.000 - peak=1 now=1
"b.test" 10:59 0 0 - - 0 0
"b.test" 11:00 1 0 0.000 - 1 1
`)
	// An event older than the window counts only in the lifetime totals
	// and the calls up (c8 ends: nothing up without a domain any more).
	appendAll(t, st, []ev{{"10:05:00", "c8", &eventpb.CallFailed{Reason: "cancel", SipStatus: 487}}})
	fold(t, p, st)
	if len(p.minutes) != 1 {
		t.Fatalf("a late event brought back a dropped minute: %v", p.minutes)
	}
	check(t, "late beyond the window", p.Stats(at(t, "10:59:00"), at(t, "11:01:00"), ""), `10:59..11:01 ""
*      total 1 0 0.000 - peak=2 now=2
*      10:59 0 0 - - 1 1
*      11:00 1 0 0.000 - 2 2
"a.test" total 0 0 - - peak=1 now=1
"a.test" 10:59 0 0 - - 1 1
"a.test" 11:00 0 0 - - 1 1
"b.test" total 1 0 0.000 - peak=1 now=1
"b.test" 10:59 0 0 - - 0 0
"b.test" 11:00 1 0 0.000 - 1 1
`)
	if l := p.Lifetimes()[0]; l.Key.Domain != "" || l.Ended["CANCELLED"] != 1 || l.Up != 0 {
		t.Fatalf("lifetime of no domain: %+v", l)
	}
}

// Events out of time order (another node's clock, actors appending in
// parallel) count in their own minute, and the calls up of the minutes
// after it follow.
func TestLateEventInWindow(t *testing.T) {
	st := memstore.New()
	appendAll(t, st, []ev{
		{"10:00:10", "x", started("sip:a@a.test")},
		{"10:02:00", "y", started("sip:a@a.test")},
		{"10:00:50", "x", &eventpb.CallFailed{Reason: "cancel", SipStatus: 487}}, // late
		{"10:01:30", "z", started("sip:a@a.test")},                               // late
	})
	p := New()
	fold(t, p, st)
	check(t, "late", p.Stats(at(t, "10:00:00"), at(t, "10:03:00"), "a.test"), `10:00..10:03 "a.test"
*      total 3 0 0.000 - peak=2 now=2 CANCELLED=1
*      10:00 1 0 0.000 - 1 0
*      10:01 1 0 0.000 - 1 1
*      10:02 1 0 0.000 - 2 2
"a.test" total 3 0 0.000 - peak=2 now=2 CANCELLED=1
"a.test" 10:00 1 0 0.000 - 1 0
"a.test" 10:01 1 0 0.000 - 1 1
"a.test" 10:02 1 0 0.000 - 2 2
`)
}

// Strays count nowhere: events of a call before its start or after its
// end, a second start, a second answer.
func TestStrays(t *testing.T) {
	st := memstore.New()
	appendAll(t, st, []ev{
		{"10:00:00", "s", &eventpb.CallAnswered{Leg: 1}},
		{"10:00:01", "s", started("sip:a@a.test")},
		{"10:00:02", "s", started("sip:a@b.test")},
		{"10:00:03", "s", &eventpb.CallAnswered{Leg: 1}},
		{"10:00:04", "s", &eventpb.CallAnswered{Leg: 2}},
		{"10:00:05", "s", &eventpb.CallEnded{By: "caller"}},
		{"10:00:06", "s", &eventpb.CallEnded{By: "callee"}},
		{"10:00:07", "s", &eventpb.CallFailed{Reason: "error"}},
	})
	p := New()
	fold(t, p, st)
	check(t, "strays", p.Stats(at(t, "10:00:00"), at(t, "10:01:00"), ""), `10:00..10:01 ""
*      total 1 1 1.000 2.0 peak=1 now=0 ANSWERED=1
*      10:00 1 1 1.000 2.0 1 0
"a.test" total 1 1 1.000 2.0 peak=1 now=0 ANSWERED=1
"a.test" 10:00 1 1 1.000 2.0 1 0
`)
}

// Bad input is an error, never a panic: a gap in the positions, a payload
// that does not decode.
func TestBadEvents(t *testing.T) {
	p := New()
	env, _ := events.Wrap(started("sip:a@a.test"), at(t, "10:00:00"), "n1", nil)
	env.Stream, env.Position = "call-x", 2
	if err := p.Apply(env); err == nil || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("gap: %v", err)
	}
	for _, typ := range []string{typeStarted, typeFailed} {
		p := New()
		bad := &eventpb.Envelope{Stream: "call-x", Position: 1, Type: typ, Data: []byte{0xff, 0xff}}
		if err := p.Apply(bad); !errors.Is(err, events.ErrCorrupt) || !strings.Contains(err.Error(), "position 1") {
			t.Fatalf("corrupt %s: %v", typ, err)
		}
	}
	// A query of an empty projection, or with to before from.
	empty := New()
	if r := empty.Stats(at(t, "10:00:00"), at(t, "09:00:00"), ""); len(r.Series) != 0 || len(r.Domains) != 0 {
		t.Fatalf("backwards range: %+v", r)
	}
}

func TestDomainOf(t *testing.T) {
	for in, want := range map[string]string{
		"sip:alice@Example.COM":              "example.com",
		"sips:bob@b.test:5061;transport=tls": "b.test",
		"sip:carol@[2001:db8::1]:5060":       "[2001:db8::1]",
		"sip:example.net":                    "example.net",
		"tel:+15551234567":                   "",
		"alice@example.com":                  "",
		"":                                   "",
		"sip:":                               "",
	} {
		if got := DomainOf(in); got != want {
			t.Errorf("DomainOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// Readers run while the fold does (go test -race).
func TestConcurrentReaders(t *testing.T) {
	st := memstore.New()
	for i := 0; i < 20; i++ {
		evs := scenario()
		for j := range evs {
			evs[j].id = fmt.Sprintf("%s-%d", evs[j].id, i)
		}
		appendAll(t, st, evs)
	}
	p := New()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				p.Stats(at(t, "10:00:00"), at(t, "10:03:00"), "")
				p.Lifetimes()
			}
		}()
	}
	fold(t, p, st)
	close(stop)
	wg.Wait()
	if r := p.Stats(at(t, "10:00:00"), at(t, "10:03:00"), ""); r.Totals.Attempts != 160 || r.Totals.Concurrent != 40 {
		t.Fatalf("totals %+v", r.Totals)
	}
}
