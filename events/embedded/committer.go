package embedded

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// appendReq is one Append waiting for the committer.
type appendReq struct {
	stream   string
	expected int64
	bodies   [][]byte            // envelopes' known fields marshalled without stream, version, position, prev_hash
	unknown  [][]byte            // their unknown fields; nil when none has any
	envs     []*eventpb.Envelope // the same envelopes, unmarshalled, for the tail
	done     chan appendOutcome  // buffered (1): the committer never blocks on a caller
}

type appendOutcome struct {
	lastVersion, lastPosition uint64
	err                       error
}

// run is the committer goroutine: it takes groups of appends off the queue
// and commits each group with one fsync. On Close it commits what is still
// queued, then exits.
func (s *Store) run() {
	defer close(s.stopped)
	group := make([]*appendReq, 0, 64)
	for {
		select {
		case req := <-s.queue:
			g := s.collect(append(group[:0], req))
			s.lastGroup = len(g)
			s.commit(g)
			// Without a commit window, let the callers just answered run
			// before the next group is closed: writers that append again
			// at once then join it, instead of splitting into two cohorts
			// that take turns at the fsync (measured with 64 writers: 43
			// rather than 25 events per fsync). With nothing runnable this
			// returns at once.
			//
			// With a window, the window gathers them, and the committer
			// must not yield: Gosched puts it behind every runnable
			// goroutine, and a node under load has hundreds (actors,
			// fast-path workers), so each group waited for all of them
			// and the appends queued meanwhile waited too. At 1,600 and
			// 2,000 calls/s (callbench -only tandem, alternating) 3.9-14%
			// of appends took over 51 ms with the yield and 1.2-3.8%
			// without, for the same CPU per call; of 6 steps at 1,600/s
			// with the yield, 2 failed on retransmissions, of 6 without
			// none did.
			if s.opts.CommitWindow == 0 {
				runtime.Gosched()
			}
		case <-s.closing:
			for {
				select {
				case req := <-s.queue:
					s.commit(s.collect(append(group[:0], req)))
				default:
					return
				}
			}
		}
	}
}

// collect adds to group whatever is already queued, and what arrives
// within CommitWindow, up to MaxBatch events.
func (s *Store) collect(group []*appendReq) []*appendReq {
	n := len(group[0].bodies)
	var window <-chan time.Time
	// Only wait when appends overlap (the previous group had company):
	// a lone writer would wait the whole window for nobody.
	if s.opts.CommitWindow > 0 && s.lastGroup > 1 {
		t := time.NewTimer(s.opts.CommitWindow)
		defer t.Stop()
		window = t.C
	}
	for n < s.opts.MaxBatch {
		select {
		case req := <-s.queue:
			group = append(group, req)
			n += len(req.bodies)
			continue
		default:
		}
		if window == nil {
			return group
		}
		select {
		case req := <-s.queue:
			group = append(group, req)
			n += len(req.bodies)
		case <-window:
			return group
		case <-s.closing:
			return group
		}
	}
	return group
}

// commit decides, writes, syncs, publishes and answers one group. It is the
// critical section of the store: only the committer goroutine runs it.
func (s *Store) commit(group []*appendReq) {
	if s.failed != nil {
		for _, req := range group {
			req.done <- appendOutcome{err: s.failed}
		}
		return
	}
	b := s.db.NewBatch()
	defer b.Close()

	pos := s.head.Load()
	// The chain: prev is the hash of the record at pos. links holds the
	// prev_hash of every event of the group, one allocation per group,
	// shared by the published envelopes.
	prev := s.chain
	nEvents := 0
	for _, req := range group {
		nEvents += len(req.bodies)
	}
	links := make([]byte, 0, nEvents*hashSize)
	published := s.tailBuf[:0]
	pending := make(map[string]uint64, len(group)) // versions written by this group
	var created []string                           // streams this group creates
	nAccepted := 0
	outcomes := make([]appendOutcome, len(group))
	for i, req := range group {
		cur, ok := pending[req.stream]
		if !ok {
			var err error
			if cur, err = s.streamVersion(req.stream); err != nil {
				outcomes[i].err = err
				continue
			}
			if cur == 0 && len(req.bodies) > 0 && (req.expected == events.AnyVersion || req.expected == 0) {
				created = append(created, req.stream)
			}
		}
		if req.expected != events.AnyVersion && uint64(req.expected) != cur {
			outcomes[i].err = &VersionConflictError{Stream: req.stream, Expected: req.expected, Actual: cur}
			continue
		}
		for j, body := range req.bodies {
			pos++
			cur++
			links = append(links, prev[:]...)
			link := links[len(links)-hashSize : len(links) : len(links)]
			env := req.envs[j]
			env.Stream, env.Version, env.Position, env.PrevHash = req.stream, cur, pos, link
			published = append(published, env)
			var unknown []byte
			if req.unknown != nil {
				unknown = req.unknown[j]
			}
			s.scratch = appendRecord(s.scratch[:0], req.stream, cur, pos, body, link, unknown)
			prev = recordHash(s.scratch)
			s.keyBuf = eventKey(s.keyBuf[:0], pos)
			_ = b.Set(s.keyBuf, s.scratch, nil) // Set copies; it fails only on a closed batch
			s.keyBuf = streamKey(s.keyBuf[:0], req.stream, cur)
			s.scratch = binary.BigEndian.AppendUint64(s.scratch[:0], pos)
			_ = b.Set(s.keyBuf, s.scratch, nil)
		}
		pending[req.stream] = cur
		nAccepted++
		outcomes[i] = appendOutcome{lastVersion: cur, lastPosition: pos}
	}

	if nAccepted > 0 {
		// The head anchor, in the same batch: a log that loses its newest
		// events no longer ends where it says.
		s.scratch = appendAnchor(s.scratch[:0], pos, &prev)
		_ = b.Set(anchorKey, s.scratch, nil)
		if err := s.db.Apply(b, pebble.Sync); err != nil {
			first := s.head.Load() + 1
			s.failed = fmt.Errorf("embedded: commit of positions %d..%d failed; the store refuses appends until reopened: %w",
				first, pos, err)
			s.log.Error("commit failed", "first", first, "last", pos, "err", err)
			for _, req := range group {
				req.done <- appendOutcome{err: s.failed}
			}
			return
		}
		s.chain = prev
		for stream, v := range pending {
			s.versions.put(stream, v)
		}
		for _, stream := range created {
			s.streams.add(stream)
		}
		s.tail.push(published)
		s.tailBuf = published[:0]
		s.publish(pos)
	}
	for i, req := range group {
		req.done <- outcomes[i]
	}
}

// publish makes positions up to head visible and wakes subscribers.
func (s *Store) publish(head uint64) {
	s.head.Store(head)
	s.notifyMu.Lock()
	wake := s.notify
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
	close(wake)
}

// streamVersion returns the current version of stream: from the cache, or
// by a reverse seek on its index keys (exact, as the committer is the only
// writer and every earlier group is committed).
func (s *Store) streamVersion(stream string) (uint64, error) {
	if v, ok := s.versions.get(stream); ok {
		return v, nil
	}
	if !s.streams.mayContain(stream) {
		return 0, nil // certainly new: no Pebble iterator needed
	}
	prefix := streamPrefix(nil, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upperBound(prefix)})
	if err != nil {
		return 0, fmt.Errorf("embedded: version of stream %q: %w", stream, err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("embedded: version of stream %q: %w", stream, err)
		}
		s.versions.put(stream, 0)
		return 0, nil
	}
	st, v, ok := parseStreamKey(it.Key())
	if !ok || st != stream {
		return 0, fmt.Errorf("%w: stream %q: last index key %x does not parse as this stream's",
			events.ErrCorrupt, stream, it.Key())
	}
	s.versions.put(stream, v)
	return v, nil
}

// versionCache is an LRU map from stream to current version, bounded in
// streams. Used by the committer goroutine only; not safe for concurrent use.
type versionCache struct {
	max int
	ll  *list.List // of *cacheEntry, most recently used first
	m   map[string]*list.Element
}

type cacheEntry struct {
	stream  string
	version uint64
}

func newVersionCache(max int) *versionCache {
	return &versionCache{max: max, ll: list.New(), m: make(map[string]*list.Element)}
}

func (c *versionCache) get(stream string) (uint64, bool) {
	el, ok := c.m[stream]
	if !ok {
		return 0, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry).version, true
}

func (c *versionCache) put(stream string, version uint64) {
	if el, ok := c.m[stream]; ok {
		el.Value.(*cacheEntry).version = version
		c.ll.MoveToFront(el)
		return
	}
	c.m[stream] = c.ll.PushFront(&cacheEntry{stream: stream, version: version})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).stream)
	}
}

// tailRing keeps the most recently published envelopes in memory, so that
// subscribers which are caught up (the common case: projections following
// live) get new events without a Pebble iterator and a decode each. The
// envelopes are shared between subscribers and must not be modified.
// push is called by the committer; since is called concurrently.
type tailRing struct {
	mu    sync.RWMutex
	buf   []*eventpb.Envelope // position p lives at buf[p % len(buf)]
	first uint64              // lowest position held; 0 when empty
	last  uint64
}

func newTailRing(size int) *tailRing {
	if size < 1 {
		return &tailRing{}
	}
	return &tailRing{buf: make([]*eventpb.Envelope, size)}
}

// push adds envelopes with consecutive positions following the last one.
func (t *tailRing) push(envs []*eventpb.Envelope) {
	if len(t.buf) == 0 || len(envs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := uint64(len(t.buf))
	for _, e := range envs {
		t.buf[e.GetPosition()%n] = e
		t.last = e.GetPosition()
		if t.first == 0 {
			t.first = t.last
		}
		if t.last-t.first >= n {
			t.first = t.last - n + 1
		}
	}
}

// since returns the envelopes from position from to head (at most max), or
// ok=false when from is no longer (or not yet) held.
func (t *tailRing) since(from, head uint64, max int, out []*eventpb.Envelope) ([]*eventpb.Envelope, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.first == 0 || from < t.first || head > t.last {
		return out, false
	}
	n := uint64(len(t.buf))
	for p := from; p <= head && len(out) < max; p++ {
		out = append(out, t.buf[p%n])
	}
	return out, true
}
