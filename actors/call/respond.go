package call

// Responses to the caller's INVITE and to other requests.

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/internal/siphdr"
)

// responseToA builds a response to the caller's INVITE (from the live
// request or, after a restart, from the events), with Tandem's tag and,
// for 18x and 2xx, its Contact.
func (a *callActor) responseToA(code int, reason string, body []byte, ctype string) *sip.Response {
	req := a.aInvite()
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if code > 100 {
		if to := res.To(); to != nil {
			to.Params.Add("tag", a.aTag)
		}
	}
	if code > 100 && code < 300 {
		res.AppendHeader(sip.NewHeader("Contact", a.aContact()))
	}
	if len(body) > 0 && ctype != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", ctype))
	}
	return res
}

// aContact is the Contact Tandem gives the caller, built once per
// activation (the local address does not change while the node runs).
func (a *callActor) aContact() string {
	if a.aContactHdr == "" {
		a.aContactHdr = a.cfg.Transport.Local().contact(a.aTag)
	}
	return a.aContactHdr
}

// aInvite is the caller's INVITE: the live one, or one rebuilt from
// CallStarted (enough to address responses).
func (a *callActor) aInvite() *sip.Request {
	if a.aReq != nil {
		return a.aReq
	}
	al := a.state.Started.GetALeg()
	m := newMsg("INVITE", a.state.Started.GetRequestUri())
	for _, v := range al.GetVia() {
		m.h("Via", v)
	}
	for _, r := range al.GetRecordRoute() {
		m.h("Record-Route", r)
	}
	m.h("From", al.GetFrom())
	m.h("To", al.GetTo())
	m.h("Call-ID", al.GetCallId())
	m.h("CSeq", fmt.Sprintf("%d INVITE", al.GetCseq()))
	req, err := m.request("", nil)
	if err != nil {
		req = sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "invalid"})
	}
	if tr, src, ok := strings.Cut(al.GetSource(), ":"); ok {
		req.SetTransport(strings.ToUpper(tr))
		req.SetSource(src)
	}
	return req
}

// respondA gives the caller's INVITE a response: on its live transaction
// if there is one, else statelessly. A final response ends our use of it.
func (a *callActor) respondA(code int, reason string, body []byte, ctype string, hdrs [][2]string) {
	if a.state.Phase == PhaseNone && a.aReq == nil {
		return
	}
	res := a.responseToA(code, reason, body, ctype)
	for _, h := range hdrs {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	if a.aTx != nil {
		a.send(a.aTx, res)
	} else {
		_ = a.cfg.Transport.Write(res)
	}
	if code >= 200 {
		a.finishA()
	}
}

// finishA releases the caller's INVITE transaction.
func (a *callActor) finishA() {
	closeDone(a.aDone)
	a.aDone, a.aTx = nil, nil
}

func (a *callActor) respondTo(tx Responder, req *sip.Request, code int, reason string, hdrs [][2]string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		if tag, _ := req.To().Params.Get("tag"); tag == "" {
			to.Params.Add("tag", a.aTag)
		}
	}
	for _, h := range hdrs {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	a.send(tx, res)
}

func (a *callActor) send(tx Responder, res *sip.Response) {
	if res == nil {
		return
	}
	var err error
	if tx != nil {
		err = tx.Respond(res)
	} else {
		err = a.cfg.Transport.Write(res)
	}
	if err != nil {
		a.cfg.Logger.Debug("response not sent", "call", a.id, "code", res.StatusCode, "err", err)
	}
}

func closeDone(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func toTag(res *sip.Response) string {
	if to := res.To(); to != nil {
		t, _ := to.Params.Get("tag")
		return t
	}
	return ""
}

func fromTag(res *sip.Response) string {
	if f := res.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

// copyAllowedResponse copies the allow-listed headers of a response from
// the other leg (Session-Expires, Require: timer, Supported, ...).
func copyAllowedResponse(out, in *sip.Response) {
	for _, name := range []string{"Supported", "Accept", "Session-Expires", "Min-SE", "Content-Disposition", "Allow-Events"} {
		if siphdr.First(out, name) != nil {
			continue
		}
		for h := range siphdr.Each(in, name) {
			v := h.Value()
			if strings.EqualFold(name, "Supported") {
				v = dropOption(v, "100rel")
				if v == "" {
					continue
				}
			}
			out.AppendHeader(sip.NewHeader(name, v))
		}
	}
	if req := siphdr.First(in, "Require"); req != nil && strings.Contains(strings.ToLower(req.Value()), "timer") && siphdr.First(out, "Require") == nil {
		out.AppendHeader(sip.NewHeader("Require", "timer"))
	}
}
