package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/storetest"
)

// TestContract runs the events.Store contract suite against the embedded
// store, and checks the store's consistency whenever the suite closes it.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) events.Store {
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("Open(%s): %v", dir, err)
		}
		return checkOnClose{s, t}
	})
}

// checkOnClose runs Check before the first Close.
type checkOnClose struct {
	*Store
	t *testing.T
}

func (c checkOnClose) Close() error {
	if err := c.Check(context.Background()); err != nil && !errors.Is(err, events.ErrClosed) {
		c.t.Errorf("Check before Close: %v", err)
	}
	return c.Store.Close()
}

// openTest opens a store and, when the test ends, checks it (if still
// open) and closes it.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil && !errors.Is(err, events.ErrClosed) {
			t.Errorf("Check at the end of the test: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testEnv(tag string) *eventpb.Envelope {
	return &eventpb.Envelope{
		Time: timestamppb.New(time.Unix(1700000000, 0)),
		Node: "n1",
		Type: "tandem.test.v1.Tagged",
		Data: []byte(tag),
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "Options.Dir"},
		{Options{Dir: "x", MaxBatch: -1}, "Options.MaxBatch is -1"},
		{Options{Dir: "x", CacheSize: -5}, "Options.CacheSize is -5"},
		{Options{Dir: "x", StreamCacheSize: -2}, "Options.StreamCacheSize is -2"},
	} {
		if _, err := Open(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

func TestVersionConflictErrorValues(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	if _, err := s.Append(ctx, "call-7", events.NoStream, []*eventpb.Envelope{testEnv("a"), testEnv("b")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, "call-7", 1, []*eventpb.Envelope{testEnv("c")})
	var vc *VersionConflictError
	if !errors.As(err, &vc) || !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("error %v (%T), want a *VersionConflictError wrapping ErrVersionConflict", err, err)
	}
	if vc.Stream != "call-7" || vc.Expected != 1 || vc.Actual != 2 {
		t.Fatalf("conflict %+v, want stream call-7 expected 1 actual 2", *vc)
	}
	if want := `stream "call-7" expected version 1, actual 2`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error text %q lacks %q", err, want)
	}
}

// TestAppendFillsEnvelopes: on success the caller's envelopes carry the
// stream, version and position the store gave them; on failure they do not.
func TestAppendFillsEnvelopes(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	if _, err := s.Append(ctx, "x", events.NoStream, []*eventpb.Envelope{testEnv("x1")}); err != nil {
		t.Fatal(err)
	}
	evs := []*eventpb.Envelope{testEnv("y1"), testEnv("y2")}
	if _, err := s.Append(ctx, "y", events.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Stream != "y" || e.Version != uint64(i+1) || e.Position != uint64(i+2) {
			t.Errorf("envelope %d: stream %q version %d position %d, want y %d %d", i, e.Stream, e.Version, e.Position, i+1, i+2)
		}
	}
	got, err := s.ReadStream(ctx, "y", 0, 10)
	if err != nil || len(got) != 2 || !proto.Equal(got[0], evs[0]) || !proto.Equal(got[1], evs[1]) {
		t.Fatalf("ReadStream = %v, %v; want %v", got, err, evs)
	}
	bad := []*eventpb.Envelope{testEnv("z")}
	if _, err := s.Append(ctx, "y", 0, bad); err == nil {
		t.Fatal("stale append succeeded")
	}
	if bad[0].Stream != "" || bad[0].Version != 0 || bad[0].Position != 0 {
		t.Fatalf("failed append filled the envelope: %v", bad[0])
	}
	// Fields a caller set are overwritten by the store's values.
	pre := testEnv("p")
	pre.Stream, pre.Version, pre.Position = "other", 99, 99
	res, err := s.Append(ctx, "y", 2, []*eventpb.Envelope{pre})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.ReadAll(ctx, res.Position, 1)
	if err != nil || len(got) != 1 || got[0].Stream != "y" || got[0].Version != 3 || got[0].Position != 4 {
		t.Fatalf("ReadAll(%d) = %v, %v; want y/3@4", res.Position, got, err)
	}
}

// TestInvalidAppendsEmbedded covers the limits this store adds to the
// contract's.
func TestInvalidAppendsEmbedded(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	badNode := testEnv("n")
	badNode.Node = "\xff\xfe"
	for _, tc := range []struct {
		name     string
		stream   string
		expected int64
		evs      []*eventpb.Envelope
	}{
		{"expected below AnyVersion", "a", -2, []*eventpb.Envelope{testEnv("a")}},
		{"stream too long", strings.Repeat("x", MaxStreamLen+1), events.NoStream, []*eventpb.Envelope{testEnv("a")}},
		{"stream not UTF-8", "a\xff", events.NoStream, []*eventpb.Envelope{testEnv("a")}},
		{"node not UTF-8", "a", events.NoStream, []*eventpb.Envelope{badNode}},
	} {
		if _, err := s.Append(ctx, tc.stream, tc.expected, tc.evs); !errors.Is(err, events.ErrInvalidAppend) {
			t.Errorf("%s: %v, want ErrInvalidAppend", tc.name, err)
		}
	}
	if h := s.Head(); h != 0 {
		t.Fatalf("Head = %d after invalid appends, want 0", h)
	}
	if _, err := s.Append(ctx, strings.Repeat("x", MaxStreamLen), events.NoStream, []*eventpb.Envelope{testEnv("a")}); err != nil {
		t.Fatalf("append to a stream of exactly MaxStreamLen bytes: %v", err)
	}
}

// TestGroupDecisions queues several appends before the committer starts,
// so they form one group, and checks that each is decided in queue order
// against the versions left by those before it, and that rejected ones take
// nothing from the others.
func TestGroupDecisions(t *testing.T) {
	dir := t.TempDir()
	s, err := open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		stream   string
		expected int64
		n        int
		want     appendOutcome
		conflict *VersionConflictError
	}
	steps := []step{
		{stream: "x", expected: events.NoStream, n: 1, want: appendOutcome{lastVersion: 1, lastPosition: 1}},
		{stream: "x", expected: events.NoStream, n: 1, conflict: &VersionConflictError{"x", 0, 1}},
		{stream: "x", expected: 1, n: 2, want: appendOutcome{lastVersion: 3, lastPosition: 3}},
		{stream: "y", expected: 5, n: 1, conflict: &VersionConflictError{"y", 5, 0}},
		{stream: "y", expected: events.AnyVersion, n: 2, want: appendOutcome{lastVersion: 2, lastPosition: 5}},
		{stream: "x", expected: 2, n: 1, conflict: &VersionConflictError{"x", 2, 3}},
		{stream: "x", expected: 3, n: 1, want: appendOutcome{lastVersion: 4, lastPosition: 6}},
	}
	reqs := make([]*appendReq, len(steps))
	for i, st := range steps {
		evs := make([]*eventpb.Envelope, st.n)
		for j := range evs {
			evs[j] = testEnv(fmt.Sprintf("%d.%d", i, j))
		}
		if reqs[i], err = newAppendReq(st.stream, st.expected, evs); err != nil {
			t.Fatal(err)
		}
		s.queue <- reqs[i]
	}
	go s.run()
	defer s.Close()
	for i, st := range steps {
		out := <-reqs[i].done
		if st.conflict != nil {
			var vc *VersionConflictError
			if !errors.As(out.err, &vc) || *vc != *st.conflict {
				t.Errorf("append %d (%s expected %d): %v, want conflict %+v", i, st.stream, st.expected, out.err, *st.conflict)
			}
			continue
		}
		if out != st.want {
			t.Errorf("append %d (%s expected %d): %+v, want %+v", i, st.stream, st.expected, out, st.want)
		}
	}
	if h := s.Head(); h != 6 {
		t.Fatalf("Head = %d, want 6", h)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAppendLargerThanMaxBatch: an append with more events than MaxBatch is
// committed whole, and groups around it stay correct.
func TestAppendLargerThanMaxBatch(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir(), MaxBatch: 4})
	ctx := context.Background()
	big := make([]*eventpb.Envelope, 10)
	for i := range big {
		big[i] = testEnv(fmt.Sprint(i))
	}
	res, err := s.Append(ctx, "big", events.NoStream, big)
	if err != nil || res != (events.AppendResult{Version: 10, Position: 10}) {
		t.Fatalf("Append of 10 events with MaxBatch 4 = %+v, %v", res, err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("w%d", w), int64(2*i), []*eventpb.Envelope{testEnv("a"), testEnv("b")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if h := s.Head(); h != 10+8*10*2 {
		t.Fatalf("Head = %d, want %d", h, 10+8*10*2)
	}
}

// TestStreamCacheEviction: with a cache of 2 streams, versions still come
// out right once streams are evicted (the reverse seek path).
func TestStreamCacheEviction(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir(), StreamCacheSize: 2})
	ctx := context.Background()
	for round := 0; round < 4; round++ {
		for i := 0; i < 5; i++ {
			stream := fmt.Sprintf("s%d", i)
			if _, err := s.Append(ctx, stream, int64(round), []*eventpb.Envelope{testEnv("a")}); err != nil {
				t.Fatalf("round %d %s: %v", round, stream, err)
			}
			if _, err := s.Append(ctx, stream, int64(round), []*eventpb.Envelope{testEnv("b")}); !errors.Is(err, events.ErrVersionConflict) {
				t.Fatalf("round %d %s: repeated expected %d gave %v, want a conflict", round, stream, round, err)
			}
		}
	}
	if n := s.versions.ll.Len(); n > 2 {
		t.Fatalf("cache holds %d streams, limit 2", n)
	}
}

func TestOnAppend(t *testing.T) {
	type call struct {
		lat time.Duration
		n   int
		err error
	}
	var mu sync.Mutex
	var calls []call
	s := openTest(t, Options{Dir: t.TempDir(), OnAppend: func(lat time.Duration, n int, err error) {
		mu.Lock()
		calls = append(calls, call{lat, n, err})
		mu.Unlock()
	}})
	ctx := context.Background()
	_, _ = s.Append(ctx, "a", events.NoStream, []*eventpb.Envelope{testEnv("1"), testEnv("2")})
	_, _ = s.Append(ctx, "a", events.NoStream, []*eventpb.Envelope{testEnv("3")})
	_, _ = s.Append(ctx, "", events.NoStream, []*eventpb.Envelope{testEnv("4")})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("OnAppend called %d times, want 3", len(calls))
	}
	if calls[0].n != 2 || calls[0].err != nil || calls[0].lat <= 0 {
		t.Errorf("first call %+v, want 2 events, no error, positive latency", calls[0])
	}
	if calls[1].n != 1 || !errors.Is(calls[1].err, events.ErrVersionConflict) {
		t.Errorf("second call %+v, want 1 event and a version conflict", calls[1])
	}
	if !errors.Is(calls[2].err, events.ErrInvalidAppend) {
		t.Errorf("third call %+v, want ErrInvalidAppend", calls[2])
	}
}

func TestAppendCancelledContext(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "a", events.NoStream, []*eventpb.Envelope{testEnv("1")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	if h := s.Head(); h != 0 {
		t.Fatalf("Head = %d, want 0", h)
	}
}

// TestCloseIdempotentAndDrains: Close with appends in flight answers every
// one of them (committed, or ErrClosed), a second Close returns nil, and
// what was acknowledged is there after reopening.
func TestCloseIdempotentAndDrains(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]uint64{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("w%d", w)
			for i := 0; ; i++ {
				res, err := s.Append(ctx, stream, int64(i), []*eventpb.Envelope{testEnv("x")})
				if errors.Is(err, events.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("%s append %d: %v", stream, i, err)
					return
				}
				mu.Lock()
				acked[stream] = res.Version
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait() // every Append returned
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Check(ctx); !errors.Is(err, events.ErrClosed) {
		t.Fatalf("Check after Close: %v, want ErrClosed", err)
	}
	s2 := openTest(t, Options{Dir: dir})
	for stream, v := range acked {
		got, err := s2.ReadStream(ctx, stream, 0, 1<<20)
		if err != nil || uint64(len(got)) < v {
			t.Fatalf("%s after reopen: %d events, %v; acknowledged version %d", stream, len(got), err, v)
		}
	}
}

// TestCorruptRecord: a record that fails its checksum is reported by every
// read that meets it, naming the position, and by Check.
func TestCorruptRecord(t *testing.T) {
	// No tail: live subscribers would otherwise get the events from memory
	// and never read the damaged record.
	s := openTest(t, Options{Dir: t.TempDir(), TailSize: -1})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := s.Append(ctx, "a", int64(i), []*eventpb.Envelope{testEnv(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	rec, closer, err := s.db.Get(eventKey(nil, 2))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), rec...)
	closer.Close()
	bad[len(bad)-1] ^= 0x40
	if err := s.db.Set(eventKey(nil, 2), bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	checkCorrupt := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, events.ErrCorrupt) || !strings.Contains(err.Error(), "position 2") {
			t.Errorf("%s: %v, want ErrCorrupt naming position 2", what, err)
		}
	}
	_, err = s.ReadAll(ctx, 1, 10)
	checkCorrupt("ReadAll", err)
	_, err = s.ReadStream(ctx, "a", 1, 10)
	checkCorrupt("ReadStream", err)
	checkCorrupt("Subscribe", s.Subscribe(ctx, 0, func(*eventpb.Envelope) error { return nil }))
	checkCorrupt("Check", s.Check(ctx))
	if got, err := s.ReadAll(ctx, 3, 10); err != nil || len(got) != 1 {
		t.Errorf("ReadAll(3) past the bad record = %v, %v", got, err)
	}
	// Put it back so the cleanup Check passes.
	bad[len(bad)-1] ^= 0x40
	if err := s.db.Set(eventKey(nil, 2), bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestCheckFindsDamage breaks the store in each way Check must notice.
func TestCheckFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(db *pebble.DB) error
		want   string
	}{
		{"gap in positions", func(db *pebble.DB) error {
			return db.Delete(eventKey(nil, 3), pebble.Sync)
		}, "position 4 follows position 2"},
		{"missing index entry", func(db *pebble.DB) error {
			return db.Delete(streamKey(nil, "b", 2), pebble.Sync)
		}, `position 4 (stream "b" version 2) has no stream index entry`},
		{"index points elsewhere", func(db *pebble.DB) error {
			return db.Set(streamKey(nil, "b", 2), []byte{0, 0, 0, 0, 0, 0, 0, 5}, pebble.Sync)
		}, "index entry is 0000000000000005, want position 4"},
		{"stray index entry", func(db *pebble.DB) error {
			return db.Set(streamKey(nil, "b", 3), []byte{0, 0, 0, 0, 0, 0, 0, 9}, pebble.Sync)
		}, "6 stream index entries for 5 records"},
		{"stream starts at 2", func(db *pebble.DB) error {
			return db.Set(streamKey(nil, "c", 2), []byte{0, 0, 0, 0, 0, 0, 0, 9}, pebble.Sync)
		}, `stream "c" starts at version 2`},
		{"record under the wrong position", func(db *pebble.DB) error {
			rec, closer, err := db.Get(eventKey(nil, 5))
			if err != nil {
				return err
			}
			defer closer.Close()
			return db.Set(eventKey(nil, 6), rec, pebble.Sync)
		}, "position 6: record names position 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			// a/1@1 b/1@2 a/2@3 b/2@4 a/3@5
			for i, st := range []string{"a", "b", "a", "b", "a"} {
				if _, err := s.Append(ctx, st, events.AnyVersion, []*eventpb.Envelope{testEnv(fmt.Sprint(i))}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Check(ctx); err != nil {
				t.Fatalf("Check before damage: %v", err)
			}
			if err := tc.damage(s.db); err != nil {
				t.Fatal(err)
			}
			err = s.Check(ctx)
			if !errors.Is(err, events.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want ErrCorrupt containing %q", err, tc.want)
			}
		})
	}
}

// TestReadsStopAtHead: records committed to Pebble but not yet published
// are invisible to every read.
func TestReadsStopAtHead(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	if _, err := s.Append(ctx, "a", events.NoStream, []*eventpb.Envelope{testEnv("1")}); err != nil {
		t.Fatal(err)
	}
	// Write position 2 behind the committer's back, as a commit in progress
	// that has not been published yet would look.
	b := s.db.NewBatch()
	_ = b.Set(eventKey(nil, 2), appendRecord(nil, "a", 2, 2, nil, nil, nil), nil)
	_ = b.Set(streamKey(nil, "a", 2), []byte{0, 0, 0, 0, 0, 0, 0, 2}, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadAll(ctx, 0, 10); err != nil || len(got) != 1 {
		t.Fatalf("ReadAll = %d events, %v; want only position 1", len(got), err)
	}
	if got, err := s.ReadStream(ctx, "a", 0, 10); err != nil || len(got) != 1 {
		t.Fatalf("ReadStream = %d events, %v; want only version 1", len(got), err)
	}
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var seen []uint64
	_ = s.Subscribe(sctx, 0, func(e *eventpb.Envelope) error { seen = append(seen, e.Position); return nil })
	if fmt.Sprint(seen) != "[1]" {
		t.Fatalf("Subscribe delivered %v, want [1]", seen)
	}
	// Undo, so the committer's view and the cleanup Check stay right.
	b = s.db.NewBatch()
	_ = b.Delete(eventKey(nil, 2), nil)
	_ = b.Delete(streamKey(nil, "a", 2), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	for _, stream := range []string{"a", "reg-sip:alice@example.test", strings.Repeat("z", 300), "s\x00"} {
		k := streamKey(nil, stream, 42)
		st, v, ok := parseStreamKey(k)
		if !ok || st != stream || v != 42 {
			t.Errorf("parseStreamKey(streamKey(%q, 42)) = %q, %d, %v", stream, st, v, ok)
		}
	}
	if _, _, ok := parseStreamKey([]byte("s\x05ab")); ok {
		t.Error("parseStreamKey accepted a short key")
	}
	if p, ok := parseEventKey(eventKey(nil, 1<<40+3)); !ok || p != 1<<40+3 {
		t.Errorf("parseEventKey round trip = %d, %v", p, ok)
	}
	for _, tc := range []struct{ in, want string }{
		{"s\x01a", "s\x01b"}, {"a\xff", "b"}, {"\xff\xff", ""},
	} {
		if got := string(upperBound([]byte(tc.in))); got != tc.want {
			t.Errorf("upperBound(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRecordIsMarshalledEnvelope: a record's envelope bytes, as the
// committer writes them (store fields around the caller's body, prev_hash
// after it, unknown fields last), equal marshalling the decoded envelope, so
// that the chain's hashes can be recomputed from envelopes (and
// decodeRecord gives the envelope back).
func TestRecordIsMarshalledEnvelope(t *testing.T) {
	withUnknown := testEnv("u")
	// Field 12 (varint 7): a field from a newer schema.
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 12, protowire.VarintType), 7))
	for _, tc := range []struct {
		name string
		env  *eventpb.Envelope
	}{
		{"plain", testEnv("x")},
		{"no cause or data", &eventpb.Envelope{Type: "t"}},
		{"unknown fields", withUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := newAppendReq("st", events.AnyVersion, []*eventpb.Envelope{tc.env})
			if err != nil {
				t.Fatal(err)
			}
			var unknown []byte
			if req.unknown != nil {
				unknown = req.unknown[0]
			}
			link := bytes.Repeat([]byte{0xab}, hashSize)
			rec := appendRecord(nil, "st", 3, 9, req.bodies[0], link, unknown)
			e := proto.Clone(tc.env).(*eventpb.Envelope)
			e.Stream, e.Version, e.Position, e.PrevHash = "st", 3, 9, link
			got, err := decodeRecord(9, rec)
			if err != nil || !proto.Equal(got, e) {
				t.Fatalf("decodeRecord = %v, %v; want %v", got, err, e)
			}
			full, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			if !bytes.Equal(rec[4:], full) {
				t.Fatalf("record's envelope\n %x\nmarshalled envelope\n %x", rec[4:], full)
			}
		})
	}
}

// TestAppendCancelledWhileQueued: once queued, an append is decided by the
// committer even if its caller gives up; the caller is told the outcome is
// unknown.
func TestAppendCancelledWhileQueued(t *testing.T) {
	s, err := open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel) // the committer is not running yet
	_, err = s.Append(ctx, "a", events.NoStream, []*eventpb.Envelope{testEnv("1")})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("Append = %v, want context.Canceled with outcome unknown", err)
	}
	go s.run()
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Head() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the queued append was not committed: head %d", s.Head())
		}
		time.Sleep(time.Millisecond)
	}
	got, err := s.ReadStream(context.Background(), "a", 0, 10)
	if err != nil || len(got) != 1 || string(got[0].Data) != "1" {
		t.Fatalf("ReadStream = %v, %v", got, err)
	}
}

// TestSecondOpenFails: Pebble's LOCK file keeps a second store (in this or
// another process) off a directory in use.
func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	openTest(t, Options{Dir: dir})
	if s2, err := Open(Options{Dir: dir}); err == nil {
		s2.Close()
		t.Fatal("a second Open of a directory in use succeeded")
	}
}

// TestSubscribeTail: a subscriber that follows live gets events from the
// in-memory tail, and one that starts before the tail reads from Pebble;
// both see the same events in order.
func TestSubscribeTail(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir(), TailSize: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := s.Append(ctx, "a", int64(i), []*eventpb.Envelope{testEnv(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := s.tail.since(7, 10, 10, nil); !ok || len(got) != 4 || got[0].GetPosition() != 7 {
		t.Fatalf("tail.since(7) = %d events, ok=%v", len(got), ok)
	}
	if _, ok := s.tail.since(6, 10, 10, nil); ok {
		t.Fatal("tail claims position 6, which fell out of a ring of 4")
	}
	var got []uint64
	err := s.Subscribe(ctx, 1, func(e *eventpb.Envelope) error {
		got = append(got, e.GetPosition())
		if e.GetStream() != "a" || e.GetVersion() != e.GetPosition() || string(e.GetData()) == "" {
			t.Errorf("event %d: stream %q version %d", e.GetPosition(), e.GetStream(), e.GetVersion())
		}
		if len(got) == 10 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Fatalf("Subscribe = %v, %v", got, err)
	}
}

var errStop = errors.New("stop")

// TestLiveSubscriberSharesTheAppendedPayload: the envelope a subscriber
// gets from the tail shares Data with the appender's, so events.Unwrap
// hands it the appender's payload instead of decoding it (what saves every
// live projection a decode per event); the same event read from disk is
// decoded.
func TestLiveSubscriberSharesTheAppendedPayload(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	msg := &eventpb.CallStarted{Caller: "sip:alice@example.test", Callee: "sip:bob@example.test"}
	env, err := events.Wrap(msg, time.Unix(1700000000, 0), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-x", 0, []*eventpb.Envelope{env}); err != nil {
		t.Fatal(err)
	}
	var live proto.Message
	err = s.Subscribe(ctx, 1, func(e *eventpb.Envelope) error {
		if live, err = events.Unwrap(e); err != nil {
			return err
		}
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if live != proto.Message(msg) {
		t.Fatalf("live subscriber decoded a copy (%p), want the appended payload (%p)", live, msg)
	}
	read, err := s.ReadStream(ctx, "call-x", 1, 1)
	if err != nil || len(read) != 1 {
		t.Fatalf("ReadStream: %v, %v", read, err)
	}
	fromDisk, err := events.Unwrap(read[0])
	if err != nil {
		t.Fatal(err)
	}
	if fromDisk == proto.Message(msg) || !proto.Equal(fromDisk, msg) {
		t.Fatalf("read from disk: %v (the appended message itself: %v), want an equal decoded copy", fromDisk, fromDisk == proto.Message(msg))
	}
}

// TestContractWithCommitWindow: the contract holds when the committer
// gathers appends for a while before each fsync.
func TestContractWithCommitWindow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) events.Store {
		s, err := Open(Options{Dir: dir, CommitWindow: 2 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open(%s): %v", dir, err)
		}
		return checkOnClose{s, t}
	})
}

// TestCommitWindowGathersOnlyUnderLoad: concurrent appends share groups
// (so fewer fsyncs), and a lone writer never waits for the window.
func TestCommitWindowGathersOnlyUnderLoad(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), CommitWindow: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendOne := func(stream string) time.Duration {
		env, _ := events.Wrap(&eventpb.CallAnswered{Leg: 1}, time.Now(), "n1", &eventpb.Cause{})
		t0 := time.Now()
		if _, err := s.Append(context.Background(), stream, events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			t.Error(err)
		}
		return time.Since(t0)
	}
	for i := 0; i < 3; i++ {
		if d := appendOne("lone"); d > 150*time.Millisecond {
			t.Fatalf("a lone append waited %v for the window", d)
		}
	}
	// Concurrent writers make a group with company; from then on the
	// committer waits: an append made 50 ms after another joins its group
	// (without the window each would be committed alone). The writers
	// start together; on a loaded machine one may still come late and be
	// the last group on its own, so a few rounds are allowed.
	var wg sync.WaitGroup
	for round := 1; ; round++ {
		start := make(chan struct{})
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); <-start; appendOne(fmt.Sprintf("s%d", i)) }(i)
		}
		close(start)
		wg.Wait()
		if s.lastGroup >= 2 {
			break
		}
		if round == 5 {
			t.Fatalf("16 concurrent appends never shared a group in %d rounds (last group %d)", round, s.lastGroup)
		}
	}
	var first time.Duration
	wg.Add(1)
	go func() { defer wg.Done(); first = appendOne("early") }()
	time.Sleep(50 * time.Millisecond)
	appendOne("late")
	wg.Wait()
	// (lastGroup is written before the group's appends are answered.)
	if s.lastGroup != 2 || first < 50*time.Millisecond {
		t.Fatalf("early append took %v and the last group carried %d appends; want both in one group", first, s.lastGroup)
	}
}

// A read-only store reads what was written, refuses appends, writes
// nothing, and cannot be opened while a writer holds the directory.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Dir: filepath.Join(dir, "missing"), ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing store succeeded")
	}
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Append(ctx, "s-1", events.NoStream, []*eventpb.Envelope{testEnv("one")}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open beside a writer: %v, want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Head() != 1 {
		t.Fatalf("head %d, want 1", r.Head())
	}
	evs, err := r.ReadAll(ctx, 1, 10)
	if err != nil || len(evs) != 1 || evs[0].GetStream() != "s-1" {
		t.Fatalf("ReadAll: %v %v", evs, err)
	}
	if _, err := r.Append(ctx, "s-1", 1, []*eventpb.Envelope{testEnv("two")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
