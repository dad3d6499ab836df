package gateway

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/gateway/digest"
	"github.com/tandemswitch/tandem/internal/siphdr"
)

// handleRegister authenticates a REGISTER and hands it to the AOR's actor
// (RFC 3261 10.3). The 200 OK goes out only after the actor has made the
// change durable.
func (g *Gateway) handleRegister(req *sip.Request, tx responder) {
	// Step 1: the Request-URI must name a domain we are registrar for.
	if !g.isOurs(req.Recipient.Host) {
		g.respond(tx, req, 404, "Domain Not Served Here", nil)
		return
	}
	to := req.To()
	if to.Address.User == "" {
		g.respond(tx, req, 400, "To Has No User", nil)
		return
	}
	if !g.isOurs(to.Address.Host) {
		g.respond(tx, req, 404, "Domain Not Served Here", nil)
		return
	}

	// Steps 3-5: authenticate, then authorize the AOR.
	var authz string
	if h := siphdr.First(req, "Authorization"); h != nil {
		authz = h.Value()
	}
	res := g.opts.Auth.Verify(authz, string(req.Method), txKey(req), func(u string) bool { return g.uriMatches(u, &req.Recipient) })
	switch res.Outcome {
	case digest.Challenge, digest.Stale:
		g.challenge(tx, req, res.Outcome == digest.Stale)
		return
	case digest.Malformed:
		g.respond(tx, req, 400, "Bad Authorization ("+res.Reason+")", nil)
		return
	case digest.Forbidden:
		g.respond(tx, req, 403, "Forbidden", nil)
		return
	}
	if res.User != to.Address.User {
		g.respond(tx, req, 403, "Forbidden (may not register another user)", nil)
		return
	}

	cmd, bad := g.registerCommand(req)
	if bad != "" {
		g.respond(tx, req, 400, bad, nil)
		return
	}
	// The registry bounds the wait (sip.request_timeout_ms).
	result, err := g.opts.Registrar.Register(context.Background(), cmd, cause(req))
	if err != nil {
		e := statusFor(err)
		g.opts.Logger.Debug("REGISTER refused", "aor", cmd.AOR, "err", err)
		g.respond(tx, req, e.code, e.reason, e.headers)
		return
	}
	headers := make([][2]string, 0, len(result.Bindings)+1)
	for _, b := range result.Bindings {
		headers = append(headers, [2]string{"Contact", formatContact(b, result)})
	}
	headers = append(headers, [2]string{"Date", httpDate(result.Now)})
	g.respond(tx, req, 200, "OK", headers)
}

// registerCommand turns a REGISTER into the registrar command, or returns
// the reason phrase of a 400.
func (g *Gateway) registerCommand(req *sip.Request) (*registrar.Register, string) {
	to := req.To()
	cmd := &registrar.Register{
		AOR:     "sip:" + to.Address.User + "@" + g.domain,
		CallID:  callID(req),
		CSeq:    req.CSeq().SeqNo,
		Expires: -1,
		Source:  source(req),
	}
	if ua := siphdr.First(req, "User-Agent"); ua != nil {
		cmd.UserAgent = ua.Value()
	}
	if h := siphdr.First(req, "Expires"); h != nil {
		n, err := parseExpires(h.Value())
		if err != nil {
			return nil, "Bad Expires"
		}
		cmd.Expires = n
	}
	for h := range siphdr.Each(req, "Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, "Bad Contact"
		}
		if c.Address.Wildcard {
			cmd.Wildcard = true
			continue
		}
		if c.Address.Host == "" {
			return nil, "Bad Contact URI"
		}
		expires, q, params, err := contactParams(c)
		if err != nil {
			return nil, "Bad Contact (" + err.Error() + ")"
		}
		cmd.Contacts = append(cmd.Contacts, registrar.ContactSpec{
			URI: uriString(&c.Address), Expires: expires, QMilli: q, Params: params,
		})
	}
	if cmd.Wildcard && (len(cmd.Contacts) > 0 || cmd.Expires != 0) {
		return nil, "Contact * Needs Expires: 0 And No Other Contact"
	}
	return cmd, ""
}

// formatContact renders a binding for the 200 OK with its remaining expiry.
func formatContact(b registrar.Binding, r *registrar.Result) string {
	remaining := int64((b.ExpiresAt.Sub(r.Now) + 999_999_999) / 1_000_000_000) // round up
	// One allocation, the result, for usual sizes.
	var buf [256]byte
	s := append(buf[:0], '<')
	s = append(s, b.Contact...)
	s = append(s, ">;expires="...)
	s = strconv.AppendInt(s, remaining, 10)
	if b.QMilli >= 0 {
		s = append(s, ";q="...)
		s = append(s, formatQ(b.QMilli)...)
	}
	if b.Params != "" {
		s = append(s, ';')
		s = append(s, b.Params...)
	}
	return string(s)
}

// httpDate returns t as an HTTP-date (RFC 3261 20.17), formatting it once
// per second rather than once per 200 OK.
func httpDate(t time.Time) string {
	sec := t.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &formattedDate{sec: sec, text: t.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.text
}

type formattedDate struct {
	sec  int64
	text string
}

var lastDate atomic.Pointer[formattedDate]

// uriBufs holds buffers for rendering URIs: sipgo's Uri.String grows a
// strings.Builder several times per URI.
var uriBufs = sync.Pool{New: func() any { b := new(bytes.Buffer); b.Grow(128); return b }}

// uriString renders u as sipgo does, in one allocation for the result
// (and whatever sipgo's parameter rendering takes).
func uriString(u *sip.Uri) string {
	b := uriBufs.Get().(*bytes.Buffer)
	b.Reset()
	u.StringWrite(b)
	s := b.String()
	uriBufs.Put(b)
	return s
}

// uriIs tells whether u renders as text, without allocating a string.
func uriIs(u *sip.Uri, text string) bool {
	b := uriBufs.Get().(*bytes.Buffer)
	b.Reset()
	u.StringWrite(b)
	eq := string(b.Bytes()) == text
	uriBufs.Put(b)
	return eq
}

// challenge answers 401 with one WWW-Authenticate per offered algorithm.
func (g *Gateway) challenge(tx responder, req *sip.Request, stale bool) {
	g.respond(tx, req, 401, "Unauthorized", g.challenges("WWW-Authenticate", stale))
}

// challenges are the headers of a 401 or 407: one name: challenge
// per offered algorithm.
func (g *Gateway) challenges(name string, stale bool) [][2]string {
	cs := g.opts.Auth.Challenges(stale)
	hs := make([][2]string, len(cs))
	for i, c := range cs {
		hs[i] = [2]string{name, c}
	}
	return hs
}

// uriMatches tells whether the digest uri names this server: the
// Request-URI as written or as parsed, or any SIP URI whose host is ours
// (RFC 7616 3.4.6 leaves the exact comparison to the server). sipp, for one,
// puts the server's address there, not the Request-URI. Replays to another
// request are still stopped by the nonce-count guard.
func (g *Gateway) uriMatches(digestURI string, reqURI *sip.Uri) bool {
	if uriIs(reqURI, digestURI) {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") {
		return false
	}
	return g.isOurs(u.Host)
}
