package gateway

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Header values that sipgo leaves to us are parsed here, strictly: each
// parser returns an error naming what is wrong, which becomes the reason of
// a 400. Fuzz targets in headers_fuzz_test.go keep them panic-free.

// maxExpires is the largest expiry value accepted from the wire (2^32-1,
// RFC 3261 20.19); larger values are clamped by the registrar anyway.
const maxExpires = 1<<32 - 1

// parseExpires parses a delta-seconds value (Expires header or the contact
// expires parameter).
func parseExpires(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 10 {
		return 0, fmt.Errorf("bad expires value %q", v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("bad expires value %q", v)
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad expires value %q", v)
	}
	if n > maxExpires {
		n = maxExpires
	}
	return n, nil
}

// parseQ parses a q-value (RFC 3261 25.1: "0" [ "." 0*3DIGIT ] / "1" [ "."
// 0*3("0") ]) into thousandths.
func parseQ(v string) (int32, error) {
	bad := fmt.Errorf("bad q-value %q", v)
	if v == "" || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0, bad
	}
	whole := int32(v[0] - '0')
	frac := int32(0)
	if len(v) > 1 {
		if v[1] != '.' {
			return 0, bad
		}
		digits := v[2:]
		scale := int32(100)
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			if c < '0' || c > '9' {
				return 0, bad
			}
			frac += int32(c-'0') * scale
			scale /= 10
		}
	}
	q := whole*1000 + frac
	if q > 1000 {
		return 0, bad
	}
	return q, nil
}

// formatQ renders thousandths as a q-value ("0.5", "1", "0.125").
func formatQ(q int32) string {
	if q >= 1000 {
		return "1"
	}
	s := strings.TrimRight(fmt.Sprintf("0.%03d", q), "0")
	return strings.TrimSuffix(s, ".")
}

// contactParams splits a Contact's header parameters into expires, q and
// the rest (kept verbatim, in order, as "k=v;k2").
func contactParams(h *sip.ContactHeader) (expires int64, q int32, rest string, err error) {
	expires, q = -1, -1
	var kept []string
	for _, p := range h.Params {
		switch strings.ToLower(p.K) {
		case "expires":
			if expires, err = parseExpires(p.V); err != nil {
				return 0, 0, "", fmt.Errorf("Contact %w", err)
			}
		case "q":
			if q, err = parseQ(p.V); err != nil {
				return 0, 0, "", fmt.Errorf("Contact %w", err)
			}
		default:
			if p.V == "" {
				kept = append(kept, p.K)
			} else {
				kept = append(kept, p.K+"="+p.V)
			}
		}
	}
	return expires, q, strings.Join(kept, ";"), nil
}

// optionTags splits a Require/Supported/Proxy-Require value into tags.
func optionTags(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
