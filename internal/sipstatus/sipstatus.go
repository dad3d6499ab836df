// Package sipstatus gives the decimal text of a SIP status code (RFC 3261
// 7.2: three digits, 100 to 699) without allocating: metrics label every
// response with it and call events name the response that caused them, a
// few times per call, where strconv.Itoa allocated each time.
package sipstatus

import "strconv"

const first, last = 100, 699

var texts = func() (t [last - first + 1]string) {
	for c := first; c <= last; c++ {
		t[c-first] = strconv.Itoa(c)
	}
	return t
}()

// Text is code in decimal; a code outside 100-699 (which a parser may still
// have let through) is formatted, as strconv.Itoa would.
func Text(code int) string {
	if code >= first && code <= last {
		return texts[code-first]
	}
	return strconv.Itoa(code)
}
