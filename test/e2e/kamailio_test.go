package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// The sipp scenarios and this harness are checked against a registrar this
// project did not write: Kamailio 5.6 with test/bench/kamailio/registrar.cfg
// (the benchmark's reference). A scenario that fails here is wrong itself,
// whatever Tandem does. (Kamailio answers bad credentials with a new 401, not
// 403, so register_wrong_password.xml is checked against Tandem only.)
func TestScenariosAgainstKamailio(t *testing.T) {
	if !peers.HaveSipp() {
		peers.Missing(t, "sipp not installed")
	}
	if _, err := peers.KamailioBinary(); err != nil {
		peers.Missing(t, "%v", err)
	}
	dir := t.TempDir()
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := peers.StartKamailio(peers.KamailioOptions{
		Listen: fmt.Sprintf("udp:127.0.0.1:%d", port), Children: 1, Realm: domain, Password: "secret",
		ShmMB: 64, PkgMB: 8, LogDir: dir,
	}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop(5 * time.Second)

	users := peers.Users(20, "secret")
	inf := filepath.Join(dir, "users.csv")
	if err := peers.WriteInjection(inf, domain, users); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(dir, "one.csv")
	if err := peers.WriteInjection(one, domain, users[:1]); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		scenario string
		inf      string
		calls    int
		keys     map[string]string
		want     string // a line the message trace must hold
	}{
		{"register_auth.xml", inf, 20, nil, ";expires=3600"},
		{"register_expires.xml", one, 1, map[string]string{"expires": "300"}, ";expires=300"},
		{"register_refresh.xml", one, 1, map[string]string{"expires1": "300", "expires2": "3600"}, "CSeq: 3 REGISTER"},
		{"register_too_brief.xml", one, 1, map[string]string{"expires": "10"}, "Min-Expires: 60"},
		{"register_expires.xml", one, 1, map[string]string{"expires": "0"}, "SIP/2.0 200 OK"},
	}
	for i, c := range cases {
		path, err := peers.Scenario(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		res, err := peers.RunSipp(peers.SippRun{
			Name: fmt.Sprintf("%d-%s", i, strings.TrimSuffix(c.scenario, ".xml")), Dir: dir,
			Scenario: path, Remote: fmt.Sprintf("127.0.0.1:%d", port), LocalIP: "127.0.0.1", LocalPort: 5061 + i,
			Inf: c.inf, Calls: c.calls, Rate: 100, Timeout: 20 * time.Second, AuthURI: domain, Keys: c.keys, TraceMsg: true,
		})
		if err != nil {
			t.Fatalf("%s: %v", c.scenario, err)
		}
		if res.Successful != c.calls || res.Failed != 0 {
			t.Errorf("%s against Kamailio: %s\n%s\n--- kamailio\n%s", c.scenario, res, res.Diagnostics(), k.Tail(20))
			continue
		}
		if msgs := peers.TailFile(res.MsgFile, 100000); !strings.Contains(msgs, c.want) {
			t.Errorf("%s against Kamailio: the trace lacks %q\n%s", c.scenario, c.want, res.Diagnostics())
		}
	}
}
