// Package siphdr finds the headers of a sipgo message by name, in any
// letter case and by compact form (RFC 3261 7.3.3 and the compact forms
// IANA's SIP header registry lists), without allocating.
//
// Why not sipgo's GetHeader and GetHeaders: they lower-case the name of
// every header they pass whose name is not one of sipgo's own (Expires,
// User-Agent, Authorization...), one allocation per such header and per
// look-up, which under REGISTER load was some twenty allocations per
// registration. And a header sipgo does not parse keeps the name it was
// written with, so they do not find "x: 1800" as Session-Expires.
package siphdr

import (
	"iter"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Lister is what sipgo's requests and responses offer.
type Lister interface {
	Headers() []sip.Header
}

// compacts maps full header names to their compact forms.
var compacts = [...]struct {
	full    string
	compact byte
}{
	{"Accept-Contact", 'a'}, {"Referred-By", 'b'}, {"Content-Type", 'c'},
	{"Request-Disposition", 'd'}, {"Content-Encoding", 'e'}, {"From", 'f'},
	{"Call-ID", 'i'}, {"Reject-Contact", 'j'}, {"Supported", 'k'},
	{"Content-Length", 'l'}, {"Contact", 'm'}, {"Identity-Info", 'n'},
	{"Event", 'o'}, {"Refer-To", 'r'}, {"Subject", 's'}, {"To", 't'},
	{"Allow-Events", 'u'}, {"Via", 'v'}, {"Session-Expires", 'x'},
	{"Identity", 'y'},
}

// compactOf returns the compact form of the full header name, or 0.
func compactOf(name string) byte {
	for _, c := range compacts {
		if len(c.full) == len(name) && strings.EqualFold(c.full, name) {
			return c.compact
		}
	}
	return 0
}

// is tells whether a header written as hname is the header name (full
// name, compact form compact or 0).
func is(hname, name string, compact byte) bool {
	if len(hname) == 1 && len(name) > 1 {
		return compact != 0 && hname[0]|0x20 == compact
	}
	return strings.EqualFold(hname, name)
}

// First returns the first header called name, or nil.
func First(m Lister, name string) sip.Header {
	c := compactOf(name)
	for _, h := range m.Headers() {
		if is(h.Name(), name, c) {
			return h
		}
	}
	return nil
}

// All returns every header called name, in order; nil when there is none.
func All(m Lister, name string) []sip.Header {
	c := compactOf(name)
	var out []sip.Header
	for _, h := range m.Headers() {
		if is(h.Name(), name, c) {
			out = append(out, h)
		}
	}
	return out
}

// Each yields every header called name, in order, as All returns them but
// without building a slice: for a loop that only reads them.
func Each(m Lister, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		c := compactOf(name)
		for _, h := range m.Headers() {
			if is(h.Name(), name, c) && !yield(h) {
				return
			}
		}
	}
}

// Value returns the value of the first header called name, or "".
func Value(m Lister, name string) string {
	if h := First(m, name); h != nil {
		return h.Value()
	}
	return ""
}
