package replay

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the stream asked for has no events (an unknown call id
	// or an AOR that never registered).
	ErrNotFound = errors.New("replay: no events")

	// ErrBadInput: a call id, AOR, time or format that cannot be what the
	// caller meant.
	ErrBadInput = errors.New("replay: bad input")
)

// kindError is an error that matches one of the sentinels above with
// errors.Is but whose text is only its message ("\"x\" is not a call id
// ..."), so that the command line and the API can put the name of the flag
// or parameter before it.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

func badInput(format string, args ...any) error {
	return &kindError{kind: ErrBadInput, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &kindError{kind: ErrNotFound, msg: fmt.Sprintf(format, args...)}
}
