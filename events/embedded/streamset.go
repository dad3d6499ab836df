package embedded

import (
	"hash/maphash"
	"math/bits"
)

// streamSet answers "is there certainly no stream of this name?" without
// touching Pebble: a scalable Bloom filter of every stream name in the
// store, built at Open from the stream index and added to as streams are
// created. A new stream (every call creates one) is then proved new
// without opening a Pebble iterator, which cost about a tenth of a call's
// CPU. A "maybe" (a false positive, about 1%) falls back to Pebble. Used
// by the committer goroutine only (and by Open before it starts).
type streamSet struct {
	seed    maphash.Seed
	filters []*bloom // each twice the capacity of the one before
}

// bloom is one fixed-size Bloom filter: 10 bits and 7 probes per name.
type bloom struct {
	bits  []uint64
	mask  uint64 // len(bits)*64 - 1 (a power of two)
	n     int
	limit int // names it takes before the next filter starts
}

const (
	bloomProbes      = 7
	bloomBitsPerName = 10
)

func newStreamSet(capacity int) *streamSet {
	s := &streamSet{seed: maphash.MakeSeed()}
	s.grow(max(capacity, 1024))
	return s
}

func (s *streamSet) grow(capacity int) {
	nbits := uint64(1) << bits.Len64(uint64(capacity*bloomBitsPerName-1))
	s.filters = append(s.filters, &bloom{bits: make([]uint64, nbits/64), mask: nbits - 1, limit: capacity})
}

func (s *streamSet) hashes(stream string) (uint64, uint64) {
	h := maphash.String(s.seed, stream)
	return h, h>>32 | h<<32 | 1 // odd second hash: probes cover the table
}

// add records stream.
func (s *streamSet) add(stream string) {
	cur := s.filters[len(s.filters)-1]
	if cur.n >= cur.limit {
		s.grow(cur.limit * 2)
		cur = s.filters[len(s.filters)-1]
	}
	h1, h2 := s.hashes(stream)
	for i := uint64(0); i < bloomProbes; i++ {
		p := (h1 + i*h2) & cur.mask
		cur.bits[p>>6] |= 1 << (p & 63)
	}
	cur.n++
}

// mayContain is false only when stream was never added.
func (s *streamSet) mayContain(stream string) bool {
	h1, h2 := s.hashes(stream)
	for _, f := range s.filters {
		hit := true
		for i := uint64(0); i < bloomProbes && hit; i++ {
			p := (h1 + i*h2) & f.mask
			hit = f.bits[p>>6]&(1<<(p&63)) != 0
		}
		if hit {
			return true
		}
	}
	return false
}
