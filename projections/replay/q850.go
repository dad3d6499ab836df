package replay

import "fmt"

// q850Name is the ITU-T Q.850 name, in short, of the cause values Tandem
// writes (actors/call's RFC 3398 table and its own endings); "" for others.
func q850Name(cause uint32) string {
	switch cause {
	case 1:
		return "unallocated number"
	case 16:
		return "normal clearing"
	case 17:
		return "user busy"
	case 18:
		return "no user responding"
	case 19:
		return "no answer from user"
	case 21:
		return "call rejected"
	case 22:
		return "number changed"
	case 25:
		return "exchange routing error"
	case 28:
		return "invalid number format"
	case 31:
		return "normal unspecified"
	case 38:
		return "network out of order"
	case 41:
		return "temporary failure"
	case 58:
		return "bearer capability not available"
	case 63:
		return "service or option not available"
	case 79:
		return "service or option not implemented"
	case 102:
		return "recovery on timer expiry"
	case 127:
		return "interworking unspecified"
	}
	return ""
}

// q850 renders a cause value as "user busy, Q.850 17".
func q850(cause uint32) string {
	if n := q850Name(cause); n != "" {
		return fmt.Sprintf("%s, Q.850 %d", n, cause)
	}
	return fmt.Sprintf("Q.850 %d", cause)
}
