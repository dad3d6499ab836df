package gateway

import (
	"reflect"
	"testing"

	"github.com/tandemswitch/tandem/actors/call"
)

// The first bound address is the default listener; the first of every
// other transport is one of its Others, which call.Local.For picks for a
// next hop naming that transport.
func TestLocalOf(t *testing.T) {
	for _, c := range []struct {
		addrs []string
		want  call.Local
	}{
		{[]string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"},
			call.Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP", Others: []call.Local{{Host: "127.0.0.1", Port: 5060, Transport: "TCP"}}}},
		{[]string{"tcp:[::1]:5070", "udp:[::1]:5071", "udp:127.0.0.1:5072", "tcp:127.0.0.1:5073"},
			call.Local{Host: "::1", Port: 5070, Transport: "TCP", Others: []call.Local{{Host: "::1", Port: 5071, Transport: "UDP"}}}},
		{[]string{"udp:127.0.0.1:5060"}, call.Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}},
		{[]string{"bogus", "udp:127.0.0.1:5062"}, call.Local{Host: "127.0.0.1", Port: 5062, Transport: "UDP"}},
		{nil, call.Local{Host: "127.0.0.1", Port: 5060, Transport: "UDP"}},
	} {
		if got := localOf(c.addrs); !reflect.DeepEqual(got, c.want) {
			t.Errorf("localOf(%q) = %+v, want %+v", c.addrs, got, c.want)
		}
	}
	// For a TCP next hop, the TCP listener.
	if l := localOf([]string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5061"}).For("tcp"); l.Port != 5061 || l.Transport != "TCP" {
		t.Errorf("For(tcp) = %+v", l)
	}
}
