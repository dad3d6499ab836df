package gateway

import (
	"errors"
	"strconv"

	"github.com/tandemswitch/tandem/actors/registrar"
)

// sipError is an answer the gateway gives instead of routing a request.
type sipError struct {
	code    int
	reason  string
	headers [][2]string // extra header fields (name, value)
}

// statusFor maps domain errors to SIP answers: the one table (STYLE.md 5).
func statusFor(err error) sipError {
	var brief *registrar.IntervalTooBriefError
	switch {
	case errors.As(err, &brief):
		return sipError{423, "Interval Too Brief", [][2]string{{"Min-Expires", strconv.FormatInt(brief.MinExpires, 10)}}}
	case errors.Is(err, registrar.ErrOutOfOrder):
		return sipError{400, "Out of Order CSeq", nil}
	case errors.Is(err, registrar.ErrTooManyContacts):
		return sipError{403, "Too Many Contacts", nil}
	case errors.Is(err, registrar.ErrBadRequest):
		return sipError{400, "Bad Request", nil}
	case errors.Is(err, registrar.ErrUnavailable):
		return sipError{503, "Service Unavailable", [][2]string{{"Retry-After", "5"}}}
	default: // ErrFenced and anything unexpected
		return sipError{500, "Server Internal Error", [][2]string{{"Retry-After", "5"}}}
	}
}
