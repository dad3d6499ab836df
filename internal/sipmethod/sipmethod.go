// Package sipmethod knows which SIP request methods exist (RFC 3261 and the
// extensions carriers meet), so that the gateway can tell 405 (a method we
// know but do not allow here) from 501 (one we do not know), and metrics can
// fold unknown methods into one label value instead of letting a peer grow
// the label cardinality.
package sipmethod

// Known reports whether m is a SIP method defined by RFC 3261 or a common
// extension (PRACK, SUBSCRIBE, NOTIFY, PUBLISH, INFO, REFER, MESSAGE,
// UPDATE). Method names are case-sensitive (RFC 3261 7.1).
func Known(m string) bool {
	switch m {
	case "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS",
		"PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE":
		return true
	}
	return false
}
