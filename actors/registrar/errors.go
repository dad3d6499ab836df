package registrar

import (
	"errors"
	"fmt"
)

// Errors that Decide returns; the gateway maps them to SIP statuses in one
// table (gateway/errors.go).
var (
	// ErrBadRequest: the REGISTER is malformed for a registrar (400).
	ErrBadRequest = errors.New("registrar: bad request")
	// ErrOutOfOrder: same Call-ID with a lower CSeq than the binding's
	// (RFC 3261 10.3 step 7: "the update MUST be aborted").
	ErrOutOfOrder = errors.New("registrar: out-of-order CSeq")
	// ErrTooManyContacts: the AOR would exceed sip.max_contacts.
	ErrTooManyContacts = errors.New("registrar: too many contacts")
	// ErrFenced: the actor's append hit a version conflict; it was
	// superseded by another writer and has stopped without acting.
	ErrFenced = errors.New("registrar: superseded by another writer")
	// ErrUnavailable: the actor could not load or persist its stream.
	ErrUnavailable = errors.New("registrar: unavailable")
)

// IntervalTooBriefError: a non-zero expiry below sip.min_expires (423 with
// Min-Expires, RFC 3261 10.3 step 6).
type IntervalTooBriefError struct {
	MinExpires int64
	Asked      int64
}

func (e *IntervalTooBriefError) Error() string {
	return fmt.Sprintf("registrar: interval too brief: %d s < min %d s", e.Asked, e.MinExpires)
}
