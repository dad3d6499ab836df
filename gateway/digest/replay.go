package digest

import (
	"hash/maphash"
	"sync"
	"time"
)

// replayGuard remembers, per nonce, the highest nonce-count accepted and
// the transaction that used it, and accepts only strictly higher counts
// (RFC 7616 3.4: "the server ... MUST reject a request with a repeated nc"),
// except for a retransmission of that same transaction. Entries live in two generations
// rotated every nonce TTL, so an entry lives between one and two TTLs,
// longer than the nonce stays fresh. Memory is bounded by max; when full,
// new nonces are refused (answered stale, so the UA simply retries with a
// fresh nonce) rather than forgetting counts early. Sharded to keep lock
// contention low; safe for concurrent use.
//
// Nonces are kept by a 64-bit keyed hash (maphash, with a seed of this
// process) rather than as strings: the maps then hold no pointers for the
// garbage collector to scan (a million tracked nonces were a million
// strings), and a lookup hashes the nonce once instead of twice. Two live
// nonces sharing a hash (about one chance in 2^64 per pair, and the seed
// is not known outside the process) would at worst make a fresh nonce
// look used, which is answered stale and retried with another.
type replayGuard struct {
	seed   maphash.Seed
	shards [64]replayShard
	ttl    time.Duration
	max    int // per shard, both generations together
}

type replayShard struct {
	mu       sync.Mutex
	cur, old map[uint64]seen
	rotated  time.Time
}

type seen struct {
	nc uint32
	tx uint64 // hash of the transaction key
}

func newReplayGuard(max int, ttl time.Duration) *replayGuard {
	g := &replayGuard{seed: maphash.MakeSeed(), ttl: ttl, max: max/64 + 1}
	for i := range g.shards {
		g.shards[i].cur = map[uint64]seen{}
		g.shards[i].old = map[uint64]seen{}
	}
	return g
}

func (g *replayGuard) accept(nonce string, nc uint32, txKey string, now time.Time) bool {
	tx := maphash.String(g.seed, txKey)
	key := maphash.String(g.seed, nonce)
	s := &g.shards[key%uint64(len(g.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rotated.IsZero() {
		s.rotated = now
	}
	switch age := now.Sub(s.rotated); {
	case age >= 2*g.ttl:
		s.old, s.cur = map[uint64]seen{}, map[uint64]seen{}
		s.rotated = now
	case age >= g.ttl:
		// Size the new generation like the last one: growing a map from
		// empty under load rehashes it over and over.
		s.old, s.cur = s.cur, make(map[uint64]seen, len(s.cur))
		s.rotated = now
	}
	last, ok := s.cur[key]
	if !ok {
		last, ok = s.old[key]
	}
	if ok && nc == last.nc && tx == last.tx {
		return true // the same request again: a retransmission
	}
	if ok && nc <= last.nc {
		return false
	}
	if !ok && len(s.cur)+len(s.old) >= g.max {
		return false
	}
	s.cur[key] = seen{nc: nc, tx: tx}
	return true
}
