package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// TestGracefulShutdownKeepsBindings: SIGTERM stops tandem cleanly (exit 0,
// within the grace period, the log says it stopped) and a restart on the
// same data_dir lists the same bindings.
func TestGracefulShutdownKeepsBindings(t *testing.T) {
	users := peers.Users(5, "secret")
	h := newHarness(t, users, nil)
	h.start()
	res := h.sipp("register-5", "register_auth.xml", users, sippOpts{rate: 50})
	h.expectCalls(res, len(users), 0)
	before := h.waitRegistrations("5 bindings", 10*time.Second, func(r []peers.Registration) bool { return len(r) == 5 })

	tdm := h.tandem
	if err := tdm.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := tdm.Wait(15 * time.Second); err != nil {
		t.Fatalf("tandem did not stop on SIGTERM: %v\n%s", err, tdm.Tail(20))
	}
	if code := tdm.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, tdm.Tail(20))
	}
	if log := tdm.Tail(5); !strings.Contains(log, "stopped") {
		t.Fatalf("log does not end with a clean stop:\n%s", log)
	}
	h.tandem = nil

	h.start()
	after := h.registrations()
	if summarize(after, 5) != summarize(before, 5) {
		t.Fatalf("bindings changed across a graceful restart:\nbefore %s\nafter  %s", summarize(before, 5), summarize(after, 5))
	}
}
