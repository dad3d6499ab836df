package gateway

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// Stateless replies written straight from the request's bytes, as
// Kamailio's sl module writes them. Building a response through sipgo
// (NewResponseFromRequest clones every Via, From, To, Call-ID and CSeq
// header into new objects, then StringWrite renders them back to text)
// took some 12% of the server's CPU at 17,000 REGISTER/s, for responses
// that only copy header lines of the request. appendReply copies those
// lines instead, with the two changes RFC 3261 asks of a UAS: the top
// Via's empty rport filled in with received (RFC 3581 4), and a To tag
// added (8.2.6.2). Whatever it cannot read with certainty (a folded header
// it would have to copy, a missing header) it leaves to sipgo's path.

// replySpec is what a stateless reply says beyond the request's headers.
type replySpec struct {
	code    int
	reason  string
	method  sip.RequestMethod
	src     netip.AddrPort // where the request came from: rport and received
	tag     []byte         // the To tag, added when the request's To has none and code > 100
	server  string         // the Server header, when not empty
	headers [][2]string    // more headers, in order
}

// appendReply appends to b the response to the request datagram raw (one
// that sipgo's parser accepted) described by s. ok is false, and b is to
// be thrown away, when raw's header block is not one it can copy safely.
func appendReply(b, raw []byte, s replySpec) (_ []byte, ok bool) {
	nl := bytes.IndexByte(raw, '\n')
	if nl < 0 || bytes.HasPrefix(raw, []byte("SIP/")) {
		return b, false
	}
	rest := raw[nl+1:]
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(s.code), 10)
	b = append(b, ' ')
	b = append(b, s.reason...)
	b = append(b, "\r\n"...)

	// RFC 3261 table 3 (20): Record-Route is copied into 18x and 2xx
	// answers, and into an INVITE's other provisionals (12.1.1), never for
	// REGISTER; as sipgo's NewResponseFromRequest does.
	copyRR := s.method != sip.REGISTER && s.method != sip.ACK &&
		((s.code >= 180 && s.code < 190) || (s.code >= 200 && s.code < 300) ||
			(s.method == sip.INVITE && s.code > 100 && s.code < 200))
	var via, from, to, callID, cseq bool
	for ended := false; !ended; {
		if len(rest) == 0 {
			return b, false // no empty line ends the header block
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			ended = true
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // the continuation of a header not copied (see below)
		}
		name, val, found := bytes.Cut(line, []byte(":"))
		if !found {
			return b, false
		}
		kind := replyHeader(bytes.TrimRight(name, " \t"))
		switch {
		case kind == hVia,
			kind == hFrom && !from, kind == hTo && !to,
			kind == hCallID && !callID, kind == hCSeq && !cseq,
			kind == hRecordRoute && copyRR, kind == hTimestamp && s.code == 100:
		default:
			continue // not copied, or a second From, To, Call-ID or CSeq
		}
		if len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			return b, false // folded (RFC 3261 7.3.1): left to sipgo's parser
		}
		val = bytes.Trim(val, " \t")
		b = append(b, replyHeaderNames[kind]...)
		b = append(b, ": "...)
		switch kind {
		case hVia:
			if !via {
				b = appendTopVia(b, val, s.src)
			} else {
				b = append(b, val...)
			}
			via = true
		case hTo:
			b = append(b, val...)
			if s.code > 100 && !hasTagParam(val) {
				b = append(b, ";tag="...)
				b = append(b, s.tag...)
			}
			to = true
		default:
			b = append(b, val...)
			from = from || kind == hFrom
			callID = callID || kind == hCallID
			cseq = cseq || kind == hCSeq
		}
		b = append(b, "\r\n"...)
	}
	if !via || !from || !to || !callID || !cseq {
		return b, false
	}
	if s.server != "" {
		b = append(b, "Server: "...)
		b = append(b, s.server...)
		b = append(b, "\r\n"...)
	}
	for _, h := range s.headers {
		b = append(b, h[0]...)
		b = append(b, ": "...)
		b = append(b, h[1]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	return b, true
}

// The headers appendReply copies.
const (
	hOther = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hRecordRoute
	hTimestamp
)

// replyHeaderNames are the copied headers' full names, by kind; the
// replies use them for the compact forms too.
var replyHeaderNames = [...]string{hVia: "Via", hFrom: "From", hTo: "To", hCallID: "Call-ID",
	hCSeq: "CSeq", hRecordRoute: "Record-Route", hTimestamp: "Timestamp"}

// replyHeader tells which of the copied headers name is, comparing only
// names of its length: most header lines are none of them.
func replyHeader(name []byte) int {
	if len(name) == 1 {
		switch name[0] | 0x20 { // the compact forms (RFC 3261 7.3.3)
		case 'v':
			return hVia
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		}
		return hOther
	}
	for kind, long := range replyHeaderNames {
		if len(long) == len(name) && bytes.EqualFold(name, []byte(long)) {
			return kind
		}
	}
	return hOther
}

// appendTopVia appends the value of the first Via header line, whose first
// via-parm is the top Via: when it has an rport parameter without a value,
// that gets the source port and a received parameter the source address
// (RFC 3581 4; an earlier received is replaced), as sipgo does.
func appendTopVia(b, val []byte, src netip.AddrPort) []byte {
	end := len(val)
	if i := indexUnquoted(val, ','); i >= 0 {
		end = i
	}
	parm, tail := val[:end], val[end:]
	semi := indexUnquoted(parm, ';')
	if semi < 0 || !hasEmptyParam(parm[semi:], "rport") {
		return append(b, val...)
	}
	b = append(b, bytes.TrimRight(parm[:semi], " \t")...)
	for params := parm[semi+1:]; ; {
		p := params
		i := indexUnquoted(params, ';')
		if i >= 0 {
			p, params = params[:i], params[i+1:]
		}
		p = bytes.Trim(p, " \t")
		k, _, _ := bytes.Cut(p, []byte("="))
		k = bytes.TrimRight(k, " \t")
		switch {
		case bytes.EqualFold(k, []byte("rport")):
			b = append(b, ";rport="...)
			b = strconv.AppendUint(b, uint64(src.Port()), 10)
		case bytes.EqualFold(k, []byte("received")) || len(p) == 0:
		default:
			b = append(b, ';')
			b = append(b, p...)
		}
		if i < 0 {
			break
		}
	}
	b = append(b, ";received="...)
	b = src.Addr().Unmap().AppendTo(b)
	return append(b, tail...)
}

// hasEmptyParam tells whether params (";a=1;b...") has the parameter name
// with no value, or an empty one.
func hasEmptyParam(params []byte, name string) bool {
	for len(params) > 0 {
		params = params[1:] // the ';'
		p := params
		if i := indexUnquoted(params, ';'); i >= 0 {
			p, params = params[:i], params[i:]
		} else {
			params = nil
		}
		k, v, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.Trim(k, " \t"), []byte(name)) {
			return len(bytes.Trim(v, " \t")) == 0
		}
	}
	return false
}

// indexUnquoted is the index of the first c in s outside a quoted string
// (with its backslash escapes), or -1.
func indexUnquoted(s []byte, c byte) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == c:
			return i
		}
	}
	return -1
}
