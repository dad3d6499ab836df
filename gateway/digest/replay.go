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
type replayGuard struct {
	seed   maphash.Seed
	shards [64]replayShard
	ttl    time.Duration
	max    int // per shard, both generations together
}

type replayShard struct {
	mu       sync.Mutex
	cur, old map[string]seen
	rotated  time.Time
}

type seen struct {
	nc uint32
	tx uint64 // hash of the transaction key
}

func newReplayGuard(max int, ttl time.Duration) *replayGuard {
	g := &replayGuard{seed: maphash.MakeSeed(), ttl: ttl, max: max/64 + 1}
	for i := range g.shards {
		g.shards[i].cur = map[string]seen{}
		g.shards[i].old = map[string]seen{}
	}
	return g
}

func (g *replayGuard) accept(nonce string, nc uint32, txKey string, now time.Time) bool {
	tx := maphash.String(g.seed, txKey)
	s := &g.shards[maphash.String(g.seed, nonce)%uint64(len(g.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rotated.IsZero() {
		s.rotated = now
	}
	switch age := now.Sub(s.rotated); {
	case age >= 2*g.ttl:
		s.old, s.cur = map[string]seen{}, map[string]seen{}
		s.rotated = now
	case age >= g.ttl:
		// Size the new generation like the last one: growing a map from
		// empty under load rehashes it over and over.
		s.old, s.cur = s.cur, make(map[string]seen, len(s.cur))
		s.rotated = now
	}
	last, ok := s.cur[nonce]
	if !ok {
		last, ok = s.old[nonce]
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
	s.cur[nonce] = seen{nc: nc, tx: tx}
	return true
}
