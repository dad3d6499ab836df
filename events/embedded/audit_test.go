package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// TestChain: every event's prev_hash is the SHA-256 of the previous
// record's envelope bytes (zeros for the first), the head anchor names the
// last record and its hash, and the chain continues across Close and Open.
// Every read path (the caller's envelopes, Pebble, the in-memory tail)
// gives the same links.
func TestChain(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var appended []*eventpb.Envelope
	for round := 0; round < 2; round++ {
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		const perRound = 4 // events appended below
		var live []*eventpb.Envelope
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		subDone := make(chan error, 1)
		from := s.Head() + 1
		go func() {
			subDone <- s.Subscribe(sctx, from, func(e *eventpb.Envelope) error {
				live = append(live, e)
				if len(live) == perRound {
					return errStop
				}
				return nil
			})
		}()
		for i := 0; i < 3; i++ {
			evs := []*eventpb.Envelope{testEnv(fmt.Sprint(round, i))}
			if i == 1 {
				evs = append(evs, testEnv(fmt.Sprint(round, i, "b"))) // two events in one append
			}
			if _, err := s.Append(ctx, fmt.Sprint("s", i), events.AnyVersion, evs); err != nil {
				t.Fatal(err)
			}
			appended = append(appended, evs...)
		}
		if err := <-subDone; !errors.Is(err, errStop) {
			t.Fatalf("Subscribe: %v", err)
		}
		cancel()
		all, err := s.ReadAll(ctx, 1, 100)
		if err != nil || len(all) != len(appended) {
			t.Fatalf("ReadAll = %d events, %v; want %d", len(all), err, len(appended))
		}
		for i, e := range all {
			if !proto.Equal(e, appended[i]) {
				t.Fatalf("position %d read %v, appended %v", i+1, e, appended[i])
			}
		}
		for i, e := range live {
			if !proto.Equal(e, all[int(from)-1+i]) {
				t.Fatalf("round %d: live event %v, read %v", round, e, all[int(from)-1+i])
			}
		}
		want := make([]byte, hashSize)
		for pos := uint64(1); pos <= s.Head(); pos++ {
			rec, closer, err := s.db.Get(eventKey(nil, pos))
			if err != nil {
				t.Fatal(err)
			}
			if got := all[pos-1].GetPrevHash(); !bytes.Equal(got, want) {
				t.Fatalf("round %d: position %d prev_hash %x, want %x", round, pos, got, want)
			}
			sum := sha256.Sum256(rec[4:])
			want = sum[:]
			closer.Close()
		}
		anchor, closer, err := s.db.Get(anchorKey)
		if err != nil {
			t.Fatal(err)
		}
		if wantAnchor := binary.BigEndian.AppendUint64(nil, s.Head()); !bytes.Equal(anchor, append(wantAnchor, want...)) {
			t.Fatalf("anchor %x, want head %d and hash %x", anchor, s.Head(), want)
		}
		closer.Close()
		rep, err := s.Verify(ctx)
		if err != nil || !rep.Intact || rep.HeadPosition != s.Head() || rep.HeadHash != hex.EncodeToString(want) ||
			rep.EventsChecked != s.Head() {
			t.Fatalf("Verify = %+v, %v; want intact at head %d hash %x", rep, err, s.Head(), want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifyEmpty: a store with no events is intact, its head hash zeros.
func TestVerifyEmpty(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	rep, err := s.Verify(context.Background())
	if err != nil || !rep.Intact || rep.HeadPosition != 0 || rep.HeadHash != strings.Repeat("0", 64) || rep.FirstProblem != nil {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// tamperFixture writes a/1@1 b/1@2 a/2@3 c/1@4 b/2@5 a/3@6 into a store
// in a new directory, closes it and returns the directory.
func tamperFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "orig")
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range []string{"a", "b", "a", "c", "b", "a"} {
		if _, err := s.Append(context.Background(), st, events.AnyVersion, []*eventpb.Envelope{testEnv(fmt.Sprint("event ", i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyStore copies a closed store's directory to a new one.
func copyStore(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// verifyDir opens dir read-only and verifies it.
func verifyDir(t *testing.T, dir string) *AuditReport {
	t.Helper()
	s, err := Open(Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify: %v (tampering is a finding, not an error)", err)
	}
	return rep
}

// openPebble opens a store's Pebble directly, as someone with the files
// would, with its messages discarded.
func openPebble(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{log: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// tamperer edits a store's Pebble directly, as someone with the files would.
type tamperer struct {
	t  *testing.T
	db *pebble.DB
}

func (tm tamperer) get(key []byte) []byte {
	v, closer, err := tm.db.Get(key)
	if err != nil {
		tm.t.Fatalf("get %x: %v", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

func (tm tamperer) set(key, value []byte) {
	if err := tm.db.Set(key, value, pebble.Sync); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm tamperer) del(key []byte) {
	if err := tm.db.Delete(key, pebble.Sync); err != nil {
		tm.t.Fatal(err)
	}
}

// hash is the SHA-256 of the envelope bytes at pos: the link to it.
func (tm tamperer) hash(pos uint64) []byte {
	h := sha256.Sum256(tm.get(eventKey(nil, pos))[4:])
	return h[:]
}

// remove deletes the event at pos and the index entry of (stream, version).
func (tm tamperer) remove(pos uint64, stream string, version uint64) {
	tm.del(eventKey(nil, pos))
	tm.del(streamKey(nil, stream, version))
}

// event decodes the envelope at pos (without checking it).
func (tm tamperer) event(pos uint64) *eventpb.Envelope {
	env := &eventpb.Envelope{}
	if err := proto.Unmarshal(tm.get(eventKey(nil, pos))[4:], env); err != nil {
		tm.t.Fatal(err)
	}
	return env
}

// put stores env at pos as a well-formed record: marshalled, with its
// CRC-32C recomputed.
func (tm tamperer) put(pos uint64, env *eventpb.Envelope) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		tm.t.Fatal(err)
	}
	tm.set(eventKey(nil, pos), append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, castagnoli)), b...))
}

// swap exchanges the records at positions p and q.
func (tm tamperer) swap(p, q uint64) {
	rp, rq := tm.get(eventKey(nil, p)), tm.get(eventKey(nil, q))
	tm.set(eventKey(nil, p), rq)
	tm.set(eventKey(nil, q), rp)
}

// hiddenSwap exchanges the events at positions p and q and rewrites their
// position fields (and checksums) to match where they now lie; with index,
// their stream index entries too.
func (tm tamperer) hiddenSwap(p, q uint64, index bool) {
	ep, eq := tm.event(p), tm.event(q)
	ep.Position, eq.Position = q, p
	tm.put(p, eq)
	tm.put(q, ep)
	if index {
		tm.set(streamKey(nil, ep.Stream, ep.Version), pos8(q))
		tm.set(streamKey(nil, eq.Stream, eq.Version), pos8(p))
	}
}

func pos8(p uint64) []byte { return binary.BigEndian.AppendUint64(nil, p) }

// TestVerifyCatchesTampering alters, deletes and reorders events in copies
// of a data directory, each in its own way, and checks Verify names the
// first problem with its position and kind, while the untouched original
// stays intact.
func TestVerifyCatchesTampering(t *testing.T) {
	orig := tamperFixture(t)
	for _, tc := range []struct {
		name       string
		tamper     func(tm tamperer)
		pos        uint64
		kind       ProblemKind
		detectedBy uint64
		msg        string
	}{
		{"payload altered, CRC recomputed", func(tm tamperer) {
			e := tm.event(3)
			e.Data = []byte("event 3, as someone would rather have had it")
			tm.put(3, e)
		}, 3, ProblemAltered, 4, "position 4 holds prev_hash"},
		{"last event's payload altered, CRC recomputed", func(tm tamperer) {
			e := tm.event(6)
			e.Data = []byte("changed")
			tm.put(6, e)
		}, 6, ProblemAltered, 0, "the head anchor records"},
		{"prev_hash of the first event altered", func(tm tamperer) {
			e := tm.event(1)
			e.PrevHash = bytes.Repeat([]byte{1}, hashSize)
			tm.put(1, e)
		}, 1, ProblemAltered, 0, "the start of the chain"},
		{"bytes altered, CRC not fixed", func(tm tamperer) {
			rec := tm.get(eventKey(nil, 3))
			rec[len(rec)-40] ^= 0x20
			tm.set(eventKey(nil, 3), rec)
		}, 3, ProblemAltered, 0, "stored CRC-32C"},
		{"middle event deleted", func(tm tamperer) {
			tm.del(eventKey(nil, 3))
		}, 3, ProblemMissing, 0, "position 4 follows position 2"},
		{"middle event deleted with its index entry", func(tm tamperer) {
			tm.remove(3, "a", 2)
		}, 3, ProblemMissing, 0, "position 4 follows position 2"},
		{"middle event deleted, later ones renumbered", func(tm tamperer) {
			for p := uint64(4); p <= 6; p++ {
				e := tm.event(p)
				e.Position = p - 1
				tm.put(p-1, e)
				tm.set(streamKey(nil, e.Stream, e.Version), pos8(p-1))
			}
			tm.remove(6, "a", 2) // the record left over at 6, and a/2's entry
			tm.set(anchorKey, append(pos8(5), tm.hash(5)...))
		}, 3, ProblemAltered, 4, "not the event the store wrote there"},
		{"last event deleted", func(tm tamperer) {
			tm.remove(6, "a", 3)
		}, 6, ProblemMissing, 0, "the head anchor names position 6 but the log ends at 5"},
		{"all events deleted", func(tm tamperer) {
			for p := uint64(1); p <= 6; p++ {
				tm.del(eventKey(nil, p))
			}
		}, 1, ProblemMissing, 0, "the head anchor names position 6 but the log ends at 0"},
		{"event appended behind the store's back", func(tm tamperer) {
			e := tm.event(6)
			e.Stream, e.Version, e.Position, e.PrevHash = "d", 1, 7, tm.hash(6) // well chained
			tm.put(7, e)
			tm.set(streamKey(nil, "d", 1), pos8(7))
		}, 7, ProblemAltered, 0, "beyond the head anchor (position 6)"},
		{"head anchor deleted", func(tm tamperer) {
			tm.del(anchorKey)
		}, 6, ProblemAltered, 0, "head anchor \"mhead\" is missing"},
		{"two events swapped", func(tm tamperer) {
			tm.swap(2, 3)
		}, 2, ProblemOrder, 0, "position 2: record names position 3"},
		{"swap hidden by rewriting the position fields", func(tm tamperer) {
			tm.hiddenSwap(2, 3, false)
		}, 2, ProblemOrder, 0, `position 2 (stream "a" version 2): index entry is 0000000000000003, want position 2`},
		{"swap hidden by rewriting the position fields and the index", func(tm tamperer) {
			tm.hiddenSwap(2, 3, true)
		}, 2, ProblemAltered, 3, "position 2 is not the event the store wrote there"},
		{"same-stream swap hidden in positions and index", func(tm tamperer) {
			tm.hiddenSwap(3, 6, true) // a/2@3 and a/3@6: versions then run backwards
		}, 3, ProblemAltered, 4, "position 3 is not the event the store wrote there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyStore(t, orig)
			db := openPebble(t, dir)
			tc.tamper(tamperer{t, db})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			rep := verifyDir(t, dir)
			p := rep.FirstProblem
			if rep.Intact || p == nil {
				t.Fatalf("tampering not caught: %+v", rep)
			}
			if p.Position != tc.pos || p.Kind != tc.kind || p.DetectedBy != tc.detectedBy || !strings.Contains(p.Message, tc.msg) {
				t.Fatalf("problem %+v\nwant position %d kind %s detected by %d, message containing %q",
					*p, tc.pos, tc.kind, tc.detectedBy, tc.msg)
			}
			// A store that does not end where its anchor says is not
			// appended to: that would erase the evidence.
			if strings.Contains(p.Message, "anchor") {
				if s, err := Open(Options{Dir: dir}); !errors.Is(err, events.ErrCorrupt) || !strings.Contains(err.Error(), "refusing to append") {
					if err == nil {
						s.Close()
					}
					t.Fatalf("writable Open of a store whose anchor disagrees = %v, want refused", err)
				}
			}
		})
	}
	rep := verifyDir(t, orig)
	if !rep.Intact || rep.EventsChecked != 6 || rep.HeadPosition != 6 {
		t.Fatalf("untouched store: %+v", rep)
	}
}

// TestVerifyRewrittenHistoryNeedsTheHeadHash shows what the chain does not
// prove: someone who rewrites an event and every link after it, anchor
// included, leaves a log that verifies as intact. Only its head hash, compared
// with one kept elsewhere, gives it away.
func TestVerifyRewrittenHistoryNeedsTheHeadHash(t *testing.T) {
	orig := tamperFixture(t)
	before := verifyDir(t, orig)
	dir := copyStore(t, orig)
	db := openPebble(t, dir)
	tm := tamperer{t, db}
	e := tm.event(5)
	e.Data = []byte("rewritten")
	tm.put(5, e)
	e6 := tm.event(6)
	e6.PrevHash = tm.hash(5)
	tm.put(6, e6)
	tm.set(anchorKey, append(pos8(6), tm.hash(6)...))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	after := verifyDir(t, dir)
	if !after.Intact || after.HeadPosition != before.HeadPosition {
		t.Fatalf("a consistently rewritten log: %+v", after)
	}
	if after.HeadHash == before.HeadHash {
		t.Fatal("the rewritten log has the original head hash")
	}
}

// TestCheckReportsChainDamage: Check, which the tests run on every store
// they close, sees a broken chain too.
func TestCheckReportsChainDamage(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := s.Append(ctx, "a", events.AnyVersion, []*eventpb.Envelope{testEnv(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	tm := tamperer{t, s.db}
	e := tm.event(2)
	e.Node = "elsewhere"
	tm.put(2, e)
	if err := s.Check(ctx); !errors.Is(err, events.ErrCorrupt) || !strings.Contains(err.Error(), "position 2 hashes to") {
		t.Fatalf("Check = %v, want ErrCorrupt naming position 2's hash", err)
	}
}

// TestOpenRefusesStoreBeforeChain: a store written by a binary without
// the hash chain (format /1) is refused with the reason.
func TestOpenRefusesStoreBeforeChain(t *testing.T) {
	dir := t.TempDir()
	db := openPebble(t, dir)
	if err := db.Set(formatKey, []byte("tandem-embedded/1"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(Options{Dir: dir, ReadOnly: ro}); err == nil || !strings.Contains(err.Error(), "predates the hash chain") {
			t.Fatalf("Open (read-only %v) of a /1 store: %v", ro, err)
		}
	}
}

// TestVerifyWhileAppending: Verify works on a snapshot while appends run.
func TestVerifyWhileAppending(t *testing.T) {
	s := openTest(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300 && ctx.Err() == nil; i++ {
			if _, err := s.Append(ctx, fmt.Sprint("s", i%7), events.AnyVersion, []*eventpb.Envelope{testEnv("x")}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 20; i++ {
		rep, err := s.Verify(ctx)
		if err != nil || !rep.Intact {
			t.Fatalf("Verify during appends = %+v, %v", rep, err)
		}
	}
	<-done
}
