// Package memstore is an in-memory events.Store for tests: the fake that
// actor and projection tests use instead of a mock. It keeps the full
// contract (expected versions, no gaps, catch-up then live subscriptions)
// but nothing is durable. It is safe for concurrent use.
package memstore

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Store is the in-memory store.
type Store struct {
	mu      sync.Mutex // guards all below
	all     []*eventpb.Envelope
	streams map[string][]uint64 // stream -> positions, index = version-1
	notify  chan struct{}       // closed and replaced on every append
	closed  bool
	// FailAppend, when set, makes Append fail with its result (tests).
	FailAppend func(stream string) error
}

// New returns an empty store.
func New() *Store {
	return &Store{streams: map[string][]uint64{}, notify: make(chan struct{})}
}

var _ events.Store = (*Store)(nil)

// Append implements events.Store.
func (s *Store) Append(ctx context.Context, stream string, expected int64, evs []*eventpb.Envelope) (events.AppendResult, error) {
	if stream == "" || len(evs) == 0 {
		return events.AppendResult{}, fmt.Errorf("%w: stream %q with %d events", events.ErrInvalidAppend, stream, len(evs))
	}
	for i, e := range evs {
		if e.GetType() == "" {
			return events.AppendResult{}, fmt.Errorf("%w: event %d has no type", events.ErrInvalidAppend, i)
		}
	}
	if err := ctx.Err(); err != nil {
		return events.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return events.AppendResult{}, events.ErrClosed
	}
	if s.FailAppend != nil {
		if err := s.FailAppend(stream); err != nil {
			return events.AppendResult{}, err
		}
	}
	cur := uint64(len(s.streams[stream]))
	if expected != events.AnyVersion && uint64(expected) != cur {
		return events.AppendResult{}, fmt.Errorf("%w: stream %q expected %d, actual %d", events.ErrVersionConflict, stream, expected, cur)
	}
	for _, e := range evs {
		c := proto.Clone(e).(*eventpb.Envelope)
		cur++
		c.Stream, c.Version, c.Position = stream, cur, uint64(len(s.all))+1
		s.all = append(s.all, c)
		s.streams[stream] = append(s.streams[stream], c.Position)
	}
	close(s.notify)
	s.notify = make(chan struct{})
	return events.AppendResult{Version: cur, Position: uint64(len(s.all))}, nil
}

// ReadStream implements events.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]*eventpb.Envelope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, events.ErrClosed
	}
	if from < 1 {
		from = 1
	}
	var out []*eventpb.Envelope
	positions := s.streams[stream]
	for v := from; v <= uint64(len(positions)) && len(out) < max; v++ {
		out = append(out, proto.Clone(s.all[positions[v-1]-1]).(*eventpb.Envelope))
	}
	return out, nil
}

// StreamVersion implements events.Store.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, events.ErrClosed
	}
	return uint64(len(s.streams[stream])), nil
}

// ReadAll implements events.Store.
func (s *Store) ReadAll(ctx context.Context, from uint64, max int) ([]*eventpb.Envelope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, events.ErrClosed
	}
	return s.readAllLocked(from, max), nil
}

func (s *Store) readAllLocked(from uint64, max int) []*eventpb.Envelope {
	if from < 1 {
		from = 1
	}
	var out []*eventpb.Envelope
	for p := from; p <= uint64(len(s.all)) && len(out) < max; p++ {
		out = append(out, proto.Clone(s.all[p-1]).(*eventpb.Envelope))
	}
	return out
}

// Subscribe implements events.Store.
func (s *Store) Subscribe(ctx context.Context, from uint64, handle func(*eventpb.Envelope) error) error {
	if from < 1 {
		from = 1
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return events.ErrClosed
		}
		batch := s.readAllLocked(from, 256)
		wait := s.notify
		s.mu.Unlock()
		for _, e := range batch {
			if err := handle(e); err != nil {
				return err
			}
			from = e.Position + 1
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
	}
}

// Head implements events.Store.
func (s *Store) Head() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.all))
}

// Close implements events.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
	return nil
}

// Reopened returns a new, open store holding this store's history, as if
// a durable store had been closed and opened again (for contract tests).
func (s *Store) Reopened() *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := New()
	n.all = append(n.all, s.all...)
	for k, v := range s.streams {
		n.streams[k] = append([]uint64(nil), v...)
	}
	return n
}
