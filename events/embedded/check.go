package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/tandemswitch/tandem/events"
)

// Check verifies the whole store against a snapshot: positions are exactly
// 1..last with last >= Head(), every record passes its checksum, decodes and
// names its own position, every record is indexed under its (stream,
// version) and the index entry points back at it, every stream's versions
// run 1..n without a gap with positions increasing, and there are no index
// entries beyond those. The first violation is returned as an error wrapping
// events.ErrCorrupt with every value involved. Check reads everything: it is
// for tools and tests, not for the hot path. Appends may run meanwhile.
func (s *Store) Check(ctx context.Context) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	head := s.head.Load()
	snap := s.db.NewSnapshot()
	defer snap.Close()

	// Pass 1: the global order, and each record's index entry.
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return fmt.Errorf("embedded: check: %w", err)
	}
	defer it.Close()
	idx, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return fmt.Errorf("embedded: check: %w", err)
	}
	defer idx.Close()
	var records uint64
	ikey := make([]byte, 0, 64)
	for ok := it.First(); ok; ok = it.Next() {
		want := records + 1
		if want%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		pos, okKey := parseEventKey(it.Key())
		if !okKey {
			return fmt.Errorf("%w: check: key %x after position %d is not 'e' + 8 bytes", events.ErrCorrupt, it.Key(), records)
		}
		if pos != want {
			return fmt.Errorf("%w: check: position %d follows position %d (want %d; head %d)", events.ErrCorrupt, pos, records, want, head)
		}
		env, err := decodeRecord(pos, it.Value())
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		if env.GetStream() == "" || env.GetVersion() == 0 || env.GetType() == "" {
			return fmt.Errorf("%w: check: position %d: stream %q version %d type %q (none may be empty)",
				events.ErrCorrupt, pos, env.GetStream(), env.GetVersion(), env.GetType())
		}
		ikey = streamKey(ikey[:0], env.GetStream(), env.GetVersion())
		if !idx.SeekGE(ikey) || !bytes.Equal(idx.Key(), ikey) {
			if err := idx.Error(); err != nil {
				return fmt.Errorf("embedded: check: %w", err)
			}
			return fmt.Errorf("%w: check: position %d (stream %q version %d) has no stream index entry",
				events.ErrCorrupt, pos, env.GetStream(), env.GetVersion())
		}
		if v := idx.Value(); len(v) != 8 || binary.BigEndian.Uint64(v) != pos {
			return fmt.Errorf("%w: check: position %d (stream %q version %d): index entry is %x, want position %d",
				events.ErrCorrupt, pos, env.GetStream(), env.GetVersion(), v, pos)
		}
		records = pos
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("embedded: check: %w", err)
	}
	if records < head {
		return fmt.Errorf("%w: check: last position %d is below the published head %d", events.ErrCorrupt, records, head)
	}

	// Pass 2: each stream's versions are 1..n with increasing positions, and
	// the index holds exactly one entry per record (pass 1 showed each record
	// has its own entry; equal counts leave no room for strays).
	si, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return fmt.Errorf("embedded: check: %w", err)
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
				return err
			}
		}
		st, v, okKey := parseStreamKey(si.Key())
		if !okKey {
			return fmt.Errorf("%w: check: index key %x does not parse", events.ErrCorrupt, si.Key())
		}
		val := si.Value()
		if len(val) != 8 {
			return fmt.Errorf("%w: check: stream %q version %d: index value %x is not 8 bytes", events.ErrCorrupt, st, v, val)
		}
		p := binary.BigEndian.Uint64(val)
		if !bytes.Equal(stream, []byte(st)) {
			if v != 1 {
				return fmt.Errorf("%w: check: stream %q starts at version %d, want 1", events.ErrCorrupt, st, v)
			}
			stream = append(stream[:0], st...)
		} else {
			if v != version+1 {
				return fmt.Errorf("%w: check: stream %q: version %d follows version %d", events.ErrCorrupt, st, v, version)
			}
			if p <= position {
				return fmt.Errorf("%w: check: stream %q: version %d at position %d, not after version %d at position %d",
					events.ErrCorrupt, st, v, p, version, position)
			}
		}
		version, position = v, p
	}
	if err := si.Error(); err != nil {
		return fmt.Errorf("embedded: check: %w", err)
	}
	if entries != records {
		return fmt.Errorf("%w: check: %d stream index entries for %d records", events.ErrCorrupt, entries, records)
	}
	return nil
}
