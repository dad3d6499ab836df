package embedded

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Key prefixes; see the package documentation for the layout.
const (
	prefixEvent  = 'e'
	prefixStream = 's'
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	formatKey   = []byte("mformat")
	formatValue = []byte("tandem-embedded/1")
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
// envelope, then the envelope. body is the envelope marshalled with stream,
// version and position unset; the store's fields are encoded in front of it,
// which yields the same bytes as marshalling the whole envelope (fields in
// number order) without re-marshalling on the committer's goroutine.
func appendRecord(dst []byte, stream string, version, pos uint64, body []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, stream)
	dst = protowire.AppendTag(dst, 2, protowire.VarintType)
	dst = protowire.AppendVarint(dst, version)
	dst = protowire.AppendTag(dst, 3, protowire.VarintType)
	dst = protowire.AppendVarint(dst, pos)
	dst = append(dst, body...)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// decodeRecord verifies and decodes the record stored under position pos.
// rec may be reused by the caller afterwards: the envelope copies what it
// keeps.
func decodeRecord(pos uint64, rec []byte) (*eventpb.Envelope, error) {
	if len(rec) < 4 {
		return nil, fmt.Errorf("%w: position %d: record is %d bytes, shorter than its 4-byte checksum",
			events.ErrCorrupt, pos, len(rec))
	}
	want := binary.BigEndian.Uint32(rec)
	if got := crc32.Checksum(rec[4:], castagnoli); got != want {
		return nil, fmt.Errorf("%w: position %d: stored CRC-32C %08x, computed %08x over %d bytes",
			events.ErrCorrupt, pos, want, got, len(rec)-4)
	}
	env := &eventpb.Envelope{}
	if err := proto.Unmarshal(rec[4:], env); err != nil {
		return nil, fmt.Errorf("%w: position %d: envelope does not decode: %v", events.ErrCorrupt, pos, err)
	}
	if env.GetPosition() != pos {
		return nil, fmt.Errorf("%w: position %d: record names position %d (stream %q version %d)",
			events.ErrCorrupt, pos, env.GetPosition(), env.GetStream(), env.GetVersion())
	}
	return env, nil
}
