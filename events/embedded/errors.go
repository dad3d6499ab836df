package embedded

import (
	"errors"
	"fmt"

	"github.com/tandemswitch/tandem/events"
)

// VersionConflictError is the error Append returns when the stream's current
// version is not the expected one. It wraps events.ErrVersionConflict, so
// callers that only need to know "I have been superseded" use errors.Is;
// errors.As gives the values.
type VersionConflictError struct {
	Stream   string
	Expected int64  // what the caller passed (events.NoStream is 0)
	Actual   uint64 // the stream's version when the append was decided
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("%v: stream %q expected version %d, actual %d",
		events.ErrVersionConflict, e.Stream, e.Expected, e.Actual)
}

// Unwrap returns events.ErrVersionConflict.
func (e *VersionConflictError) Unwrap() error { return events.ErrVersionConflict }

// ErrReadOnly is returned by Append on a store opened with ReadOnly.
var ErrReadOnly = errors.New("embedded: store opened read-only")

// ErrLocked is returned by Open when another process (a running node) holds
// the store's directory.
var ErrLocked = errors.New("embedded: store is in use by another process")
