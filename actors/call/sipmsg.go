package call

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/internal/siphdr"
)

// Identities. A call's id is derived from the caller's INVITE (Call-ID,
// From tag, CSeq), so the INVITE and every retransmission of it, before or
// after a restart, name the same actor with no lookup table. Everything
// Tandem generates for the call carries the id: the tag it gives leg A
// ("<id>-a"), its From tag on B leg n ("<id>-b<n>"), leg n's Call-ID and
// the Contact users it hands out (same strings). An in-dialog request to
// Tandem always carries Tandem's own tag in To, so the gateway routes any
// of them statelessly (ARCHITECTURE.md invariant 7).

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// IDFor is the call id for a caller's INVITE.
func IDFor(callID, fromTag string, cseq uint32) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d", callID, fromTag, cseq)
	return idEncoding.EncodeToString(h.Sum(nil)[:15]) // 24 characters, 120 bits
}

// ValidID tells whether s looks like a call id.
func ValidID(s string) bool {
	if len(s) != 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// StreamName is the event stream of call id.
func StreamName(id string) string { return "call-" + id }

// ALegTag is the tag Tandem gives leg A.
func ALegTag(id string) string { return id + "-a" }

// BLegTag is Tandem's tag on B leg n (also the leg's Call-ID).
func BLegTag(id string, n uint32) string { return id + "-b" + strconv.Itoa(int(n)) }

// ParseTag splits one of Tandem's tags into call id, side ("a" or "b") and
// leg number (0 for side a).
func ParseTag(tag string) (id, side string, leg uint32, ok bool) {
	i := strings.LastIndexByte(tag, '-')
	if i < 0 || !ValidID(tag[:i]) {
		return "", "", 0, false
	}
	id, rest := tag[:i], tag[i+1:]
	switch {
	case rest == "a":
		return id, "a", 0, true
	case len(rest) > 1 && rest[0] == 'b':
		n, err := strconv.ParseUint(rest[1:], 10, 16)
		if err != nil || n == 0 {
			return "", "", 0, false
		}
		return id, "b", uint32(n), true
	}
	return "", "", 0, false
}

// Local is where Tandem is reached: its Via and Contact host and port on
// the transport a request goes out on when its next hop names none, and
// the node's listeners on the other transports, for a next hop that does
// (For).
type Local struct {
	Host      string
	Port      int
	Transport string // "UDP" or "TCP"
	// Others are the node's listeners on other transports than Transport,
	// one per transport.
	Others []Local
}

// For is the listener a request to a next hop whose URI names transport
// (its transport parameter, any case; "" for none) goes out on, and whose
// address its Via and Contact carry (RFC 3261 18.1.1: the Via names the
// transport the request is sent on). A next hop naming no transport, or
// one the node does not listen on, gets l itself: for a sip URI without a
// transport parameter that is UDP (RFC 3263 4.1) when, as usual, the node
// listens on UDP first.
func (l Local) For(transport string) Local {
	if transport == "" || strings.EqualFold(transport, l.transport()) {
		return l
	}
	for _, o := range l.Others {
		if strings.EqualFold(transport, o.transport()) {
			return Local{Host: o.Host, Port: o.Port, Transport: o.Transport, Others: l.othersBut(o)}
		}
	}
	return l
}

// Serves tells whether the node has a listener for a next hop naming
// transport ("" names none, and the default listener serves it).
func (l Local) Serves(transport string) bool {
	if transport == "" || strings.EqualFold(transport, l.transport()) {
		return true
	}
	for _, o := range l.Others {
		if strings.EqualFold(transport, o.transport()) {
			return true
		}
	}
	return false
}

// ErrNoTransport is why a request is not sent: its next hop names a
// transport the node does not listen on, or is a sips URI, which needs TLS
// on every hop (RFC 3261 26.2.2), and the node has no TLS listener. A
// transport the URI names is the one to use (RFC 3263 4.1): sending over
// another would put a request meant for TLS in the clear. Like a transport
// error, it counts as a 503 from that next hop (8.1.3.1, 16.9).
var ErrNoTransport = errors.New("no listener on the transport the next hop needs")

// reach checks that a request whose next hop is u, naming transport, can
// go out on one of the node's listeners.
func (l Local) reach(u *sip.Uri, transport string) error {
	switch {
	case strings.EqualFold(u.Scheme, "sips") && !l.Serves("tls"):
		return fmt.Errorf("%w: %s is a sips URI and the node has no TLS listener", ErrNoTransport, u.String())
	case !l.Serves(transport):
		return fmt.Errorf("%w: %s names transport %q", ErrNoTransport, u.String(), transport)
	}
	return nil
}

// reachText is reach for a request to target (as text) with route set
// routes, the way requests built as text (PRACK, the BYE of a 2xx that lost)
// are addressed. A target or first Route that does not parse is left to
// the build, which fails on it.
func (l Local) reachText(target string, routes []string) error {
	var u sip.Uri
	if err := sip.ParseUri(target, &u); err != nil && len(routes) == 0 {
		return nil
	}
	hop, next := nextHop(&u, routes)
	if hop == nil {
		return nil
	}
	return l.reach(hop, next)
}

// othersBut is l's listeners with o swapped for l itself, for For.
func (l Local) othersBut(o Local) []Local {
	out := make([]Local, 0, len(l.Others))
	out = append(out, Local{Host: l.Host, Port: l.Port, Transport: l.Transport})
	for _, x := range l.Others {
		if !strings.EqualFold(x.transport(), o.transport()) {
			out = append(out, x)
		}
	}
	return out
}

// containsFold tells whether s contains sub, ASCII case folded.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// uriTransport is the transport parameter of a URI, "" when it has none.
func uriTransport(u *sip.Uri) string {
	if u == nil {
		return ""
	}
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "transport") { // names are case-insensitive (19.1.4)
			return kv.V
		}
	}
	return ""
}

// nextHopTransport is the transport parameter of the URI a request to
// target with route set routes (Route values, in order) is sent to: the
// first Route's (loose routing, RFC 3261 16.12) when there is one, else
// the target's (8.1.2). "" when it names none or does not parse.
func nextHopTransport(target *sip.Uri, routes []string) string {
	_, tr := nextHop(target, routes)
	return tr
}

// nextHop is the URI a request to target with route set routes goes to,
// and the transport it names, as nextHopTransport says; nil when the first
// Route does not parse.
func nextHop(target *sip.Uri, routes []string) (*sip.Uri, string) {
	if len(routes) > 0 {
		var u sip.Uri
		var hp sip.HeaderParams
		if _, err := sip.ParseAddressValue(routes[0], &u, &hp); err != nil {
			return nil, ""
		}
		return &u, uriTransport(&u)
	}
	return target, uriTransport(target)
}

// textTransport is nextHopTransport for a target given as text.
func textTransport(target string, routes []string) string {
	if len(routes) == 0 && !containsFold(target, "transport=") {
		return "" // the usual case, without parsing
	}
	var u sip.Uri
	if len(routes) == 0 {
		if err := sip.ParseUri(target, &u); err != nil {
			return ""
		}
	}
	return nextHopTransport(&u, routes)
}

func (l Local) hostport() string {
	if strings.Contains(l.Host, ":") {
		return "[" + l.Host + "]:" + strconv.Itoa(l.Port)
	}
	return l.Host + ":" + strconv.Itoa(l.Port)
}

func (l Local) contact(user string) string {
	t := ""
	if l.Transport != "" && !strings.EqualFold(l.Transport, "UDP") {
		t = ";transport=" + strings.ToLower(l.Transport)
	}
	return "<sip:" + user + "@" + l.hostport() + t + ">"
}

// transport is the transport our Via names: upper case, UDP when unset.
func (l Local) transport() string {
	if l.Transport == "" {
		return "UDP"
	}
	return strings.ToUpper(l.Transport)
}

// viaHeader appends to req the Via that via renders, typed, and returns
// the transport it names.
func (l Local) viaHeader(branch string, req *sip.Request) string {
	tr := l.transport()
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tr, Host: l.Host, Port: l.Port,
		Params: sip.HeaderParams{{K: "branch", V: branch}, {K: "rport", V: ""}}})
	return tr
}

func (l Local) via(branch string) string {
	return "SIP/2.0/" + l.transport() + " " + l.hostport() + ";branch=" + branch + ";rport"
}

// dialogRequest is an in-dialog request Tandem sends on either leg, from
// what the events recorded of the dialog (RFC 3261 12.2.1.1): the remote
// target, the route set and the From and To values are strings there.
type dialogRequest struct {
	method   string
	target   string // the remote target (request URI)
	branch   string
	routes   []string // Route values, in order
	from, to string   // header values, tags included
	callID   string
	cseq     uint32
	contact  string   // a Contact value, or "" for none
	reasons  []string // Reason values
	src      *sip.Request
	ctype    string
	body     []byte
}

// build makes the request from typed headers, in the order (and, checked
// by TestDialogRequestSaysWhatTheTextBuildSaid, the very text) of the
// build as text it replaces. The strings from the events go through
// sipgo's own header parsers, as they did when the whole request was
// parsed back.
func (d *dialogRequest) build(local Local) (*sip.Request, error) {
	var target sip.Uri
	if err := sip.ParseUri(d.target, &target); err != nil {
		return nil, fmt.Errorf("build %s: request URI %q: %w", d.method, d.target, err)
	}
	hop, next := nextHop(&target, d.routes)
	if hop != nil {
		if err := local.reach(hop, next); err != nil {
			return nil, fmt.Errorf("build %s: %w", d.method, err)
		}
	}
	req := sip.NewRequest(sip.RequestMethod(d.method), target)
	tr := local.For(next).viaHeader(d.branch, req)
	for _, r := range d.routes {
		if err := appendParsed(req, "Route", r); err != nil {
			return nil, fmt.Errorf("build %s: %w", d.method, err)
		}
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if err := appendParsed(req, "From", d.from); err != nil {
		return nil, fmt.Errorf("build %s: %w", d.method, err)
	}
	if err := appendParsed(req, "To", d.to); err != nil {
		return nil, fmt.Errorf("build %s: %w", d.method, err)
	}
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq, MethodName: sip.RequestMethod(d.method)})
	if d.contact != "" {
		if err := appendParsed(req, "Contact", d.contact); err != nil {
			return nil, fmt.Errorf("build %s: %w", d.method, err)
		}
	}
	for _, r := range d.reasons {
		req.AppendHeader(sip.NewHeader("Reason", r))
	}
	if d.src != nil {
		copyAllowed(requestHeaders{req}, d.src)
	}
	if len(d.body) > 0 && d.ctype != "" {
		ct := sip.ContentTypeHeader(d.ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(d.body)
	req.SetTransport(tr)
	return req, nil
}

// headerParser is sipgo's: the one its message parser uses.
var headerParser = sip.HeadersParser(sip.DefaultHeadersParser())

// appendParsed parses "name: value" as sipgo's message parser would and
// appends the header (or headers, for a comma-separated list) to req.
func appendParsed(req *sip.Request, name, value string) error {
	hs, err := headerParser.ParseHeader(nil, []byte(name+": "+value))
	if err != nil {
		return fmt.Errorf("%s %q: %w", name, value, err)
	}
	for _, h := range hs {
		req.AppendHeader(h)
	}
	return nil
}

// msg is a SIP message under construction as text, parsed by sipgo when
// done: the same parser that reads what peers send checks what we send.
type msg struct {
	b strings.Builder
}

func (m *msg) h(name, value string) {
	m.b.WriteString(name)
	m.b.WriteString(": ")
	m.b.WriteString(value)
	m.b.WriteString("\r\n")
}

func (m *msg) request(ctype string, body []byte) (*sip.Request, error) {
	if len(body) > 0 && ctype != "" {
		m.h("Content-Type", ctype)
	}
	m.h("Content-Length", strconv.Itoa(len(body)))
	m.b.WriteString("\r\n")
	m.b.Write(body)
	parsed, err := sip.ParseMessage([]byte(m.b.String()))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req, ok := parsed.(*sip.Request)
	if !ok {
		return nil, errors.New("build request: not a request")
	}
	return req, nil
}

func newMsg(method, ruri string) *msg {
	m := &msg{}
	m.b.Grow(512)
	m.b.WriteString(method)
	m.b.WriteByte(' ')
	m.b.WriteString(ruri)
	m.b.WriteString(" SIP/2.0\r\n")
	return m
}

// headered is what requests and responses share.
type headered interface {
	Headers() []sip.Header // looked up through siphdr
	ContentType() *sip.ContentTypeHeader
	Body() []byte
}

// Headers copied from one leg to the other (an allow-list: B2BUA-PITFALLS
// 8). Via, Route, Record-Route, Contact, Call-ID, tags and anything naming
// an address are never copied.
var relayedHeaders = []string{"Supported", "Allow", "Accept", "Content-Disposition",
	"Session-Expires", "Min-SE", "Info-Package", "Event", "Subject", "Priority"}

// headerSink takes headers by name and value: a message built as text
// (msg) or a typed one (requestHeaders).
type headerSink interface {
	h(name, value string)
}

// requestHeaders appends headers to a typed request, as generic headers:
// the ones copied from leg to leg are all headers sipgo does not parse.
type requestHeaders struct{ req *sip.Request }

func (r requestHeaders) h(name, value string) { r.req.AppendHeader(sip.NewHeader(name, value)) }

// copyAllowed writes src's allow-listed headers into m. In a dialog,
// 100rel is not offered (PRACK is relayed for the initial INVITE only).
func copyAllowed(m headerSink, src headered, skip ...string) { copyHeaders(m, src, false, skip...) }

// copyHeaders is copyAllowed; with rel the caller's 100rel support is
// passed on (RFC 3262 is relayed end to end for the initial INVITE), and
// so is its Require of 100rel or timer (the gateway refused any other
// required extension with 420): a caller that requires reliable
// provisionals gets them from the callee, or the callee's 420.
func copyHeaders(m headerSink, src headered, rel bool, skip ...string) {
	if rel {
		var required []string
		for h := range siphdr.Each(src, "Require") {
			for t := range strings.SplitSeq(h.Value(), ",") {
				if t = strings.TrimSpace(t); strings.EqualFold(t, "100rel") || strings.EqualFold(t, "timer") {
					required = append(required, t)
				}
			}
		}
		if len(required) > 0 {
			m.h("Require", strings.Join(required, ", "))
		}
	}
	for _, name := range relayedHeaders {
		if contains(skip, name) {
			continue
		}
		for h := range siphdr.Each(src, name) {
			v := h.Value()
			if strings.EqualFold(name, "Supported") && !rel {
				v = dropOption(v, "100rel")
				if v == "" {
					continue
				}
			}
			m.h(name, v)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func dropOption(v, opt string) string {
	var keep []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p != "" && !strings.EqualFold(p, opt) {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ", ")
}

func contentType(m headered) string {
	if h := m.ContentType(); h != nil {
		return h.Value()
	}
	return ""
}

// sdpDirection is the session's media direction attribute in an SDP body
// (the first a=sendrecv/sendonly/recvonly/inactive; sendrecv if none).
func sdpDirection(body []byte) string {
	dir := "sendrecv"
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		switch line {
		case "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv":
			return line[2:]
		}
	}
	return dir
}

// headerValue returns the value of the first header called name, or "".
func headerValue(m headered, name string) string {
	if h := siphdr.First(m, name); h != nil {
		return h.Value()
	}
	return ""
}

// sessionExpires parses a Session-Expires value (RFC 4028 4):
// "1800;refresher=uac".
func sessionExpires(v string) (uint32, string) {
	if v == "" {
		return 0, ""
	}
	parts := strings.Split(v, ";")
	n, err := strconv.ParseUint(strings.TrimSpace(parts[0]), 10, 32)
	if err != nil {
		return 0, ""
	}
	ref := ""
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			ref = strings.ToLower(val)
		}
	}
	return uint32(n), ref
}

// uriOf returns the URI inside a name-addr ("<sip:x@y>;tag=1" -> "sip:x@y").
func uriOf(nameAddr string) string {
	if i := strings.IndexByte(nameAddr, '<'); i >= 0 {
		if j := strings.IndexByte(nameAddr[i:], '>'); j > 0 {
			return nameAddr[i+1 : i+j]
		}
	}
	v := nameAddr
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}
