package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/actors/registrar"
)

func TestFormatContact(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r := &registrar.Result{Now: now}
	for _, c := range []struct {
		b    registrar.Binding
		want string
	}{
		{registrar.Binding{Contact: "sip:a@h", ExpiresAt: now.Add(60 * time.Second), QMilli: -1}, "<sip:a@h>;expires=60"},
		{registrar.Binding{Contact: "sip:a@h", ExpiresAt: now.Add(59500 * time.Millisecond), QMilli: 500, Params: "+sip.instance=\"<urn:x>\""},
			`<sip:a@h>;expires=60;q=0.5;+sip.instance="<urn:x>"`},
		{registrar.Binding{Contact: "sip:a@h", ExpiresAt: now.Add(time.Hour), QMilli: 1000}, "<sip:a@h>;expires=3600;q=1"},
	} {
		if got := formatContact(c.b, r); got != c.want {
			t.Errorf("formatContact(%+v) = %s, want %s", c.b, got, c.want)
		}
	}
}

func TestHTTPDate(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("x", 3600))
	for _, at := range []time.Time{t0, t0.Add(300 * time.Millisecond), t0.Add(time.Second), t0.Add(-time.Hour)} {
		if got, want := httpDate(at), at.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("httpDate(%v) = %s, want %s", at, got, want)
		}
	}
}

func TestURIHelpers(t *testing.T) {
	for _, text := range []string{"sip:example.test", "sip:alice@127.0.0.1:5061;transport=udp", "sips:bob@[::1]:5061;lr?subject=x"} {
		var u sip.Uri
		if err := sip.ParseUri(text, &u); err != nil {
			t.Fatal(err)
		}
		if got, want := uriString(&u), u.String(); got != want {
			t.Errorf("uriString = %s, want %s", got, want)
		}
		if !uriIs(&u, u.String()) || uriIs(&u, u.String()+"x") {
			t.Errorf("uriIs(%s) wrong", text)
		}
	}
}
