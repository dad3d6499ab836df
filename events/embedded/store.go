package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// subscribeBatch is how many events Subscribe reads from Pebble at a time.
const subscribeBatch = 256

// Store is the embedded event store. It implements events.Store.
//
// Writes go through one committer goroutine (see the package documentation);
// reads run on the callers' goroutines against Pebble, bounded by head, which
// the committer publishes after each durable commit.
type Store struct {
	opts Options
	log  *slog.Logger
	db   *pebble.DB

	// queue carries appends to the committer.
	queue chan *appendReq
	// closing is closed when Close starts: no new operation is accepted.
	closing chan struct{}
	// stopped is closed when the committer has exited.
	stopped   chan struct{}
	closeOnce sync.Once

	// head is the last published (durable and visible) position. Written
	// only by the committer, after the commit that made it durable.
	head atomic.Uint64

	// notifyMu guards notify, the channel closed and replaced by the
	// committer after every published commit; subscribers that have caught up
	// wait on it.
	notifyMu sync.Mutex
	notify   chan struct{}

	// dbMu keeps Pebble open while reads run: readers hold it shared, Close
	// takes it exclusively before closing Pebble.
	dbMu     sync.RWMutex
	dbClosed bool // guarded by dbMu

	// tail holds the latest published envelopes for live subscribers.
	tail *tailRing

	// Owned by the committer goroutine only.
	tailBuf  []*eventpb.Envelope
	versions *versionCache
	streams  *streamSet // every stream name in the store (a Bloom filter)
	failed   error      // set when a commit failed; every later append gets it
	// lastGroup is how many appends the previous group commit carried.
	lastGroup int
	// chain is the hash of the record at head: the prev_hash of the next
	// event (zeros for an empty store).
	chain   [hashSize]byte
	scratch []byte
	keyBuf  []byte

	// fsyncs is Pebble's histogram of WAL fsync latencies, in nanoseconds
	// (one for the DB's lifetime, kept across WAL files); nil read-only.
	fsyncs prometheus.Histogram
}

var _ events.Store = (*Store)(nil)

// Open opens (creating if needed) the store in opts.Dir. A store whose last
// process died mid-write opens as is: Pebble's WAL recovery drops the torn
// tail of the newest log, which holds only unacknowledged appends.
func Open(opts Options) (*Store, error) {
	s, err := open(opts)
	if err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// open opens the store without starting the committer.
func open(opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		if _, err := os.Stat(filepath.Join(opts.Dir, "CURRENT")); err != nil {
			return nil, fmt.Errorf("embedded: %s holds no event store: %w", opts.Dir, err)
		}
	} else if err := mkdirDurable(opts.Dir); err != nil {
		return nil, fmt.Errorf("embedded: create %s: %w", opts.Dir, err)
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	plog := pebbleLogger{log: opts.Logger.With("component", "pebble")}
	db, err := pebble.Open(opts.Dir, &pebble.Options{
		Cache:        cache,
		MemTableSize: opts.MemTableSize,
		Logger:       plog,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { plog.log.Warn("background error", "err", err) },
			DiskSlow: func(info pebble.DiskSlowInfo) {
				plog.log.Warn("disk slow", "info", info.String())
			},
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				plog.log.Warn("write stall", "reason", info.Reason)
			},
		},
		// New stores are created at the newest format of the Pebble version
		// in go.mod; older stores are ratcheted up on Open.
		FormatMajorVersion: pebble.FormatNewest,
		ReadOnly:           opts.ReadOnly,
	})
	if err != nil {
		if isLockHeld(err) {
			return nil, fmt.Errorf("%w: %s (is a node running on it?): %v", ErrLocked, opts.Dir, err)
		}
		return nil, fmt.Errorf("embedded: open pebble in %s: %w", opts.Dir, err)
	}
	s := &Store{
		opts:     opts,
		log:      opts.Logger,
		db:       db,
		queue:    make(chan *appendReq, opts.MaxBatch),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
		notify:   make(chan struct{}),
		versions: newVersionCache(opts.StreamCacheSize),
		tail:     newTailRing(opts.TailSize),
	}
	head, chain, err := lastRecord(db)
	if err == nil {
		err = s.checkFormat(head)
	}
	if err == nil && !opts.ReadOnly {
		err = s.checkAnchor(head, &chain)
	}
	if err == nil {
		s.streams, err = s.loadStreams()
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.head.Store(head)
	s.chain = chain
	s.fsyncs = db.Metrics().LogWriter.FsyncLatency
	s.log.Debug("event store open", "dir", opts.Dir, "head", head)
	return s, nil
}

// mkdirDurable creates dir if it is missing and then fsyncs its parent, so
// that the directory itself survives a power cut.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	parent, err := os.Open(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return err
	}
	defer parent.Close()
	return parent.Sync()
}

// loadStreams builds the set of stream names from the stream index,
// visiting one key per stream (it seeks past each stream's versions).
func (s *Store) loadStreams() (*streamSet, error) {
	set := newStreamSet(1 << 16)
	lo := []byte{prefixStream}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(lo)})
	if err != nil {
		return nil, fmt.Errorf("embedded: list streams: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; {
		stream, _, valid := parseStreamKey(it.Key())
		if !valid {
			return nil, fmt.Errorf("%w: stream index key %x does not parse", events.ErrCorrupt, it.Key())
		}
		set.add(stream)
		next := upperBound(streamPrefix(nil, stream))
		if next == nil {
			break
		}
		ok = it.SeekGE(next)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("embedded: list streams: %w", err)
	}
	return set, nil
}

// checkAnchor refuses to write on a log that does not end where its head
// anchor says: appending would overwrite the anchor and so erase the
// evidence of events removed from (or added to, or altered at) the end.
// Read-only opens skip it, so that Verify can report the problem.
func (s *Store) checkAnchor(head uint64, hash *[hashSize]byte) error {
	p, err := checkAnchor(s.db, head, hash)
	if err != nil {
		return err
	}
	if p != nil {
		return fmt.Errorf("%w: %s: %s; refusing to append to it (run `tandem audit verify`)",
			events.ErrCorrupt, s.opts.Dir, p.Message)
	}
	return nil
}

// checkFormat verifies the format marker, writing it into a new store.
func (s *Store) checkFormat(head uint64) error {
	v, closer, err := s.db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if head != 0 {
			return fmt.Errorf("embedded: %s holds %d events but no format marker %q: not a Tandem store",
				s.opts.Dir, head, formatKey)
		}
		if s.opts.ReadOnly {
			return nil // an empty store that was never written
		}
		if err := s.db.Set(formatKey, formatValue, pebble.Sync); err != nil {
			return fmt.Errorf("embedded: write format marker: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("embedded: read format marker: %w", err)
	}
	defer closer.Close()
	if bytes.Equal(v, formatBeforeChain) {
		return fmt.Errorf("embedded: %s has format %q, which predates the hash chain (tamper evidence) of %q: this binary does not open it",
			s.opts.Dir, v, formatValue)
	}
	if !bytes.Equal(v, formatValue) {
		return fmt.Errorf("embedded: %s has format %q, this binary reads %q", s.opts.Dir, v, formatValue)
	}
	return nil
}

// Head returns the last durable position (0 for an empty store). After Close
// it keeps returning the last head.
func (s *Store) Head() uint64 { return s.head.Load() }

// WALFsyncLatency is Pebble's histogram of the fsyncs of its write-ahead
// log, observed in nanoseconds: the disk's part of every append's
// latency, for metrics. Nil for a read-only store.
func (s *Store) WALFsyncLatency() prometheus.Histogram { return s.fsyncs }

func (s *Store) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// Append appends evs to stream if its version is expected (see
// events.Store). It returns once the events are durable and visible to
// readers. A mismatch returns a *VersionConflictError (wrapping
// events.ErrVersionConflict); bad input returns an error wrapping
// events.ErrInvalidAppend without reaching the committer.
//
// On success the store also fills Stream, Version, Position and PrevHash
// (the hash chain's link to the previous event) of the caller's envelopes.
// PrevHash shares memory with what subscribers receive: do not modify it.
// The envelopes are marshalled before Append queues the request and are not
// touched afterwards except by that final fill.
//
// ctx is honoured while the request waits for room in the queue. Once it is
// queued the committer decides the outcome: if ctx ends first, Append returns
// an error wrapping ctx.Err() and the caller cannot know whether the events
// were committed (a later read, or a version conflict on retry, tells).
func (s *Store) Append(ctx context.Context, stream string, expected int64, evs []*eventpb.Envelope) (res events.AppendResult, err error) {
	if s.opts.OnAppend != nil {
		start := time.Now()
		defer func() { s.opts.OnAppend(time.Since(start), len(evs), err) }()
	}
	if s.isClosing() {
		return res, events.ErrClosed
	}
	if s.opts.ReadOnly {
		return res, ErrReadOnly
	}
	req, err := newAppendReq(stream, expected, evs)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-s.closing:
		return res, events.ErrClosed
	}
	var out appendOutcome
	select {
	case out = <-req.done:
	case <-s.stopped:
		// The committer exited; it answered req before that, or never saw it.
		select {
		case out = <-req.done:
		default:
			return res, events.ErrClosed
		}
	case <-ctx.Done():
		select {
		case out = <-req.done:
		default:
			return res, fmt.Errorf("embedded: append to %q queued, outcome unknown: %w", stream, ctx.Err())
		}
	}
	if out.err != nil {
		return res, out.err
	}
	n := uint64(len(evs))
	for i, e := range evs {
		e.Stream = stream
		e.Version = out.lastVersion - n + 1 + uint64(i)
		e.Position = out.lastPosition - n + 1 + uint64(i)
		e.PrevHash = req.envs[i].PrevHash // written by the committer before it answered
	}
	return events.AppendResult{Version: out.lastVersion, Position: out.lastPosition}, nil
}

// newAppendReq validates an append and marshals its envelopes (without the
// fields the store assigns) on the caller's goroutine. Unknown fields are
// kept apart, as the record puts them after prev_hash (see appendRecord).
func newAppendReq(stream string, expected int64, evs []*eventpb.Envelope) (*appendReq, error) {
	switch {
	case stream == "":
		return nil, fmt.Errorf("%w: empty stream name", events.ErrInvalidAppend)
	case len(stream) > MaxStreamLen:
		return nil, fmt.Errorf("%w: stream name is %d bytes, limit %d", events.ErrInvalidAppend, len(stream), MaxStreamLen)
	case !utf8.ValidString(stream):
		return nil, fmt.Errorf("%w: stream name %q is not valid UTF-8", events.ErrInvalidAppend, stream)
	case len(evs) == 0:
		return nil, fmt.Errorf("%w: no events for stream %q", events.ErrInvalidAppend, stream)
	case expected < events.AnyVersion:
		return nil, fmt.Errorf("%w: stream %q: expected version %d (want >= %d)",
			events.ErrInvalidAppend, stream, expected, events.AnyVersion)
	}
	var buf []byte
	var unknown [][]byte // nil unless an event has unknown fields
	ends := make([]int, len(evs))
	envs := make([]*eventpb.Envelope, len(evs))
	mo := proto.MarshalOptions{Deterministic: true}
	for i, e := range evs {
		if e == nil {
			return nil, fmt.Errorf("%w: stream %q: event %d is nil", events.ErrInvalidAppend, stream, i)
		}
		if e.GetType() == "" {
			return nil, fmt.Errorf("%w: stream %q: event %d has no type", events.ErrInvalidAppend, stream, i)
		}
		// A shallow copy: it shares Time, Cause and Data with the caller's
		// envelope (which must not change them after Append, see
		// events.Store) and is what live subscribers receive from the tail.
		body := &eventpb.Envelope{Time: e.Time, Node: e.Node, Cause: e.Cause, Type: e.Type, Data: e.Data}
		var err error
		if buf, err = mo.MarshalAppend(buf, body); err != nil {
			return nil, fmt.Errorf("%w: stream %q: event %d (%s): %v", events.ErrInvalidAppend, stream, i, e.GetType(), err)
		}
		if u := e.ProtoReflect().GetUnknown(); len(u) > 0 {
			body.ProtoReflect().SetUnknown(u)
			if unknown == nil {
				unknown = make([][]byte, len(evs))
			}
			unknown[i] = u
		}
		ends[i] = len(buf)
		envs[i] = body
	}
	bodies := make([][]byte, len(evs))
	start := 0
	for i, end := range ends {
		bodies[i] = buf[start:end:end]
		start = end
	}
	return &appendReq{stream: stream, expected: expected, bodies: bodies, unknown: unknown, envs: envs,
		done: make(chan appendOutcome, 1)}, nil
}

// acquire keeps Pebble open for a read; release ends it.
func (s *Store) acquire() error {
	if s.isClosing() {
		return events.ErrClosed
	}
	s.dbMu.RLock()
	if s.dbClosed {
		s.dbMu.RUnlock()
		return events.ErrClosed
	}
	return nil
}

func (s *Store) release() { s.dbMu.RUnlock() }

// StreamVersion returns the version of stream's last durable event (see
// events.Store): a reverse seek on its index keys, skipping any of a group
// that is written but not yet published.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if stream == "" {
		return 0, nil
	}
	head := s.head.Load()
	prefix := streamPrefix(nil, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upperBound(prefix)})
	if err != nil {
		return 0, fmt.Errorf("embedded: version of stream %q: %w", stream, err)
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		st, v, okKey := parseStreamKey(it.Key())
		if !okKey || st != stream || len(it.Value()) < 8 {
			return 0, fmt.Errorf("%w: stream %q: index entry %x does not parse as this stream's", events.ErrCorrupt, stream, it.Key())
		}
		if binary.BigEndian.Uint64(it.Value()) <= head {
			return v, nil
		}
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("embedded: version of stream %q: %w", stream, err)
	}
	return 0, nil
}

// ReadStream returns up to max events of stream with version >= from (see
// events.Store). max <= 0 reads nothing.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]*eventpb.Envelope, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if stream == "" || max <= 0 {
		return nil, nil
	}
	if from == 0 {
		from = 1
	}
	head := s.head.Load()
	prefix := streamPrefix(nil, stream)
	idx, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), from),
		UpperBound: upperBound(prefix),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: read stream %q: %w", stream, err)
	}
	defer idx.Close()
	recs, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: eventKey(nil, head+1),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: read stream %q: %w", stream, err)
	}
	defer recs.Close()

	var out []*eventpb.Envelope
	want := from
	key := make([]byte, 0, 9)
	for ok := idx.First(); ok && len(out) < max; ok = idx.Next() {
		if len(out)%64 == 63 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		st, version, okKey := parseStreamKey(idx.Key())
		if !okKey || st != stream {
			return nil, fmt.Errorf("%w: stream %q: index key %x does not parse as this stream's", events.ErrCorrupt, stream, idx.Key())
		}
		if version != want {
			return nil, fmt.Errorf("%w: stream %q: index has version %d where %d was expected", events.ErrCorrupt, stream, version, want)
		}
		v := idx.Value()
		if len(v) != 8 {
			return nil, fmt.Errorf("%w: stream %q version %d: index value is %d bytes, want 8", events.ErrCorrupt, stream, version, len(v))
		}
		pos := binary.BigEndian.Uint64(v)
		if pos > head {
			break // committed but not yet published; positions grow with versions
		}
		key = eventKey(key[:0], pos)
		if !recs.SeekGE(key) || !bytes.Equal(recs.Key(), key) {
			if err := recs.Error(); err != nil {
				return nil, fmt.Errorf("embedded: read stream %q: %w", stream, err)
			}
			return nil, fmt.Errorf("%w: stream %q version %d: index points to position %d, which holds no record",
				events.ErrCorrupt, stream, version, pos)
		}
		env, err := decodeRecord(pos, recs.Value())
		if err != nil {
			return nil, err
		}
		if env.GetStream() != stream || env.GetVersion() != version {
			return nil, fmt.Errorf("%w: stream %q version %d: index points to position %d, which holds stream %q version %d",
				events.ErrCorrupt, stream, version, pos, env.GetStream(), env.GetVersion())
		}
		out = append(out, env)
		want++
	}
	if err := idx.Error(); err != nil {
		return nil, fmt.Errorf("embedded: read stream %q: %w", stream, err)
	}
	return out, nil
}

// ReadAll returns up to max events with position >= from, never beyond the
// published head (see events.Store). max <= 0 reads nothing.
func (s *Store) ReadAll(ctx context.Context, from uint64, max int) ([]*eventpb.Envelope, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.readAll(ctx, from, max, s.head.Load())
}

// readAll reads positions from..min(head, from+max-1); the caller holds
// acquire. Every position in the range must be there.
func (s *Store) readAll(ctx context.Context, from uint64, max int, head uint64) ([]*eventpb.Envelope, error) {
	if from == 0 {
		from = 1
	}
	if max <= 0 || from > head {
		return nil, nil
	}
	last := head
	if n := head - from + 1; uint64(max) < n {
		last = from + uint64(max) - 1
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: eventKey(nil, from),
		UpperBound: eventKey(nil, last+1),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: read from position %d: %w", from, err)
	}
	defer it.Close()
	out := make([]*eventpb.Envelope, 0, last-from+1)
	want := from
	for ok := it.First(); ok; ok = it.Next() {
		if want%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		pos, okKey := parseEventKey(it.Key())
		if !okKey || pos != want {
			return nil, fmt.Errorf("%w: position %d is missing (next key %x, head %d)", events.ErrCorrupt, want, it.Key(), head)
		}
		env, err := decodeRecord(pos, it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, env)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("embedded: read from position %d: %w", from, err)
	}
	if want != last+1 {
		return nil, fmt.Errorf("%w: position %d is missing (read %d..%d of %d..%d, head %d)",
			events.ErrCorrupt, want, from, want-1, from, last, head)
	}
	return out, nil
}

// Subscribe delivers every event with position >= from (0 means 1), history
// first and then live, with no gap and no duplicate (see events.Store). It
// reads in batches up to the published head; once caught up it waits for the
// committer's next publication, ctx or Close. handle runs on the caller's
// goroutine with no lock held, so it may call the store (even Append).
func (s *Store) Subscribe(ctx context.Context, from uint64, handle func(*eventpb.Envelope) error) error {
	if s.isClosing() {
		return events.ErrClosed
	}
	if from == 0 {
		from = 1
	}
	next := from
	var batch []*eventpb.Envelope
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.isClosing() {
			return events.ErrClosed
		}
		// Take the wake-up channel before reading head: a commit published
		// after this load closes ch, so no publication is missed.
		s.notifyMu.Lock()
		wake := s.notify
		s.notifyMu.Unlock()
		head := s.head.Load()
		if next > head {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closing:
				return events.ErrClosed
			}
		}
		batch, ok := s.tail.since(next, head, subscribeBatch, batch[:0])
		if !ok {
			var err error
			if batch, err = s.readBatch(ctx, next, head); err != nil {
				return err
			}
		}
		for _, env := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if s.isClosing() {
				return events.ErrClosed
			}
			if err := handle(env); err != nil {
				return err
			}
			next = env.GetPosition() + 1
		}
	}
}

func (s *Store) readBatch(ctx context.Context, from, head uint64) ([]*eventpb.Envelope, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	return s.readAll(ctx, from, subscribeBatch, head)
}

// Close stops accepting operations, lets the committer commit what is
// already queued, ends subscriptions with events.ErrClosed and closes Pebble.
// It waits for reads in progress. Close is idempotent: later calls return
// nil; every other operation after Close returns events.ErrClosed.
func (s *Store) Close() error {
	err := error(nil)
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		s.dbMu.Lock()
		defer s.dbMu.Unlock()
		s.dbClosed = true
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("embedded: close pebble in %s: %w", s.opts.Dir, cerr)
		}
		s.log.Debug("event store closed", "dir", s.opts.Dir, "head", s.head.Load())
	})
	return err
}

// pebbleLogger sends Pebble's messages to slog: routine ones at Debug.
// Fatalf logs at Error and panics, as Pebble requires it not to return.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic("pebble: fatal: " + msg)
}

// isLockHeld tells whether Pebble failed to open because the directory's
// LOCK file is held: by another process (fcntl F_SETLK fails with EAGAIN or
// EACCES) or by this one (Pebble's own check).
func isLockHeld(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}
