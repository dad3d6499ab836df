package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/tandemswitch/tandem/events"
)

// ProblemKind classifies what Verify found wrong with the log.
type ProblemKind string

// The kinds of problem. See Problem.
const (
	// ProblemMissing: an event is not there. A gap in the positions, or the
	// head anchor (or the published head) names a position past the end.
	ProblemMissing ProblemKind = "missing"
	// ProblemOrder: an event is not where it belongs. A record under a
	// position other than the one it names, or one that its stream's index
	// does not place there.
	ProblemOrder ProblemKind = "order"
	// ProblemAltered: an event's content changed. Its record fails its
	// checksum or does not decode, or its hash no longer equals the
	// prev_hash the next event (or the head anchor) recorded for it. Where
	// event k's prev_hash does not match event k-1, k-1 is reported when
	// the event after k still vouches for k, and k when it does not (k was
	// changed or moved there with its position rewritten).
	ProblemAltered ProblemKind = "altered"
)

// Problem is the first inconsistency Verify found.
type Problem struct {
	// Position of the event concerned: the altered, misplaced or missing
	// one. 0 when the problem is in the stream index alone and names no
	// event.
	Position uint64      `json:"position"`
	Kind     ProblemKind `json:"kind"`
	// Message says what was found, with every value involved.
	Message string `json:"message"`
	// DetectedBy is, for an event found altered through the chain, the
	// later position whose prev_hash disagrees with it (0 otherwise, and
	// when it is the head anchor that disagrees).
	DetectedBy uint64 `json:"detected_by,omitempty"`
}

func problemf(pos uint64, kind ProblemKind, format string, args ...any) *Problem {
	return &Problem{Position: pos, Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// err is the problem as an error wrapping events.ErrCorrupt.
func (p *Problem) err() error { return fmt.Errorf("%w: %s", events.ErrCorrupt, p.Message) }

// AuditReport is the outcome of Verify.
type AuditReport struct {
	// Intact is true when the whole log checked out: no problem.
	Intact bool `json:"intact"`
	// EventsChecked is how many records the walk read; when it found a
	// problem, the one where it stopped is included.
	EventsChecked uint64 `json:"events_checked"`
	// HeadPosition is the last position in the log (0 when empty).
	HeadPosition uint64 `json:"head_position"`
	// HeadHash is the hash of the record at HeadPosition, in hex: 64 zeros
	// for an empty log. Keep it somewhere else: a log rewritten from the
	// first altered event on, anchor included, is only caught by
	// comparing it with a head hash recorded before (see the package
	// documentation).
	HeadHash string `json:"head_hash"`
	// FirstProblem is the first problem the walk met (it goes in position
	// order, then checks the anchor and the stream index); nil when Intact.
	FirstProblem *Problem `json:"first_problem,omitempty"`
}

// Verify walks the whole log on a snapshot and checks that it is exactly
// what the store appended: positions are 1..last with no gap; every record
// passes its checksum, decodes, names its own position, has stream, version
// and type, and is indexed under its (stream, version) with the index
// pointing back at it; the first event's prev_hash is 32 zero bytes and
// every later one's is the hash of the record before it; the head anchor
// names the last position and its record's hash; the log reaches at least
// the published head; every stream's versions run 1..n with increasing
// positions and the index holds nothing else.
//
// Damage is a finding, not an error: the report names the first problem,
// its position and kind. The error is for I/O failures, ctx and a closed
// store only. Verify reads everything (a SHA-256 per event): it is for
// tools and tests. Appends may run meanwhile; they are not seen.
func (s *Store) Verify(ctx context.Context) (*AuditReport, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	// The head before the snapshot: the snapshot holds at least that much.
	a := auditor{published: s.head.Load()}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	a.r = snap
	p, err := a.walk(ctx)
	if err != nil {
		return nil, err
	}
	rep := &AuditReport{Intact: p == nil, EventsChecked: a.read, FirstProblem: p,
		HeadPosition: a.last, HeadHash: hex.EncodeToString(a.hash[:])}
	if p != nil {
		// The walk stopped early: the head is where the log ends (unless
		// its last key is damaged too; then where the walk stopped).
		last, hash, err := lastRecord(snap)
		switch {
		case err == nil:
			rep.HeadPosition, rep.HeadHash = last, hex.EncodeToString(hash[:])
		case !errors.Is(err, events.ErrCorrupt):
			return nil, err
		}
	}
	return rep, nil
}

// auditor carries one walk over a consistent view of the store.
type auditor struct {
	r         pebble.Reader
	published uint64 // the store's published head: the log must reach it

	read uint64         // records read
	last uint64         // the last position checked
	hash [hashSize]byte // the hash of the record at last (zeros for none)
}

// walk checks the global order, the chain and the anchor, then the stream
// index, and returns the first problem.
func (a *auditor) walk(ctx context.Context) (*Problem, error) {
	if p, err := a.records(ctx); p != nil || err != nil {
		return p, err
	}
	if a.last < a.published {
		return problemf(a.last+1, ProblemMissing, "last position %d is below the published head %d",
			a.last, a.published), nil
	}
	if p, err := checkAnchor(a.r, a.last, &a.hash); p != nil || err != nil {
		return p, err
	}
	return a.index(ctx)
}

// records walks the 'e' keys in order: each record, its index entry and its
// link to the one before.
func (a *auditor) records(ctx context.Context) (*Problem, error) {
	it, err := a.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return nil, fmt.Errorf("embedded: verify: %w", err)
	}
	defer it.Close()
	idx, err := a.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return nil, fmt.Errorf("embedded: verify: %w", err)
	}
	defer idx.Close()
	ikey := make([]byte, 0, 64)
	for ok := it.First(); ok; ok = it.Next() {
		a.read++
		want := a.last + 1
		if want%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		pos, okKey := parseEventKey(it.Key())
		if !okKey {
			return problemf(want, ProblemOrder, "key %x after position %d is not 'e' + 8 bytes", it.Key(), a.last), nil
		}
		if pos != want {
			return problemf(want, ProblemMissing, "position %d follows position %d (want %d; published head %d)",
				pos, a.last, want, a.published), nil
		}
		rec := it.Value()
		env, p := checkRecord(pos, rec)
		if p != nil {
			return p, nil
		}
		if env.GetStream() == "" || env.GetVersion() == 0 || env.GetType() == "" {
			return problemf(pos, ProblemAltered, "position %d: stream %q version %d type %q (none may be empty)",
				pos, env.GetStream(), env.GetVersion(), env.GetType()), nil
		}
		ikey = streamKey(ikey[:0], env.GetStream(), env.GetVersion())
		if !idx.SeekGE(ikey) || !bytes.Equal(idx.Key(), ikey) {
			if err := idx.Error(); err != nil {
				return nil, fmt.Errorf("embedded: verify: %w", err)
			}
			return problemf(pos, ProblemOrder, "position %d (stream %q version %d) has no stream index entry",
				pos, env.GetStream(), env.GetVersion()), nil
		}
		if v := idx.Value(); len(v) != 8 || binary.BigEndian.Uint64(v) != pos {
			return problemf(pos, ProblemOrder, "position %d (stream %q version %d): index entry is %x, want position %d",
				pos, env.GetStream(), env.GetVersion(), v, pos), nil
		}
		hash := recordHash(rec)
		if p := a.link(pos, env.GetPrevHash()); p != nil {
			if p.DetectedBy == 0 {
				return p, nil
			}
			return a.blame(p, it, hash)
		}
		a.last, a.hash = pos, hash
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("embedded: verify: %w", err)
	}
	return nil, nil
}

// link checks the prev_hash of the event at pos against the record before.
func (a *auditor) link(pos uint64, prev []byte) *Problem {
	switch {
	case len(prev) != hashSize:
		return problemf(pos, ProblemAltered, "position %d: prev_hash is %d bytes, want %d", pos, len(prev), hashSize)
	case bytes.Equal(prev, a.hash[:]):
		return nil
	case pos == 1:
		return problemf(pos, ProblemAltered, "position 1: prev_hash is %x, want %d zero bytes (the start of the chain)",
			prev, hashSize)
	}
	p := problemf(pos-1, ProblemAltered,
		"position %d hashes to %x, but position %d holds prev_hash %x: position %d changed "+
			"(or position %d does not belong after it: an event removed, inserted or moved, with the positions rewritten)",
		pos-1, a.hash, pos, prev, pos-1, pos)
	p.DetectedBy = pos
	return p
}

// blame decides which side of the broken link p reports changed. p blames
// position k-1, whose hash is not the prev_hash that position k holds: k-1
// changed, or k is not the event the store wrote after it. Which one, the
// link alone cannot tell; what follows k can. If the next record's
// prev_hash (or, for the last event, the head anchor) still vouches for
// k's hash (khash), k is as written and k-1 changed: p stands. If it does
// not, k itself is not what the store wrote at k (changed, or moved there
// with its position rewritten), and k is reported instead. When nothing
// after k can be judged (damaged, missing), p stands. it is at k; blame
// moves it on.
func (a *auditor) blame(p *Problem, it *pebble.Iterator, khash [hashSize]byte) (*Problem, error) {
	k := p.DetectedBy
	vouched, known, next, err := a.vouches(it, k, &khash)
	if err != nil || !known || vouched {
		return p, err
	}
	by := "the head anchor"
	if next != 0 {
		by = fmt.Sprintf("position %d's prev_hash", next)
	}
	q := problemf(k, ProblemAltered,
		"position %d is not the event the store wrote there: its prev_hash is not the hash of position %d (%x), "+
			"and %s does not record its hash %x either (changed, or moved here with its position rewritten)",
		k, k-1, a.hash, by, khash)
	q.DetectedBy = next
	return q, nil
}

// vouches tells whether what follows position k, the next record's
// prev_hash (next is k+1) or, when k is the last, the head anchor (next is
// 0), records hash. known is false when that cannot be told. it is at k.
func (a *auditor) vouches(it *pebble.Iterator, k uint64, hash *[hashSize]byte) (vouched, known bool, next uint64, err error) {
	if it.Next() {
		pos, ok := parseEventKey(it.Key())
		if !ok || pos != k+1 {
			return false, false, k + 1, nil
		}
		env, p := checkRecord(pos, it.Value())
		if p != nil {
			return false, false, k + 1, nil
		}
		return bytes.Equal(env.GetPrevHash(), hash[:]), true, k + 1, nil
	}
	if err := it.Error(); err != nil {
		return false, false, 0, fmt.Errorf("embedded: verify: %w", err)
	}
	v, closer, err := a.r.Get(anchorKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, false, 0, nil
	}
	if err != nil {
		return false, false, 0, fmt.Errorf("embedded: read head anchor: %w", err)
	}
	defer closer.Close()
	pos, want, ok := parseAnchor(v)
	if !ok || pos != k {
		return false, false, 0, nil
	}
	return want == *hash, true, 0, nil
}

// checkAnchor compares the head anchor with the last record (position last,
// hash): a log cut short, extended behind the store's back, or whose last
// event changed does not match it.
func checkAnchor(r pebble.Reader, last uint64, hash *[hashSize]byte) (*Problem, error) {
	v, closer, err := r.Get(anchorKey)
	if errors.Is(err, pebble.ErrNotFound) {
		if last == 0 {
			return nil, nil // a store never appended to
		}
		return problemf(last, ProblemAltered, "the head anchor %q is missing: the newest events cannot be vouched for", anchorKey), nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: read head anchor: %w", err)
	}
	defer closer.Close()
	pos, want, ok := parseAnchor(v)
	switch {
	case !ok:
		return problemf(last, ProblemAltered, "the head anchor %q is %x (%d bytes, want %d): the newest events cannot be vouched for",
			anchorKey, v, len(v), 8+hashSize), nil
	case pos > last:
		return problemf(last+1, ProblemMissing, "the head anchor names position %d but the log ends at %d: positions %d..%d are missing",
			pos, last, last+1, pos), nil
	case pos < last:
		return problemf(pos+1, ProblemAltered, "position %d lies beyond the head anchor (position %d): the store did not append it",
			pos+1, pos), nil
	case want != *hash:
		return problemf(last, ProblemAltered, "position %d hashes to %x, but the head anchor records %x",
			last, hash[:], want[:]), nil
	}
	return nil, nil
}

// index checks each stream's index entries: versions 1..n with increasing
// positions, and exactly one entry per record (records showed that each
// record has its own entry; equal counts leave no room for strays).
func (a *auditor) index(ctx context.Context) (*Problem, error) {
	si, err := a.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return nil, fmt.Errorf("embedded: verify: %w", err)
	}
	defer si.Close()
	var (
		entries  uint64
		stream   []byte
		version  uint64
		position uint64
	)
	for ok := si.First(); ok; ok = si.Next() {
		entries++
		if entries%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		st, v, okKey := parseStreamKey(si.Key())
		if !okKey {
			return problemf(0, ProblemOrder, "index key %x does not parse", si.Key()), nil
		}
		val := si.Value()
		if len(val) != 8 {
			return problemf(0, ProblemOrder, "stream %q version %d: index value %x is not 8 bytes", st, v, val), nil
		}
		p := binary.BigEndian.Uint64(val)
		if !bytes.Equal(stream, []byte(st)) {
			if v != 1 {
				return problemf(p, ProblemOrder, "stream %q starts at version %d, want 1", st, v), nil
			}
			stream = append(stream[:0], st...)
		} else {
			if v != version+1 {
				return problemf(p, ProblemOrder, "stream %q: version %d follows version %d", st, v, version), nil
			}
			if p <= position {
				return problemf(p, ProblemOrder, "stream %q: version %d at position %d, not after version %d at position %d",
					st, v, p, version, position), nil
			}
		}
		version, position = v, p
	}
	if err := si.Error(); err != nil {
		return nil, fmt.Errorf("embedded: verify: %w", err)
	}
	if entries != a.last {
		return problemf(0, ProblemOrder, "%d stream index entries for %d records", entries, a.last), nil
	}
	return nil, nil
}

// lastRecord returns the last position in the log and the hash of its
// record (0 and zeros for an empty log).
func lastRecord(r pebble.Reader) (uint64, [hashSize]byte, error) {
	var hash [hashSize]byte
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: []byte{prefixEvent + 1},
	})
	if err != nil {
		return 0, hash, fmt.Errorf("embedded: find head: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, hash, it.Error()
	}
	pos, ok := parseEventKey(it.Key())
	if !ok {
		return 0, hash, fmt.Errorf("%w: last event key %x is not 'e' + 8 bytes", events.ErrCorrupt, it.Key())
	}
	return pos, recordHash(it.Value()), nil
}
