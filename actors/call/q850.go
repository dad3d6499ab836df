package call

// Q850 maps a final SIP status to the ISDN (Q.850) cause a CDR or a PRI
// leg carries, per the table of RFC 3398 section 8.2.6.1. Statuses the
// table does not list map by class: 2xx to 16 (normal clearing), other 4xx
// to 127 (interworking, unspecified), 5xx to 41 (temporary failure), 6xx
// to 31 (normal, unspecified).
func Q850(status uint32) uint32 {
	if c, ok := q850Table[status]; ok {
		return c
	}
	switch {
	case status >= 200 && status < 300:
		return 16 // normal call clearing
	case status >= 600:
		return 31 // normal, unspecified
	case status >= 500:
		return 41 // temporary failure
	}
	return 127 // interworking, unspecified
}

// Cause values used for endings that are not a SIP status.
const (
	CauseNormalClearing = 16  // a BYE from either side
	CauseNoAnswer       = 19  // no answer from user (user alerted)
	CauseRecoveryTimer  = 102 // recovery on timer expiry (session timer, no ACK)
	CauseTemporary      = 41  // temporary failure (internal error, restart)
	CauseOriginatorGone = 127 // CANCEL by the caller: RFC 3398 lists no cause; interworking
)

var q850Table = map[uint32]uint32{
	400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21,
	408: 102, 409: 41, 410: 22, 413: 127, 414: 127, 415: 79, 416: 127,
	420: 127, 421: 127, 423: 127, 480: 18, 481: 41, 482: 25, 483: 25,
	484: 28, 485: 1, 486: 17, 487: 127, 488: 127, 500: 41, 501: 79,
	502: 38, 503: 41, 504: 102, 505: 127, 513: 127, 600: 17, 603: 21,
	604: 1, 606: 58,
}
