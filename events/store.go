package events

import (
	"context"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Expected-version values for Append besides a concrete version (>= 1).
const (
	// NoStream: the stream must not exist yet (its version is 0).
	NoStream int64 = 0
	// AnyVersion disables the check. Actors never use it; it exists for
	// tools that import history.
	AnyVersion int64 = -1
)

// AppendResult reports where an Append landed.
type AppendResult struct {
	// Version of the stream after the append (the last event's version).
	Version uint64
	// Position of the last appended event in the global order.
	Position uint64
}

// Store is the event store contract. All methods are safe to call
// concurrently.
type Store interface {
	// Append atomically appends events to stream if the stream's current
	// version equals expected (or expected is AnyVersion). The store assigns
	// each envelope's Stream, Version and Position (and a store that keeps a
	// hash chain, such as the embedded one, PrevHash); the caller fills
	// Type, Data, Time, Node and Cause. Append returns only once the events are
	// durable (fsync); on error nothing was appended. A mismatch returns an
	// error wrapping ErrVersionConflict. The store may keep references to
	// the envelopes' contents (Time, Cause, Data): callers must not modify
	// them after the call.
	Append(ctx context.Context, stream string, expected int64, evs []*eventpb.Envelope) (AppendResult, error)

	// ReadStream returns up to max events of stream with version >= from,
	// in version order. A stream that does not exist reads as empty.
	ReadStream(ctx context.Context, stream string, from uint64, max int) ([]*eventpb.Envelope, error)

	// StreamVersion returns the version of stream's last durable event, 0
	// when the stream does not exist. With ReadStream it reads a stream's
	// newest events without reading the rest (the registrar's snapshots).
	StreamVersion(ctx context.Context, stream string) (uint64, error)

	// ReadAll returns up to max events with position >= from, in global
	// order, never beyond the last durable position.
	ReadAll(ctx context.Context, from uint64, max int) ([]*eventpb.Envelope, error)

	// Subscribe delivers every event with position >= from in global order:
	// first the history, then live events as they become durable, with no
	// gap and no duplicate. The envelope passed to handle may be shared with
	// other subscribers and must not be modified. handle is called serially
	// from one goroutine; if
	// it returns an error the subscription ends with that error. Subscribe
	// blocks until ctx is done, handle fails, or the store closes, and
	// returns the reason (ctx.Err(), the handler's error, or ErrClosed). A
	// slow handler never blocks appends.
	Subscribe(ctx context.Context, from uint64, handle func(*eventpb.Envelope) error) error

	// Head returns the position of the last durable event (0 when empty).
	Head() uint64

	// Close stops the store. In-flight appends either complete durably or
	// fail; subscriptions end with ErrClosed.
	Close() error
}
