// Package e2e holds end-to-end tests: each starts its own bin/tandem (built
// by `make build`; `make test-e2e` builds it first) on its own loopback ports
// and data dir, drives it with sipp (test/sipp scenarios) and checks the
// answers and the HTTP API. A failing test prints the tails of tandem's log
// and of sipp's output, errors and message trace, and keeps its work
// directory (TANDEM_E2E_KEEP=1 keeps it for passing tests too).
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

const domain = "example.test"

// harness is one test's tandem, config, work directory and sipp runs.
type harness struct {
	t          *testing.T
	dir        string
	bin        string
	cfg        peers.TandemConfig
	cfgPath    string
	sipPort    int
	sipAddr    string // 127.0.0.1:PORT
	httpListen string
	tandem     *peers.Tandem
	runs       []*peers.SippResult
}

// newHarness writes a tandem config (users, the given tweaks) in a fresh work
// directory; it does not start tandem.
func newHarness(t *testing.T, users []peers.Cred, tweak func(*peers.TandemConfig)) *harness {
	t.Helper()
	bin, err := peers.TandemBinary()
	if err != nil {
		peers.Missing(t, "no tandem binary: %v", err)
	}
	if !peers.HaveSipp() {
		peers.Missing(t, "sipp not installed (make deps-test, or apt-get install -y sip-tester)")
	}
	dir, err := os.MkdirTemp("", "tandem-e2e-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, bin: bin}
	if h.sipPort, err = peers.FreePort("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	httpPort, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	h.sipAddr = fmt.Sprintf("127.0.0.1:%d", h.sipPort)
	h.httpListen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	h.cfg = peers.TandemConfig{
		NodeID:     "e2e",
		DataDir:    filepath.Join(dir, "data"),
		Domain:     domain,
		SIPListen:  []string{"udp:" + h.sipAddr, "tcp:" + h.sipAddr},
		HTTPListen: h.httpListen,
		MinExpires: 60,
		MaxExpires: 3600,
		Users:      users,
	}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.cfgPath = filepath.Join(dir, "tandem.yaml")
	if err := peers.WriteTandemConfig(h.cfgPath, h.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cleanup)
	return h
}

func (h *harness) cleanup() {
	if h.tandem != nil {
		if err := h.tandem.Stop(10 * time.Second); err != nil {
			h.t.Logf("stopping tandem: %v", err)
		}
	}
	if h.t.Failed() {
		h.t.Logf("work directory kept: %s", h.dir)
		h.dump()
		return
	}
	if os.Getenv("TANDEM_E2E_KEEP") != "" {
		h.t.Logf("work directory kept (TANDEM_E2E_KEEP): %s", h.dir)
		return
	}
	os.RemoveAll(h.dir)
}

// dump logs the tails of tandem's log and of the sipp runs.
func (h *harness) dump() {
	var b strings.Builder
	fmt.Fprintf(&b, "--- tandem config %s\n%s", h.cfgPath, configHead(h.cfgPath, 16))
	fmt.Fprintf(&b, "--- tandem log %s (tail)\n%s\n", filepath.Join(h.dir, "tandem.log"), peers.TailFile(filepath.Join(h.dir, "tandem.log"), 60))
	for i, r := range h.runs {
		if i == len(h.runs)-1 || r.Failed > 0 || r.ExitCode != 0 {
			b.WriteString(r.Diagnostics())
		} else {
			fmt.Fprintf(&b, "sipp %s\n", r.String())
		}
	}
	h.t.Log("\n" + b.String())
}

func configHead(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error() + "\n"
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines)\n", len(lines)-n))
	}
	return strings.Join(lines, "")
}

// start starts tandem and waits (bounded) for /healthz.
func (h *harness) start() *peers.Tandem {
	h.t.Helper()
	t, err := peers.StartTandem(h.bin, "tandem", h.cfgPath, h.httpListen, h.dir, 20*time.Second)
	if err != nil {
		h.t.Fatalf("start tandem: %v", err)
	}
	h.tandem = t
	return t
}

// kill ends tandem with SIGKILL (no chance to flush anything).
func (h *harness) kill() {
	h.t.Helper()
	if err := h.tandem.Kill(); err != nil {
		h.t.Fatal(err)
	}
	h.tandem = nil
}

// sippOpts are the per-run settings of harness.sipp.
type sippOpts struct {
	port  int // local port (0: a free one); the Contact carries it
	rate  int // calls per second (0: 50)
	limit int // simultaneous calls (0: 50)
	keys  map[string]string
	// transport is sipp's -t: "" (UDP) or "t1" (one TCP connection).
	transport string
}

// sipp runs a scenario once per credential (one call each) against tandem,
// with the message trace on, and returns sipp's result.
func (h *harness) sipp(name, scenario string, creds []peers.Cred, o sippOpts) *peers.SippResult {
	h.t.Helper()
	path, err := peers.Scenario(scenario)
	if err != nil {
		h.t.Fatal(err)
	}
	inf := filepath.Join(h.dir, name+".csv")
	if err := peers.WriteInjection(inf, domain, creds); err != nil {
		h.t.Fatal(err)
	}
	if o.port == 0 {
		if o.port, err = peers.FreePort("127.0.0.1"); err != nil {
			h.t.Fatal(err)
		}
	}
	if o.rate == 0 {
		o.rate = 50
	}
	if o.limit == 0 {
		o.limit = 50
	}
	res, err := peers.RunSipp(peers.SippRun{
		Name:      name,
		Dir:       h.dir,
		Scenario:  path,
		Remote:    h.sipAddr,
		LocalIP:   "127.0.0.1",
		LocalPort: o.port,
		Inf:       inf,
		Calls:     len(creds),
		Rate:      o.rate,
		Limit:     o.limit,
		Timeout:   40 * time.Second,
		AuthURI:   domain,
		Keys:      o.keys,
		TraceMsg:  true,
		Extra:     []string{"-recv_timeout", "10000"},
		Transport: o.transport,
	})
	if res != nil {
		h.runs = append(h.runs, res)
	}
	if err != nil {
		h.t.Fatalf("sipp %s: %v", name, err)
	}
	return res
}

// expectCalls fails the test unless sipp counted ok successful and failed
// failed calls.
func (h *harness) expectCalls(res *peers.SippResult, ok, failed int) {
	h.t.Helper()
	if res.Successful != ok || res.Failed != failed {
		h.t.Fatalf("sipp %s: SuccessfulCall=%d FailedCall=%d, want %d and %d (see the sipp trace below)",
			res.Run.Name, res.Successful, res.Failed, ok, failed)
	}
}

// registrations lists tandem's bindings.
func (h *harness) registrations() []peers.Registration {
	h.t.Helper()
	regs, err := h.tandem.Registrations()
	if err != nil {
		h.t.Fatalf("GET /api/v1/registrations: %v", err)
	}
	return regs
}

// waitRegistrations polls the API (every 100 ms, at most timeout) until cond
// holds, and fails the test with what was last listed otherwise.
func (h *harness) waitRegistrations(what string, timeout time.Duration, cond func([]peers.Registration) bool) []peers.Registration {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var regs []peers.Registration
	var err error
	for i := 0; i < 1000; i++ {
		regs, err = h.tandem.Registrations()
		if err == nil && cond(regs) {
			return regs
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("waiting %v for %s: GET /api/v1/registrations: %v", timeout, what, err)
	}
	h.t.Fatalf("waited %v for %s; the API lists %d bindings: %s", timeout, what, len(regs), summarize(regs, 10))
	return nil
}

// waitEvents polls an AOR's events until cond holds (at most timeout).
func (h *harness) waitEvents(aor, what string, timeout time.Duration, cond func([]peers.Event) bool) []peers.Event {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var evs []peers.Event
	var err error
	for i := 0; i < 1000; i++ {
		evs, err = h.tandem.Events(aor)
		if err == nil && cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("waiting %v for %s: events of %s: %v", timeout, what, aor, err)
	}
	h.t.Fatalf("waited %v for %s; events of %s: %s", timeout, what, aor, eventTypes(evs))
	return nil
}

func aorOf(user string) string { return "sip:" + user + "@" + domain }

// byAOR groups bindings by AOR.
func byAOR(regs []peers.Registration) map[string][]peers.Registration {
	m := map[string][]peers.Registration{}
	for _, r := range regs {
		m[r.AOR] = append(m[r.AOR], r)
	}
	return m
}

func summarize(regs []peers.Registration, n int) string {
	s := make([]string, 0, n+1)
	sorted := append([]peers.Registration(nil), regs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].AOR < sorted[j].AOR })
	for i, r := range sorted {
		if i == n {
			s = append(s, fmt.Sprintf("... and %d more", len(sorted)-n))
			break
		}
		s = append(s, fmt.Sprintf("{%s %s expires_at=%s ua=%q source=%s}", r.AOR, r.Contact, r.ExpiresAt, r.UserAgent, r.Source))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func eventTypes(evs []peers.Event) string {
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = fmt.Sprintf("%d:%s@%d", e.Version, e.Type, e.Position)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func hasEvent(evs []peers.Event, typ string) bool {
	for _, e := range evs {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// sipMessage is one message from a sipp -trace_msg log.
type sipMessage struct {
	Received bool
	Text     string
}

// FirstLine is the request or status line.
func (m sipMessage) FirstLine() string {
	l, _, _ := strings.Cut(strings.TrimLeft(m.Text, "\r\n"), "\n")
	return strings.TrimSpace(l)
}

// Headers returns the values of every header called name (or its compact
// form), one entry per header line.
func (m sipMessage) Headers(name, compact string) []string {
	var out []string
	for _, l := range strings.Split(m.Text, "\n") {
		l = strings.TrimRight(l, "\r")
		if l == "" && len(out) > 0 {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, name) || (compact != "" && strings.EqualFold(k, compact)) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// readMessages parses a sipp message trace.
func readMessages(t *testing.T, path string) []sipMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sipp message trace: %v", err)
	}
	var out []sipMessage
	// Each message: "----...---- <time>\n<transport> message sent|received ...:\n\n<message>"
	for _, block := range strings.Split(string(b), "----------------------------------------------- ")[1:] {
		_, rest, _ := strings.Cut(block, "\n") // the time
		what, msg, ok := strings.Cut(rest, "\n")
		if !ok {
			continue
		}
		out = append(out, sipMessage{Received: strings.Contains(what, "received"), Text: strings.TrimLeft(msg, "\r\n")})
	}
	return out
}

// responses returns the received responses whose status line starts with
// "SIP/2.0 <code>".
func responses(msgs []sipMessage, code int) []sipMessage {
	var out []sipMessage
	prefix := fmt.Sprintf("SIP/2.0 %d", code)
	for _, m := range msgs {
		if m.Received && strings.HasPrefix(m.FirstLine(), prefix) {
			out = append(out, m)
		}
	}
	return out
}

// contactsOf splits Contact header values into their entries (a header may
// list several, comma-separated, outside <> and quotes).
func contactsOf(values []string) []string {
	var out []string
	for _, v := range values {
		depth, quoted, start := 0, false, 0
		for i, c := range v {
			switch {
			case c == '"':
				quoted = !quoted
			case quoted:
			case c == '<':
				depth++
			case c == '>':
				depth--
			case c == ',' && depth == 0:
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
		if s := strings.TrimSpace(v[start:]); s != "" {
			out = append(out, s)
		}
	}
	return out
}
