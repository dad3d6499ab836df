package events

import "errors"

var (
	// ErrVersionConflict is returned by Append when the stream's current
	// version differs from the expected one. The writer has been superseded
	// (another actor wrote to its stream) and must stop at once.
	ErrVersionConflict = errors.New("events: stream version conflict")

	// ErrInvalidAppend is returned for an Append that can never succeed: an
	// empty stream name, no events, or an event without a type.
	ErrInvalidAppend = errors.New("events: invalid append")

	// ErrClosed is returned by every operation on a closed store.
	ErrClosed = errors.New("events: store closed")

	// ErrCorrupt is returned when a stored record fails its checksum or does
	// not decode. The error names the position; nothing is skipped silently.
	ErrCorrupt = errors.New("events: corrupt record")

	// ErrUnknownType is returned by Unwrap for an event type this binary
	// does not know (written by a newer version). Readers skip and count it.
	ErrUnknownType = errors.New("events: unknown event type")
)
