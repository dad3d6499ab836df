package siphdr

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func parse(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

const register = "REGISTER sip:example.test SIP/2.0\r\n" +
	"v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n" +
	"Max-Forwards: 70\r\nf: <sip:alice@example.test>;tag=1\r\nt: <sip:alice@example.test>\r\ni: 1@x\r\n" +
	"CSeq: 1 REGISTER\r\nm: <sip:alice@127.0.0.1:5061>\r\nContact: <sip:alice@127.0.0.2:5061>\r\n" +
	"EXPIRES: 60\r\nuser-agent: ua/1\r\nx: 1800;refresher=uac\r\nk: timer, 100rel\r\nSupported: path\r\n" +
	"Require: timer\r\nl: 0\r\n\r\n"

func TestFirstAndAll(t *testing.T) {
	req := parse(t, register)
	for _, c := range []struct {
		name, want string
	}{
		{"Expires", "60"},
		{"expires", "60"},
		{"User-Agent", "ua/1"},
		{"Session-Expires", "1800;refresher=uac"}, // written in compact form
		{"session-expires", "1800;refresher=uac"},
		{"Supported", "timer, 100rel"},
		{"Require", "timer"},
		{"Call-ID", "1@x"},
		{"Authorization", ""},
	} {
		if got := Value(req, c.name); got != c.want {
			t.Errorf("Value(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	if n := len(All(req, "Contact")); n != 2 {
		t.Errorf("%d Contact headers, want 2", n)
	}
	if n := len(All(req, "supported")); n != 2 {
		t.Errorf("%d Supported headers, want 2 (k: and Supported:)", n)
	}
	if All(req, "Proxy-Require") != nil {
		t.Errorf("Proxy-Require found")
	}
	for _, name := range []string{"Contact", "supported", "Proxy-Require", "Session-Expires"} {
		var each []sip.Header
		for h := range Each(req, name) {
			each = append(each, h)
		}
		if all := All(req, name); !slices.Equal(each, all) {
			t.Errorf("Each(%q) yields %v, All returns %v", name, each, all)
		}
	}
	n := 0
	for range Each(req, "Contact") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("Each went on after the loop stopped: %d", n)
	}
}

func TestNoAllocations(t *testing.T) {
	req := parse(t, register)
	if n := testing.AllocsPerRun(100, func() {
		_ = First(req, "Authorization")
		_ = First(req, "Session-Expires")
		_ = All(req, "Proxy-Require")
		for h := range Each(req, "Contact") {
			_ = h.Name()
		}
	}); n != 0 {
		t.Errorf("%v allocations per look-up", n)
	}
}
