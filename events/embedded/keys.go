package embedded

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Key prefixes; see the package documentation for the layout.
const (
	prefixEvent  = 'e'
	prefixStream = 's'
)

// hashSize is the size of a link of the hash chain (SHA-256).
const hashSize = sha256.Size

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	formatKey   = []byte("mformat")
	formatValue = []byte("tandem-embedded/2")
	// formatBeforeChain is the format of stores written before the hash
	// chain; Open refuses them.
	formatBeforeChain = []byte("tandem-embedded/1")

	// anchorKey holds the head anchor: the last position and its record's
	// hash, written in the batch of every group commit.
	anchorKey = []byte("mhead")
)

// eventKey appends the key of global position pos to dst.
func eventKey(dst []byte, pos uint64) []byte {
	dst = append(dst, prefixEvent)
	return binary.BigEndian.AppendUint64(dst, pos)
}

// parseEventKey returns the position named by an 'e' key.
func parseEventKey(k []byte) (uint64, bool) {
	if len(k) != 9 || k[0] != prefixEvent {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// streamPrefix appends the prefix shared by all index keys of stream to dst:
// 's' | uvarint(len(stream)) | stream.
func streamPrefix(dst []byte, stream string) []byte {
	dst = append(dst, prefixStream)
	dst = binary.AppendUvarint(dst, uint64(len(stream)))
	return append(dst, stream...)
}

// streamKey appends the index key of (stream, version) to dst.
func streamKey(dst []byte, stream string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(streamPrefix(dst, stream), version)
}

// parseStreamKey splits an 's' key into stream and version.
func parseStreamKey(k []byte) (stream string, version uint64, ok bool) {
	if len(k) < 1 || k[0] != prefixStream {
		return "", 0, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)-1-w) != n+8 {
		return "", 0, false
	}
	s := k[1+w : 1+w+int(n)]
	return string(s), binary.BigEndian.Uint64(k[1+w+int(n):]), true
}

// upperBound returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (prefix is all 0xff).
func upperBound(prefix []byte) []byte {
	b := append([]byte(nil), prefix...)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}

// appendRecord appends the record of one event to dst: the CRC-32C of the
// envelope, then the envelope. body is the envelope's known fields
// marshalled with stream, version, position and prev_hash unset, and
// unknown its unknown fields (usually none). The store's fields 1-3 are
// encoded in front of body and prev_hash (9) after it, then unknown: the
// same bytes as marshalling the whole envelope (known fields in number
// order, unknown fields last) without re-marshalling on the committer's
// goroutine.
func appendRecord(dst []byte, stream string, version, pos uint64, body, prevHash, unknown []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, stream)
	dst = protowire.AppendTag(dst, 2, protowire.VarintType)
	dst = protowire.AppendVarint(dst, version)
	dst = protowire.AppendTag(dst, 3, protowire.VarintType)
	dst = protowire.AppendVarint(dst, pos)
	dst = append(dst, body...)
	dst = protowire.AppendTag(dst, 9, protowire.BytesType)
	dst = protowire.AppendBytes(dst, prevHash)
	dst = append(dst, unknown...)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// recordHash is the link of the hash chain for a record: the SHA-256 of its
// envelope bytes (the record without its CRC), which the next event's
// prev_hash holds. A record too short for its CRC hashes as empty; it fails
// its checksum anyway.
func recordHash(rec []byte) [hashSize]byte {
	if len(rec) < 4 {
		return sha256.Sum256(nil)
	}
	return sha256.Sum256(rec[4:])
}

// appendAnchor appends the head anchor's value to dst: the last position
// (8 bytes big-endian), then the hash of its record.
func appendAnchor(dst []byte, pos uint64, hash *[hashSize]byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, pos)
	return append(dst, hash[:]...)
}

// parseAnchor splits a head anchor's value.
func parseAnchor(v []byte) (pos uint64, hash [hashSize]byte, ok bool) {
	if len(v) != 8+hashSize {
		return 0, hash, false
	}
	copy(hash[:], v[8:])
	return binary.BigEndian.Uint64(v), hash, true
}

// decodeRecord verifies and decodes the record stored under position pos.
// rec may be reused by the caller afterwards: the envelope copies what it
// keeps. A damaged record is an error wrapping events.ErrCorrupt.
func decodeRecord(pos uint64, rec []byte) (*eventpb.Envelope, error) {
	env, p := checkRecord(pos, rec)
	if p != nil {
		return nil, p.err()
	}
	return env, nil
}

// checkRecord is decodeRecord reporting what is wrong as a Problem: a
// record that fails its checksum or does not decode is altered, one that
// names another position is out of order.
func checkRecord(pos uint64, rec []byte) (*eventpb.Envelope, *Problem) {
	if len(rec) < 4 {
		return nil, problemf(pos, ProblemAltered, "position %d: record is %d bytes, shorter than its 4-byte checksum",
			pos, len(rec))
	}
	want := binary.BigEndian.Uint32(rec)
	if got := crc32.Checksum(rec[4:], castagnoli); got != want {
		return nil, problemf(pos, ProblemAltered, "position %d: stored CRC-32C %08x, computed %08x over %d bytes",
			pos, want, got, len(rec)-4)
	}
	env := &eventpb.Envelope{}
	if err := proto.Unmarshal(rec[4:], env); err != nil {
		return nil, problemf(pos, ProblemAltered, "position %d: envelope does not decode: %v", pos, err)
	}
	if env.GetPosition() != pos {
		return nil, problemf(pos, ProblemOrder, "position %d: record names position %d (stream %q version %d)",
			pos, env.GetPosition(), env.GetStream(), env.GetVersion())
	}
	return env, nil
}
