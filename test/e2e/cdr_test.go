package e2e

import (
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// The CDR projection against real calls: a sipp load with mixed outcomes
// (answered, busy, cancelled), CDRs counted against sipp's own counts,
// exported, rebuilt and exported again byte for byte, in PostgreSQL (a
// server started here) and in SQLite; and a node killed while CDRs are
// being written, after which none is missing or doubled.

// cli runs `tandem args...` and returns its standard output.
func (h *harness) cli(args ...string) string {
	h.t.Helper()
	cmd := exec.Command(h.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("tandem %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// waitProjected waits (bounded) until no call is live and the CDR
// projection has folded every event.
func (h *harness) waitProjected(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		calls, err1 := h.tandem.Calls()
		ps, err2 := h.tandem.Projections()
		if err1 == nil && err2 == nil && len(calls) == 0 && len(ps) == 1 && ps[0].Name == "cdr" &&
			ps[0].Running && ps[0].Lag == 0 && ps[0].Head > 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("CDR projection not caught up after %v: calls %d (%v), projections %+v (%v)", timeout, len(calls), err1, ps, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dispositions counts a CSV export's rows by disposition and checks that
// no call id appears twice.
func dispositions(t *testing.T, export string) map[string]int {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(export)).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("export is not CSV (%v):\n%.500s", err, export)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	out := map[string]int{}
	seen := map[string]bool{}
	for _, r := range rows[1:] {
		id := r[col["call_id"]]
		if seen[id] {
			t.Fatalf("call %s has two CDRs", id)
		}
		seen[id] = true
		out[r[col["disposition"]]]++
	}
	return out
}

// load is one sipp caller/callee pair of a mixed load.
type load struct {
	callee, uac, uas, disposition string
	calls                         int
}

// runLoads runs the loads at once, each at rate calls/s, and returns the
// callers' successful counts by the disposition their calls should get.
func (h *harness) runLoads(loads []load, rate int, hold time.Duration) map[string]int {
	h.t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	ok := map[string]int{}
	for _, l := range loads {
		uas := h.callee(l.callee, l.uas, l.calls)
		uas.Timeout, uas.TraceMsg, uas.BuffSize = 120*time.Second, false, 4<<20
		uac := h.caller(l.callee, l.uac)
		uac.Callers = peers.Users(100, "secret")
		uac.Calls, uac.Rate, uac.Limit, uac.Hold = l.calls, rate, 500, hold
		uac.Timeout, uac.TraceMsg, uac.BuffSize = 120*time.Second, false, 4<<20
		wg.Add(1)
		go func(l load) {
			defer wg.Done()
			res, err := peers.RunCall(uac, 20*time.Second, uas)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range res.All() {
				if r != nil {
					h.runs = append(h.runs, r)
				}
			}
			if err == nil {
				err = res.Check()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s load: %w", l.disposition, err))
			}
			if res.Caller != nil {
				ok[l.disposition] += res.Caller.Successful
			}
		}(l)
	}
	wg.Wait()
	for _, err := range errs {
		h.t.Error(err)
	}
	if h.t.Failed() {
		h.t.FailNow()
	}
	return ok
}

func TestCDRsMatchSippAndRebuildIdentically(t *testing.T) {
	pgDir, err := os.MkdirTemp("", "tandem-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pgDir)
	if _, err := peers.PostgresBinDir(); err != nil {
		peers.Missing(t, "%v", err)
	}
	pg, err := peers.StartPostgres(pgDir, 60*time.Second)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	defer func() {
		if err := pg.Stop(15 * time.Second); err != nil {
			t.Logf("stopping postgres: %v", err)
		}
	}()
	h := newHarness(t, callUsers(), func(c *peers.TandemConfig) { c.CDRSink, c.PostgresDSN = "postgres", pg.DSN })
	h.start()

	counts := h.runLoads([]load{
		{"load", "call_uac.xml", "call_uas.xml", "ANSWERED", 1200},
		{"dave", "call_uac_busy.xml", "call_uas_busy.xml", "BUSY", 500},
		{"erin", "call_uac_cancel.xml", "call_uas_ring.xml", "CANCELLED", 500},
	}, 100, 200*time.Millisecond)
	h.waitProjected(30 * time.Second)

	server := h.tandem.HTTPURL
	if out := h.cli("audit", "verify", "--server", server); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify on the running node:\n%s", out)
	}
	live := h.cli("cdr", "export", "--server", server, "--format", "csv")
	got := dispositions(t, live)
	for d, n := range counts {
		if got[d] != n {
			t.Errorf("%s: %d CDRs, sipp counted %d successful calls", d, got[d], n)
		}
	}
	if len(got) != len(counts) {
		t.Errorf("dispositions %v, want only %v", got, counts)
	}
	liveJSON := h.cli("cdr", "export", "--server", server, "--format", "json")

	// Rebuilt through the running node, in PostgreSQL.
	h.cli("projections", "rebuild", "cdr", "--server", server)
	if again := h.cli("cdr", "export", "--server", server, "--format", "csv"); again != live {
		t.Fatalf("CSV export after a rebuild on the running node differs (%d vs %d bytes)", len(again), len(live))
	}
	if again := h.cli("cdr", "export", "--server", server, "--format", "json"); again != liveJSON {
		t.Fatal("JSON export after a rebuild on the running node differs")
	}

	// Rebuilt with the node stopped: in PostgreSQL (--config) and in
	// SQLite (--data: the default sink).
	if err := h.tandem.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.tandem = nil
	status := h.cli("projections", "status", "--config", h.cfgPath)
	if !strings.Contains(status, "cdr") {
		t.Fatalf("status: %s", status)
	}
	h.cli("projections", "rebuild", "cdr", "--config", h.cfgPath)
	if again := h.cli("cdr", "export", "--config", h.cfgPath, "--format", "csv"); again != live {
		t.Fatal("CSV export after an offline rebuild in PostgreSQL differs")
	}
	h.cli("projections", "rebuild", "cdr", "--data", h.cfg.DataDir)
	if sqlite := h.cli("cdr", "export", "--data", h.cfg.DataDir, "--format", "csv"); sqlite != live {
		t.Fatal("the SQLite sink's export differs from PostgreSQL's")
	}
	t.Logf("CDRs by disposition: %v (sipp: %v)", got, counts)
}

func TestCDRsSurviveKill(t *testing.T) {
	h := newHarness(t, callUsers(), nil)
	h.start()
	const calls = 1500
	uas := h.callee("load", "call_uas.xml", -1)
	uas.Timeout, uas.TraceMsg, uas.BuffSize = 120*time.Second, false, 4<<20
	ur, err := uas.SippRun()
	if err != nil {
		t.Fatal(err)
	}
	callee, err := peers.StartSipp(ur)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if res, _ := callee.Stop(3 * time.Second); res != nil {
			h.runs = append(h.runs, res)
		}
	}()
	uac := h.caller("load", "call_uac.xml")
	uac.Callers = peers.Users(100, "secret")
	uac.Calls, uac.Rate, uac.Limit, uac.Hold = calls, 150, 500, 200*time.Millisecond
	uac.Timeout, uac.TraceMsg, uac.BuffSize = 120*time.Second, false, 4<<20
	uac.RecvTimeout = 3 * time.Second
	cr, err := uac.SippRun()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *peers.SippResult, 1)
	go func() {
		res, _ := peers.RunSipp(cr) // calls fail while the node is down: expected
		done <- res
	}()
	// Kill while calls are being set up, answered and ended, i.e. while
	// the projection is writing CDRs; restart at once.
	time.Sleep(4 * time.Second)
	if ps, err := h.tandem.Projections(); err != nil || len(ps) != 1 || ps[0].Checkpoint == 0 {
		t.Fatalf("no CDR written before the kill: %+v %v", ps, err)
	}
	h.kill()
	h.start()
	res := <-done
	if res != nil {
		h.runs = append(h.runs, res)
		t.Logf("caller across the kill: %d successful, %d failed of %d", res.Successful, res.Failed, calls)
	}
	h.waitProjected(60 * time.Second)
	live := h.cli("cdr", "export", "--server", h.tandem.HTTPURL, "--format", "csv")
	got := dispositions(t, live)
	if res != nil && got["ANSWERED"] < res.Successful {
		t.Errorf("%d answered CDRs, sipp completed %d calls", got["ANSWERED"], res.Successful)
	}
	if err := h.tandem.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.tandem = nil
	// A rebuild from the events is the reference: the projection that
	// lived through the kill must hold exactly the same rows.
	h.cli("projections", "rebuild", "cdr", "--data", h.cfg.DataDir)
	if rebuilt := h.cli("cdr", "export", "--data", h.cfg.DataDir, "--format", "csv"); rebuilt != live {
		t.Fatalf("CDRs written across the kill differ from a rebuild: %v vs %v", got, dispositions(t, rebuilt))
	}
	// The hash chain the node kept across the kill is intact (exit 0).
	if out := h.cli("audit", "verify", "--data", h.cfg.DataDir); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify after the kill:\n%s", out)
	}
	t.Logf("CDRs by disposition across the kill: %v", got)
}
