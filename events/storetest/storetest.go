// Package storetest is the contract suite for events.Store: every
// implementation runs it from its own tests,
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, dir string) events.Store { ... })
//	}
//
// The suite checks the values the contract promises (versions, positions,
// payloads, error kinds, what is and is not written), not merely that calls
// return: a store that skips a version check, leaves a gap, duplicates a
// delivery or loses data across a reopen fails it. It opens stores through a
// Factory on directories it owns, so it can close and reopen them.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Factory opens a store on dir, creating it or reopening what a previous
// store left there. It fails t when it cannot. The suite closes every store
// it opens.
type Factory func(t *testing.T, dir string) events.Store

// wait bounds every wait of the suite for an asynchronous outcome.
const wait = 20 * time.Second

// Run runs the contract suite against the stores f opens.
func Run(t *testing.T, f Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, f Factory)
	}{
		{"EmptyStore", testEmptyStore},
		{"AppendNoStream", testAppendNoStream},
		{"AppendNoStreamOnExistingStream", testAppendNoStreamOnExisting},
		{"AppendExactExpectedVersion", testAppendExactVersion},
		{"StaleExpectedVersion", testStaleVersion},
		{"FutureExpectedVersion", testFutureVersion},
		{"AnyVersion", testAnyVersion},
		{"MultiEventAppendAtomic", testMultiEventAtomic},
		{"InvalidAppends", testInvalidAppends},
		{"ReadStream", testReadStream},
		{"StreamVersion", testStreamVersion},
		{"ReadAll", testReadAll},
		{"RaceSameStream", testRaceSameStream},
		{"ConcurrentDistinctStreams", testConcurrentDistinctStreams},
		{"SubscribeFromStart", func(t *testing.T, f Factory) { testSubscribe(t, f, 0) }},
		{"SubscribeFromMiddle", func(t *testing.T, f Factory) { testSubscribe(t, f, 37) }},
		{"SubscribeFromFuture", testSubscribeFromFuture},
		{"SubscribeHandlerError", testSubscribeHandlerError},
		{"SubscribeContextCancel", testSubscribeCancel},
		{"SubscribeClose", testSubscribeClose},
		{"SlowSubscriberDoesNotBlockAppends", testSlowSubscriber},
		{"OperationsAfterClose", testAfterClose},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

// open opens a store on a fresh directory and closes it when the test ends.
func open(t *testing.T, f Factory) (events.Store, string) {
	t.Helper()
	dir := t.TempDir()
	return openOn(t, f, dir), dir
}

func openOn(t *testing.T, f Factory, dir string) events.Store {
	t.Helper()
	s := f(t, dir)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// ev builds an envelope whose every writer field is set and derived from
// tag, so a read-back can be compared field by field.
func ev(tag string) *eventpb.Envelope {
	return &eventpb.Envelope{
		Time: timestamppb.New(time.Date(2024, 5, 17, 9, 30, 0, 123456789, time.UTC)),
		Node: "node-" + tag,
		Cause: &eventpb.Cause{
			CallId: "call-" + tag + "@example.test",
			Cseq:   7,
			Method: "REGISTER",
			Branch: "z9hG4bK-" + tag,
			Source: "udp:192.0.2.1:5060",
		},
		Type: "tandem.test.v1.Tagged",
		Data: []byte("payload of " + tag),
	}
}

func evs(tags ...string) []*eventpb.Envelope {
	out := make([]*eventpb.Envelope, len(tags))
	for i, tag := range tags {
		out[i] = ev(tag)
	}
	return out
}

// want is what a read must return for ev(tag) stored at (stream, version,
// position).
func want(tag, stream string, version, position uint64) *eventpb.Envelope {
	e := ev(tag)
	e.Stream, e.Version, e.Position = stream, version, position
	return e
}

func mustAppend(t *testing.T, s events.Store, stream string, expected int64, es []*eventpb.Envelope) events.AppendResult {
	t.Helper()
	res, err := s.Append(ctxT(t), stream, expected, es)
	if err != nil {
		t.Fatalf("Append(%q, expected %d, %d events): %v", stream, expected, len(es), err)
	}
	return res
}

func checkResult(t *testing.T, what string, got, want events.AppendResult) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: result {Version:%d Position:%d}, want {Version:%d Position:%d}",
			what, got.Version, got.Position, want.Version, want.Position)
	}
}

func readStream(t *testing.T, s events.Store, stream string, from uint64, max int) []*eventpb.Envelope {
	t.Helper()
	got, err := s.ReadStream(ctxT(t), stream, from, max)
	if err != nil {
		t.Fatalf("ReadStream(%q, from %d, max %d): %v", stream, from, max, err)
	}
	return got
}

func readAll(t *testing.T, s events.Store, from uint64, max int) []*eventpb.Envelope {
	t.Helper()
	got, err := s.ReadAll(ctxT(t), from, max)
	if err != nil {
		t.Fatalf("ReadAll(from %d, max %d): %v", from, max, err)
	}
	return got
}

// equal fails t unless got and want hold the same envelopes in order.
func equal(t *testing.T, what string, got, want []*eventpb.Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events %s, want %d %s", what, len(got), brief(got), len(want), brief(want))
	}
	for i := range got {
		if !SameEvent(got[i], want[i]) {
			t.Fatalf("%s: event %d is\n  %v\nwant\n  %v", what, i, got[i], want[i])
		}
	}
}

// SameEvent tells whether got is the event want describes. PrevHash is
// compared only when want has one: a store that keeps a hash chain fills it
// on what it returns (see events.Store), and the suite's expectations do
// not know the hashes.
func SameEvent(got, want *eventpb.Envelope) bool {
	if len(want.GetPrevHash()) == 0 && len(got.GetPrevHash()) > 0 {
		got = proto.Clone(got).(*eventpb.Envelope)
		got.PrevHash = nil
	}
	return proto.Equal(got, want)
}

// brief lists (stream, version, position) of es, for failure messages.
func brief(es []*eventpb.Envelope) string {
	const most = 20
	s := "["
	for i, e := range es {
		if i == most {
			s += fmt.Sprintf(" ... %d more", len(es)-most)
			break
		}
		s += fmt.Sprintf(" %s/%d@%d", e.GetStream(), e.GetVersion(), e.GetPosition())
	}
	return s + " ]"
}

func wantConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("%s: error %v, want one wrapping events.ErrVersionConflict", what, err)
	}
}

func checkHead(t *testing.T, s events.Store, want uint64) {
	t.Helper()
	if got := s.Head(); got != want {
		t.Fatalf("Head() = %d, want %d", got, want)
	}
}

func testEmptyStore(t *testing.T, f Factory) {
	s, _ := open(t, f)
	checkHead(t, s, 0)
	equal(t, "ReadAll of an empty store", readAll(t, s, 0, 10), nil)
	equal(t, "ReadAll(1) of an empty store", readAll(t, s, 1, 10), nil)
	equal(t, "ReadStream of a missing stream", readStream(t, s, "nope", 0, 10), nil)
}

func testAppendNoStream(t *testing.T, f Factory) {
	s, _ := open(t, f)
	checkResult(t, "first append", mustAppend(t, s, "reg-alice", events.NoStream, evs("a1")), events.AppendResult{Version: 1, Position: 1})
	checkResult(t, "second stream", mustAppend(t, s, "reg-bob", events.NoStream, evs("b1")), events.AppendResult{Version: 1, Position: 2})
	checkHead(t, s, 2)
	equal(t, "ReadStream reg-alice", readStream(t, s, "reg-alice", 0, 10), []*eventpb.Envelope{want("a1", "reg-alice", 1, 1)})
	equal(t, "ReadStream reg-bob", readStream(t, s, "reg-bob", 1, 10), []*eventpb.Envelope{want("b1", "reg-bob", 1, 2)})
	equal(t, "ReadAll", readAll(t, s, 0, 10), []*eventpb.Envelope{want("a1", "reg-alice", 1, 1), want("b1", "reg-bob", 1, 2)})
}

func testAppendNoStreamOnExisting(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "call-1", events.NoStream, evs("x1"))
	_, err := s.Append(ctxT(t), "call-1", events.NoStream, evs("x2"))
	wantConflict(t, err, "NoStream on a stream at version 1")
	checkHead(t, s, 1)
	equal(t, "ReadStream after the conflict", readStream(t, s, "call-1", 0, 10), []*eventpb.Envelope{want("x1", "call-1", 1, 1)})
}

func testAppendExactVersion(t *testing.T, f Factory) {
	s, _ := open(t, f)
	var wantEvs []*eventpb.Envelope
	for v := uint64(1); v <= 5; v++ {
		tag := fmt.Sprintf("v%d", v)
		res := mustAppend(t, s, "trunk-a", int64(v-1), evs(tag))
		checkResult(t, fmt.Sprintf("append with expected %d", v-1), res, events.AppendResult{Version: v, Position: v})
		wantEvs = append(wantEvs, want(tag, "trunk-a", v, v))
	}
	equal(t, "ReadStream trunk-a", readStream(t, s, "trunk-a", 0, 100), wantEvs)
}

// conflictWritesNothing appends 3 events, then tries expected, which must
// conflict and leave the store as it was.
func conflictWritesNothing(t *testing.T, f Factory, expected int64) {
	s, _ := open(t, f)
	mustAppend(t, s, "span-1", events.NoStream, evs("s1", "s2"))
	mustAppend(t, s, "other", events.NoStream, evs("o1"))
	mustAppend(t, s, "span-1", 2, evs("s3"))
	before := readAll(t, s, 0, 100)
	_, err := s.Append(ctxT(t), "span-1", expected, evs("bad1", "bad2"))
	wantConflict(t, err, fmt.Sprintf("expected %d on a stream at version 3", expected))
	checkHead(t, s, 4)
	equal(t, "ReadAll after the conflict", readAll(t, s, 0, 100), before)
	equal(t, "ReadStream after the conflict", readStream(t, s, "span-1", 0, 100), []*eventpb.Envelope{
		want("s1", "span-1", 1, 1), want("s2", "span-1", 2, 2), want("s3", "span-1", 3, 4),
	})
	// The stream still takes the right version, at the next position.
	checkResult(t, "append after the conflict", mustAppend(t, s, "span-1", 3, evs("s4")), events.AppendResult{Version: 4, Position: 5})
}

func testStaleVersion(t *testing.T, f Factory) {
	for _, expected := range []int64{1, 2} {
		t.Run(fmt.Sprintf("expected=%d", expected), func(t *testing.T) { conflictWritesNothing(t, f, expected) })
	}
}

func testFutureVersion(t *testing.T, f Factory) {
	for _, expected := range []int64{4, 100} {
		t.Run(fmt.Sprintf("expected=%d", expected), func(t *testing.T) { conflictWritesNothing(t, f, expected) })
	}
	t.Run("missing stream", func(t *testing.T) {
		s, _ := open(t, f)
		_, err := s.Append(ctxT(t), "nobody", 1, evs("n1"))
		wantConflict(t, err, "expected 1 on a stream that does not exist")
		checkHead(t, s, 0)
		equal(t, "ReadAll", readAll(t, s, 0, 10), nil)
	})
}

func testAnyVersion(t *testing.T, f Factory) {
	s, _ := open(t, f)
	checkResult(t, "AnyVersion on a new stream", mustAppend(t, s, "imp", events.AnyVersion, evs("i1")), events.AppendResult{Version: 1, Position: 1})
	checkResult(t, "AnyVersion on an existing stream", mustAppend(t, s, "imp", events.AnyVersion, evs("i2", "i3")), events.AppendResult{Version: 3, Position: 3})
	equal(t, "ReadStream", readStream(t, s, "imp", 0, 10), []*eventpb.Envelope{
		want("i1", "imp", 1, 1), want("i2", "imp", 2, 2), want("i3", "imp", 3, 3),
	})
}

func testMultiEventAtomic(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1"))
	res := mustAppend(t, s, "b", events.NoStream, evs("b1", "b2", "b3", "b4", "b5"))
	checkResult(t, "5-event append", res, events.AppendResult{Version: 5, Position: 6})
	mustAppend(t, s, "a", 1, evs("a2"))
	wantB := []*eventpb.Envelope{
		want("b1", "b", 1, 2), want("b2", "b", 2, 3), want("b3", "b", 3, 4), want("b4", "b", 4, 5), want("b5", "b", 5, 6),
	}
	equal(t, "ReadStream b", readStream(t, s, "b", 0, 10), wantB)
	all := append(append([]*eventpb.Envelope{want("a1", "a", 1, 1)}, wantB...), want("a2", "a", 2, 7))
	equal(t, "ReadAll", readAll(t, s, 0, 100), all)
	// A conflicting multi-event append writes none of its events.
	_, err := s.Append(ctxT(t), "b", 3, evs("x1", "x2", "x3"))
	wantConflict(t, err, "multi-event append with a stale version")
	checkHead(t, s, 7)
	equal(t, "ReadAll after the conflict", readAll(t, s, 0, 100), all)
}

func testInvalidAppends(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "ok", events.NoStream, evs("k1"))
	noType := ev("t")
	noType.Type = ""
	cases := []struct {
		name   string
		stream string
		evs    []*eventpb.Envelope
	}{
		{"empty stream", "", evs("e1")},
		{"nil events", "ok", nil},
		{"no events", "ok", []*eventpb.Envelope{}},
		{"event without type", "ok", []*eventpb.Envelope{ev("e2"), noType}},
		{"nil event", "ok", []*eventpb.Envelope{ev("e3"), nil}},
	}
	for _, tc := range cases {
		_, err := s.Append(ctxT(t), tc.stream, 1, tc.evs)
		if !errors.Is(err, events.ErrInvalidAppend) {
			t.Errorf("%s: error %v, want one wrapping events.ErrInvalidAppend", tc.name, err)
		}
	}
	checkHead(t, s, 1)
	equal(t, "ReadAll after invalid appends", readAll(t, s, 0, 10), []*eventpb.Envelope{want("k1", "ok", 1, 1)})
	checkResult(t, "valid append after invalid ones", mustAppend(t, s, "ok", 1, evs("k2")), events.AppendResult{Version: 2, Position: 2})
}

// fill appends n single-event appends to stream "s" interleaved with "t"
// (odd positions are s, even are t), returning the envelopes of s and all.
func fill(t *testing.T, s events.Store, n int) (sEvs, all []*eventpb.Envelope) {
	for i := 1; i <= n; i++ {
		sTag, tTag := fmt.Sprintf("s%d", i), fmt.Sprintf("t%d", i)
		mustAppend(t, s, "s", int64(i-1), evs(sTag))
		mustAppend(t, s, "t", int64(i-1), evs(tTag))
		ws := want(sTag, "s", uint64(i), uint64(2*i-1))
		sEvs = append(sEvs, ws)
		all = append(all, ws, want(tTag, "t", uint64(i), uint64(2*i)))
	}
	return sEvs, all
}

func testReadStream(t *testing.T, f Factory) {
	s, _ := open(t, f)
	sEvs, _ := fill(t, s, 10)
	cases := []struct {
		from uint64
		max  int
		want []*eventpb.Envelope
	}{
		{0, 100, sEvs},
		{1, 100, sEvs},
		{1, 10, sEvs},
		{1, 3, sEvs[:3]},
		{4, 3, sEvs[3:6]},
		{8, 100, sEvs[7:]},
		{10, 1, sEvs[9:]},
		{11, 10, nil},
		{1000, 10, nil},
	}
	for _, tc := range cases {
		equal(t, fmt.Sprintf("ReadStream(s, from %d, max %d)", tc.from, tc.max), readStream(t, s, "s", tc.from, tc.max), tc.want)
	}
	equal(t, "ReadStream of a missing stream", readStream(t, s, "u", 0, 10), nil)
	equal(t, "ReadStream with max 0", readStream(t, s, "s", 1, 0), nil)
	// Streams whose names extend "s" are not part of it, nor it of them.
	mustAppend(t, s, "ss", events.NoStream, evs("ss1"))
	mustAppend(t, s, "s\x00", events.NoStream, evs("s01"))
	equal(t, "ReadStream s beside ss", readStream(t, s, "s", 0, 100), sEvs)
	equal(t, "ReadStream ss", readStream(t, s, "ss", 0, 100), []*eventpb.Envelope{want("ss1", "ss", 1, 21)})
}

func testStreamVersion(t *testing.T, f Factory) {
	s, _ := open(t, f)
	version := func(stream string) uint64 {
		t.Helper()
		v, err := s.StreamVersion(ctxT(t), stream)
		if err != nil {
			t.Fatalf("StreamVersion(%q): %v", stream, err)
		}
		return v
	}
	if v := version("s"); v != 0 {
		t.Fatalf("StreamVersion of a missing stream = %d, want 0", v)
	}
	fill(t, s, 10)
	mustAppend(t, s, "ss", events.NoStream, evs("ss1", "ss2"))
	mustAppend(t, s, "s", 10, evs("s11"))
	if v := version("s"); v != 11 {
		t.Fatalf("StreamVersion(s) = %d, want 11", v)
	}
	if v := version("ss"); v != 2 {
		t.Fatalf("StreamVersion(ss) = %d, want 2 (a stream whose name extends another's is its own)", v)
	}
	if v := version("s\x00"); v != 0 {
		t.Fatalf("StreamVersion(s\\x00) = %d, want 0", v)
	}
	// The version read is one ReadStream finds.
	if got := readStream(t, s, "s", version("s"), 1); len(got) != 1 || got[0].GetVersion() != 11 {
		t.Fatalf("ReadStream at StreamVersion: %v", got)
	}
}

func testReadAll(t *testing.T, f Factory) {
	s, _ := open(t, f)
	_, all := fill(t, s, 10)
	cases := []struct {
		from uint64
		max  int
		want []*eventpb.Envelope
	}{
		{0, 100, all},
		{1, 100, all},
		{1, 20, all},
		{1, 5, all[:5]},
		{6, 5, all[5:10]},
		{15, 100, all[14:]},
		{20, 100, all[19:]},
		{21, 100, nil},
		{1000, 100, nil},
		{1, 0, nil},
	}
	for _, tc := range cases {
		equal(t, fmt.Sprintf("ReadAll(from %d, max %d)", tc.from, tc.max), readAll(t, s, tc.from, tc.max), tc.want)
	}
}

// testRaceSameStream: 16 writers try every version of one stream with the
// same expected version, in lockstep rounds so that they really meet in the
// store, while a background writer keeps the store busy (so that winners and
// losers land in the same commit of a store that groups commits); exactly
// one wins each version, and the losers leave no trace: no version, no
// position, positions stay exactly 1..N.
func testRaceSameStream(t *testing.T, f Factory) {
	const writers, versions = 16, 20
	s, _ := open(t, f)
	ctx := ctxT(t)
	bgStop, bgDone := make(chan struct{}), make(chan error, 1)
	var bgCount uint64
	go func() {
		for ; ; bgCount++ {
			select {
			case <-bgStop:
				bgDone <- nil
				return
			default:
			}
			if _, err := s.Append(ctx, "background", int64(bgCount), evs(fmt.Sprintf("bg%d", bgCount))); err != nil {
				bgDone <- err
				return
			}
		}
	}()
	type win struct {
		writer int
		res    events.AppendResult
	}
	wins := make([][]win, versions+1) // by version
	var mu sync.Mutex
	errs := make(chan error, writers*versions)
	for v := 0; v < versions; v++ {
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		for w := 0; w < writers; w++ {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				res, err := s.Append(ctx, "call-race", int64(v), evs(fmt.Sprintf("w%d-v%d", w, v+1)))
				switch {
				case err == nil:
					mu.Lock()
					wins[v+1] = append(wins[v+1], win{w, res})
					mu.Unlock()
				case errors.Is(err, events.ErrVersionConflict):
				default:
					errs <- fmt.Errorf("writer %d, expected %d: %w", w, v, err)
				}
			}()
		}
		ready.Wait()
		close(start)
		done.Wait()
	}
	close(bgStop)
	if err := <-bgDone; err != nil {
		t.Fatalf("background writer: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := readStream(t, s, "call-race", 0, 1000)
	if len(got) != versions {
		t.Fatalf("stream has %d events %s, want %d", len(got), brief(got), versions)
	}
	for v := 1; v <= versions; v++ {
		if len(wins[v]) != 1 {
			t.Fatalf("version %d won by %d writers %v, want exactly 1", v, len(wins[v]), wins[v])
		}
		w := wins[v][0]
		if w.res.Version != uint64(v) {
			t.Fatalf("winner of version %d got version %d", v, w.res.Version)
		}
		equal(t, fmt.Sprintf("version %d", v), got[v-1:v], []*eventpb.Envelope{
			want(fmt.Sprintf("w%d-v%d", w.writer, v), "call-race", uint64(v), w.res.Position),
		})
	}
	total := versions + bgCount
	checkHead(t, s, total)
	all := readAll(t, s, 0, int(total)+10)
	if uint64(len(all)) != total {
		t.Fatalf("ReadAll returned %d events, want %d (%d race winners, %d background)", len(all), total, versions, bgCount)
	}
	for i, e := range all {
		if e.GetPosition() != uint64(i+1) {
			t.Fatalf("ReadAll event %d has position %d, want %d", i, e.GetPosition(), i+1)
		}
	}
	if bg := readStream(t, s, "background", 0, int(total)+10); uint64(len(bg)) != bgCount {
		t.Fatalf("background stream has %d events, want %d", len(bg), bgCount)
	}
	t.Logf("%d versions raced by %d writers beside %d background appends", versions, writers, bgCount)
}

// testConcurrentDistinctStreams: many writers on their own streams fill
// positions 1..N with no gap, each stream contiguous in its own order.
func testConcurrentDistinctStreams(t *testing.T, f Factory) {
	const writers, perWriter = 32, 15
	s, _ := open(t, f)
	ctx := ctxT(t)
	results := make([][]events.AppendResult, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("call-%d", w)
			for i := 0; i < perWriter; i++ {
				res, err := s.Append(ctx, stream, int64(i), evs(fmt.Sprintf("%s-%d", stream, i+1)))
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				results[w] = append(results[w], res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const n = writers * perWriter
	checkHead(t, s, n)
	all := readAll(t, s, 0, 2*n)
	if len(all) != n {
		t.Fatalf("ReadAll returned %d events, want %d", len(all), n)
	}
	byPos := make(map[uint64]*eventpb.Envelope, n)
	for i, e := range all {
		if e.GetPosition() != uint64(i+1) {
			t.Fatalf("ReadAll event %d has position %d, want %d", i, e.GetPosition(), i+1)
		}
		byPos[e.GetPosition()] = e
	}
	for w := 0; w < writers; w++ {
		stream := fmt.Sprintf("call-%d", w)
		var wantEvs []*eventpb.Envelope
		for i, res := range results[w] {
			tag := fmt.Sprintf("%s-%d", stream, i+1)
			if res.Version != uint64(i+1) {
				t.Fatalf("%s append %d: version %d, want %d", stream, i, res.Version, i+1)
			}
			e := want(tag, stream, uint64(i+1), res.Position)
			if !SameEvent(byPos[res.Position], e) {
				t.Fatalf("%s version %d: position %d holds %v, want %v", stream, i+1, res.Position, byPos[res.Position], e)
			}
			wantEvs = append(wantEvs, e)
		}
		equal(t, "ReadStream "+stream, readStream(t, s, stream, 0, 1000), wantEvs)
	}
}

// subscriber collects what Subscribe delivers.
type subscriber struct {
	mu   sync.Mutex
	got  []*eventpb.Envelope
	done chan error
}

func subscribe(ctx context.Context, s events.Store, from uint64) *subscriber {
	sub := &subscriber{done: make(chan error, 1)}
	go func() {
		sub.done <- s.Subscribe(ctx, from, func(e *eventpb.Envelope) error {
			sub.mu.Lock()
			sub.got = append(sub.got, e)
			sub.mu.Unlock()
			return nil
		})
	}()
	return sub
}

func (sub *subscriber) events() []*eventpb.Envelope {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return append([]*eventpb.Envelope(nil), sub.got...)
}

// waitFor waits until the subscriber has n events; it fails t if it ends or
// times out first.
func (sub *subscriber) waitFor(t *testing.T, n int) []*eventpb.Envelope {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := sub.events()
		if len(got) >= n {
			return got
		}
		select {
		case err := <-sub.done:
			t.Fatalf("Subscribe ended with %v after %d of %d events", err, len(got), n)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber has %d of %d events after %v: %s", len(got), n, wait, brief(got))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (sub *subscriber) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-sub.done:
		return err
	case <-time.After(wait):
		t.Fatalf("Subscribe did not return within %v", wait)
		return nil
	}
}

// testSubscribe: history, then live events appended by concurrent writers
// while the subscriber catches up, from position from, with no gap and no
// duplicate.
func testSubscribe(t *testing.T, f Factory, from uint64) {
	const history, writers, perWriter = 60, 4, 40
	s, _ := open(t, f)
	for i := 0; i < history; i++ {
		mustAppend(t, s, fmt.Sprintf("h-%d", i%3), int64(i/3), evs(fmt.Sprintf("h%d", i)))
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	sub := subscribe(ctx, s, from)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("live-%d", w), int64(i), evs(fmt.Sprintf("l%d-%d", w, i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = history + writers*perWriter
	first := from
	if first == 0 {
		first = 1
	}
	wantN := int(total - first + 1)
	got := sub.waitFor(t, wantN)
	// Give a duplicating or overrunning store the chance to show it.
	time.Sleep(20 * time.Millisecond)
	got = sub.events()
	equal(t, fmt.Sprintf("Subscribe(from %d) deliveries", from), got, readAll(t, s, first, total))
	for i, e := range got {
		if e.GetPosition() != first+uint64(i) {
			t.Fatalf("delivery %d has position %d, want %d", i, e.GetPosition(), first+uint64(i))
		}
	}
	// Still live: one more append is delivered.
	mustAppend(t, s, "late", events.NoStream, evs("late"))
	got = sub.waitFor(t, wantN+1)
	equal(t, "last delivery", got[wantN:], []*eventpb.Envelope{want("late", "late", 1, total+1)})
	cancel()
	if err := sub.result(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe after cancel returned %v, want context.Canceled", err)
	}
}

func testSubscribeFromFuture(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1", "a2"))
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	sub := subscribe(ctx, s, 5)
	mustAppend(t, s, "a", 2, evs("a3", "a4")) // positions 3, 4: not delivered
	mustAppend(t, s, "a", 4, evs("a5", "a6")) // positions 5, 6
	sub.waitFor(t, 2)
	time.Sleep(20 * time.Millisecond)
	equal(t, "Subscribe(from 5)", sub.events(), []*eventpb.Envelope{want("a5", "a", 5, 5), want("a6", "a", 6, 6)})
}

func testSubscribeHandlerError(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1", "a2", "a3", "a4"))
	stop := errors.New("handler says stop")
	var seen []uint64
	err := s.Subscribe(ctxT(t), 0, func(e *eventpb.Envelope) error {
		seen = append(seen, e.GetPosition())
		if e.GetPosition() == 3 {
			return fmt.Errorf("at %d: %w", e.GetPosition(), stop)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Subscribe returned %v, want the handler's error", err)
	}
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Fatalf("handler saw positions %v, want [1 2 3]", seen)
	}
}

func testSubscribeCancel(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1"))
	ctx, cancel := context.WithCancel(ctxT(t))
	sub := subscribe(ctx, s, 0)
	sub.waitFor(t, 1) // caught up, now waiting for live events
	cancel()
	if err := sub.result(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe returned %v, want context.Canceled", err)
	}
	// A deadline is reported as such.
	dctx, dcancel := context.WithTimeout(ctxT(t), 30*time.Millisecond)
	defer dcancel()
	if err := s.Subscribe(dctx, 0, func(*eventpb.Envelope) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe with a deadline returned %v, want context.DeadlineExceeded", err)
	}
}

func testSubscribeClose(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1"))
	sub := subscribe(ctxT(t), s, 0)
	sub.waitFor(t, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := sub.result(t); !errors.Is(err, events.ErrClosed) {
		t.Fatalf("Subscribe after Close returned %v, want events.ErrClosed", err)
	}
}

// testSlowSubscriber: a handler that blocks does not hold up appends, and
// once released it catches up on everything, in order.
func testSlowSubscriber(t *testing.T, f Factory) {
	const n = 200
	s, _ := open(t, f)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	entered, release, all := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var delivered []uint64 // owned by the handler until done is received
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, 0, func(e *eventpb.Envelope) error {
			delivered = append(delivered, e.GetPosition())
			switch e.GetPosition() {
			case 1:
				close(entered)
				<-release
			case n:
				close(all)
			}
			return nil
		})
	}()
	mustAppend(t, s, "a", events.NoStream, evs("a1"))
	<-entered
	for i := 1; i < n; i++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.Append(actx, "a", int64(i), evs(fmt.Sprintf("a%d", i+1)))
		acancel()
		if err != nil {
			t.Fatalf("append %d while the subscriber is blocked: %v", i+1, err)
		}
	}
	checkHead(t, s, n)
	close(release)
	select {
	case <-all:
	case err := <-done:
		t.Fatalf("Subscribe ended with %v before delivering position %d", err, n)
	case <-time.After(wait):
		t.Fatalf("subscriber did not reach position %d within %v", n, wait)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe returned %v, want context.Canceled", err)
	}
	if len(delivered) != n {
		t.Fatalf("delivered %d events, want %d", len(delivered), n)
	}
	for i, p := range delivered {
		if p != uint64(i+1) {
			t.Fatalf("delivery %d has position %d, want %d (delivered %v)", i, p, i+1, delivered)
		}
	}
}

func testAfterClose(t *testing.T, f Factory) {
	s, _ := open(t, f)
	mustAppend(t, s, "a", events.NoStream, evs("a1"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := ctxT(t)
	if _, err := s.Append(ctx, "a", 1, evs("a2")); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Append after Close: %v, want events.ErrClosed", err)
	}
	if _, err := s.Append(ctx, "b", events.NoStream, evs("b1")); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Append to a new stream after Close: %v, want events.ErrClosed", err)
	}
	if _, err := s.ReadStream(ctx, "a", 0, 10); !errors.Is(err, events.ErrClosed) {
		t.Errorf("ReadStream after Close: %v, want events.ErrClosed", err)
	}
	if _, err := s.ReadAll(ctx, 0, 10); !errors.Is(err, events.ErrClosed) {
		t.Errorf("ReadAll after Close: %v, want events.ErrClosed", err)
	}
	if err := s.Subscribe(ctx, 0, func(*eventpb.Envelope) error { return nil }); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want events.ErrClosed", err)
	}
}

func testReopen(t *testing.T, f Factory) {
	dir := t.TempDir()
	s := f(t, dir)
	mustAppend(t, s, "reg-a", events.NoStream, evs("a1", "a2"))
	mustAppend(t, s, "reg-b", events.NoStream, evs("b1"))
	mustAppend(t, s, "reg-a", 2, evs("a3"))
	before := readAll(t, s, 0, 100)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openOn(t, f, dir)
	checkHead(t, s, 4)
	equal(t, "ReadAll after reopen", readAll(t, s, 0, 100), before)
	equal(t, "ReadStream reg-a after reopen", readStream(t, s, "reg-a", 0, 100), []*eventpb.Envelope{
		want("a1", "reg-a", 1, 1), want("a2", "reg-a", 2, 2), want("a3", "reg-a", 3, 4),
	})
	// Versions and positions continue where they were.
	_, err := s.Append(ctxT(t), "reg-a", 2, evs("stale"))
	wantConflict(t, err, "stale version after reopen")
	_, err = s.Append(ctxT(t), "reg-b", events.NoStream, evs("stale"))
	wantConflict(t, err, "NoStream on an existing stream after reopen")
	checkResult(t, "reg-a after reopen", mustAppend(t, s, "reg-a", 3, evs("a4")), events.AppendResult{Version: 4, Position: 5})
	checkResult(t, "reg-c after reopen", mustAppend(t, s, "reg-c", events.NoStream, evs("c1")), events.AppendResult{Version: 1, Position: 6})
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = openOn(t, f, dir)
	checkHead(t, s, 6)
	equal(t, "ReadAll after the second reopen", readAll(t, s, 5, 100), []*eventpb.Envelope{
		want("a4", "reg-a", 4, 5), want("c1", "reg-c", 1, 6),
	})
}
