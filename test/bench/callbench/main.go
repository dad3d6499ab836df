// Command callbench measures authenticated SIP calls per second through a
// server: sipp callers run test/sipp/call_uac.xml (INVITE, 407, INVITE with
// digest credentials, 100/180/200, ACK, a hold of -hold, BYE, 200) towards
// sipp callees running test/sipp/call_uas.xml, whose addresses are
// registered first (call_register_contact.xml), at increasing call rates:
// first through Tandem as a B2BUA (a fresh data dir on disk), then, in the
// same run, through Kamailio 5.6 as a stateful proxy with the dialog module
// (test/bench/kamailio/proxy.cfg), with the same scenarios, users and
// addresses. Each server's best rate is the highest step that was clean:
// every call succeeded on both sides (sipp FailedCall = 0 and
// SuccessfulCall = the step's count on callers and callees), with at most 1%
// retransmissions, at >= 90% of the offered rate. A step that is not clean
// is offered again (-retry times) before it counts as unclean; after an
// unclean attempt the next one waits for the server to go idle and then
// -settle more. Steps stop at the first unclean rate, then bisect (-refine)
// between it and the last clean one. Both servers get the same no-answer
// timer (-no-answer). The last line printed is
// `ratio=<tandem best / kamailio best>`.
//
// Run with `make bench-calls` (builds bin/tandem first) or
//
//	go run ./test/bench/callbench [-only tandem|kamailio] [-rates 100,200,...] [-seconds 5] [-hold 2s] [-keep]
//
// The load is split over several caller/callee pairs on distinct 127.0.0.x
// addresses (one sipp is single-threaded and tops out around 1,000 calls/s):
// pair c calls from 127.0.0.(11+c) the user user000(c+1), registered at
// 127.0.0.(31+c):5090. Each step reports sipp's CPU and the server's (from
// /proc/PID/stat), the server's CPU time per successful call, and the
// kernel's UDP RcvbufErrors delta.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/test/bench/benchutil"
	"github.com/tandemswitch/tandem/test/bench/cpushare"
	"github.com/tandemswitch/tandem/test/e2e/peers"
)

type options struct {
	only          string
	rates         []int
	seconds       int
	hold          time.Duration
	refine        int
	retry         int
	users         int
	perClient     int
	maxClients    int
	kamChildren   int
	domain        string
	password      string
	buffSize      int
	keep          bool
	pause         time.Duration
	settle        time.Duration
	noAnswer      time.Duration
	grace         time.Duration
	recvTimeout   time.Duration
	tandemBin     string
	profileDir    string
	tandemMaxRate int
	pprofURL      string // set for Tandem's steps when profileDir is
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.only, "only", "", "run only one side: tandem or kamailio")
	flag.StringVar(&rates, "rates", "100,200,400,600,800,1000,1300,1600,2000,2500,3000,3500,4000,5000,6000,7000,8000,9000,10000,12000", "offered call rates (calls per second), in increasing order")
	flag.IntVar(&o.refine, "refine", 2, "bisection steps between the last clean rate and the first unclean one")
	flag.IntVar(&o.retry, "retry", 1, "times a step that is not clean is offered again before it counts as unclean (both servers)")
	flag.IntVar(&o.seconds, "seconds", 5, "length of each step: a step starts rate x seconds calls")
	flag.DurationVar(&o.hold, "hold", 2*time.Second, "call hold between the caller's ACK and its BYE (sipp -d)")
	flag.IntVar(&o.users, "users", 1000, "distinct callers (user0005...) cycled through")
	flag.IntVar(&o.perClient, "per-client", 500, "highest rate given to one caller/callee pair; more pairs share higher rates")
	flag.IntVar(&o.maxClients, "max-clients", 4, "most caller/callee pairs in one step")
	flag.IntVar(&o.kamChildren, "kamailio-children", 2, "Kamailio UDP workers")
	flag.StringVar(&o.domain, "domain", "example.test", "SIP domain (digest realm)")
	flag.IntVar(&o.buffSize, "buff-size", 4<<20, "sipp -buff_size (capped by net.core.rmem_max)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, sipp statistics)")
	flag.DurationVar(&o.pause, "pause", 2*time.Second, "pause between steps")
	flag.DurationVar(&o.settle, "settle", 45*time.Second, "pause after an unclean step, once the server is idle, so that its unfinished transactions end before the next step (a ringing call is given up after -no-answer, and its CANCEL, like a BYE, is retransmitted for up to 64*T1 = 32 s)")
	flag.DurationVar(&o.noAnswer, "no-answer", 10*time.Second, "both servers' no-answer timer (Tandem's calls.no_answer_timeout, Kamailio's fr_inv_timer): the callees answer at once, so it only bounds how long an unclean step's calls ring on")
	flag.DurationVar(&o.grace, "grace", 6*time.Second, "how long callees may finish open calls once the callers ended (then they are stopped)")
	flag.DurationVar(&o.recvTimeout, "recv-timeout", 5*time.Second, "sipp -recv_timeout: a call waiting longer for a message fails")
	flag.IntVar(&o.tandemMaxRate, "tandem-max-rate", 0, "Tandem's calls.max_rate (0: no limit): past it new calls get 503, which sipp counts as failed calls; for watching what the calls admitted do under overload, not for the ratio")
	flag.StringVar(&o.tandemBin, "tandem", "", "tandem binary (default bin/tandem under the repository root)")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "save a CPU profile of Tandem for each step under this directory (step-RATE.pprof), and a goroutine dump and heap profile from halfway through it (step-RATE.goroutines.txt, step-RATE.heap.pprof); each step's row is followed by where that CPU went, per call (test/bench/cpushare)")
	flag.Parse()
	o.password = "secret"
	for _, s := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fatal("bad -rates entry %q", s)
		}
		o.rates = append(o.rates, n)
	}
	if o.only != "" && o.only != "tandem" && o.only != "kamailio" {
		fatal("-only must be tandem or kamailio")
	}
	if o.seconds <= 0 || o.hold < 0 || o.perClient <= 0 || o.maxClients <= 0 || o.maxClients > 20 || o.users <= 0 {
		fatal("-seconds, -per-client, -users must be > 0, -hold >= 0, -max-clients in 1..20")
	}
	if o.retry < 0 || o.retry > 5 {
		fatal("-retry must be 0..5, got %d", o.retry)
	}
	if o.noAnswer < time.Second || o.noAnswer > time.Hour || o.noAnswer%time.Second != 0 {
		fatal("-no-answer must be whole seconds in 1s..1h (Tandem's calls.no_answer_timeout is in seconds), got %v", o.noAnswer)
	}
	if !peers.HaveSipp() {
		fatal("sipp not found (apt-get install -y sip-tester)")
	}

	work, err := os.MkdirTemp("", "callbench-")
	if err != nil {
		fatal("%v", err)
	}
	if o.keep {
		fmt.Printf("work directory: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Printf("callbench: sipp call_uac.xml -> server -> call_uas.xml, digest auth (MD5, qop=auth), %d callers, hold %v, steps of %d s at %v/s, no-answer timer %v, an unclean step offered %d more time(s)\n",
		o.users, o.hold, o.seconds, o.rates, o.noAnswer, o.retry)
	fmt.Printf("machine: %d CPUs (sipp and the server share them); net.core.rmem_max=%s; load average %s\n",
		runtime.NumCPU(), benchutil.ReadTrim("/proc/sys/net/core/rmem_max"), peers.LoadAvg())
	fmt.Println("CPU columns are % of one core over the step (sipp = all callers and callees; other = every other process);")
	fmt.Println("us/call = server CPU time / successful calls; rcvbuf = kernel UDP RcvbufErrors during the step.")
	fmt.Println("fsyncs mean slowest = the event store's WAL fsyncs during the step, their mean, and the histogram bucket of the slowest (Tandem only).")

	var t, k result
	if o.only != "kamailio" {
		t = benchTandem(o, work)
	}
	if o.only != "tandem" {
		k = benchKamailio(o, work)
	}
	fmt.Println()
	for _, r := range []struct {
		name string
		res  result
	}{{"tandem", t}, {"kamailio", k}} {
		if !r.res.ran {
			continue
		}
		switch {
		case r.res.err != nil && r.res.steps == 0:
			fmt.Printf("%-9s did not run: %v\n", r.name+":", benchutil.FirstLine(r.res.err.Error()))
		case r.res.best == 0:
			fmt.Printf("%-9s no clean step (best clean rate 0 calls/s)\n", r.name+":")
		default:
			fmt.Printf("%-9s best clean rate %d calls/s, server CPU per call at that rate %.0f us\n", r.name+":", r.res.best, r.res.bestCPU)
			if r.res.best == o.rates[len(o.rates)-1] {
				fmt.Printf("%-9s clean at the highest rate offered: its best is at least that (more with a higher -rates)\n", r.name+":")
			}
		}
	}
	switch {
	case t.ran && t.steps > 0 && k.ran && k.best > 0:
		fmt.Printf("ratio = Tandem's highest clean call rate (%d/s) / Kamailio's (%d/s), same sipp scenarios, users and machine:\n", t.best, k.best)
		fmt.Printf("ratio=%.2f\n", float64(t.best)/float64(k.best))
	default:
		fmt.Println("ratio needs a Tandem run with at least one step and a Kamailio best rate > 0; not available in this run:")
		fmt.Println("ratio=n/a")
	}
}

// result is one server's outcome.
type result struct {
	ran     bool
	steps   int     // steps run
	best    int     // highest clean rate, calls/s
	bestCPU float64 // server CPU per successful call at best, in microseconds
	err     error
}

// step is the outcome of one offered rate.
type step struct {
	rate, calls, pairs int
	ok, uasOK, failed  int
	retrans            int
	elapsed            time.Duration // callers' wall time
	sippCPU, serverCPU time.Duration
	otherCPU           time.Duration // every other process on the machine
	rcvbuf             int64
	fsyncs             string // how many, their mean, the slowest: "123 0.41ms <=3.2ms"; "-" for Kamailio
	clean              bool
	why                string
}

// cpuPerCall is the server's CPU time per successful call, in microseconds.
func (s step) cpuPerCall() float64 {
	if s.ok == 0 {
		return 0
	}
	return float64(s.serverCPU.Microseconds()) / float64(s.ok)
}

// bench is one server under test.
type bench struct {
	o         options
	dir       string
	remote    string // host:port
	server    *peers.Proc
	serverCPU func() (time.Duration, error)
	metrics   func() (string, error) // GET /metrics, Tandem's only: the store's fsyncs per step
}

// All users: user0001..user000K are the callees of the K pairs, the callers
// follow.
func allUsers(o options) []peers.Cred { return peers.Users(o.maxClients+o.users, o.password) }

func calleeAddr(c int) string { return fmt.Sprintf("127.0.0.%d:5090", 31+c) }
func callerIP(c int) string   { return fmt.Sprintf("127.0.0.%d", 11+c) }

// register binds each pair's callee user to its callee address.
func (b *bench) register() error {
	users := allUsers(b.o)
	for c := 0; c < b.o.maxClients; c++ {
		if _, err := peers.RegisterContact(filepath.Join(b.dir, "register"), fmt.Sprintf("register-%d", c),
			b.remote, b.o.domain, users[c], calleeAddr(c), "127.0.0.1"); err != nil {
			return err
		}
	}
	fmt.Printf("registered %d callee contacts (%s ... %s)\n", b.o.maxClients, calleeAddr(0), calleeAddr(b.o.maxClients-1))
	return nil
}

func benchTandem(o options, work string) (res result) {
	res.ran = true
	bin := o.tandemBin
	if bin == "" {
		var err error
		if bin, err = peers.TandemBinary(); err != nil {
			res.err = err
			fmt.Printf("tandem: %v\n", err)
			return res
		}
	}
	dir := filepath.Join(work, "tandem")
	fail := func(err error) result {
		res.err = err
		fmt.Printf("tandem: %v\n", err)
		return res
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	sipPort, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return fail(err)
	}
	httpPort, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return fail(err)
	}
	httpListen := fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg := filepath.Join(dir, "tandem.yaml")
	if err := peers.WriteTandemConfig(cfg, peers.TandemConfig{
		NodeID:     "callbench",
		DataDir:    filepath.Join(dir, "data"),
		Domain:     o.domain,
		SIPListen:  []string{fmt.Sprintf("udp:127.0.0.1:%d", sipPort)},
		HTTPListen: httpListen,
		MinExpires: 60,
		MaxExpires: 3600,
		Users:      allUsers(o),
		Pprof:      o.profileDir != "",
		// The same no-answer timer as Kamailio's (FR_INV_TIMER below).
		NoAnswerTimeout: int(o.noAnswer / time.Second),
		MaxCallRate:     o.tandemMaxRate,
	}); err != nil {
		return fail(err)
	}
	t, err := peers.StartTandem(bin, "tandem", cfg, httpListen, dir, 30*time.Second)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := t.Stop(10 * time.Second); err != nil {
			fmt.Printf("tandem stop: %v\n", err)
		}
	}()
	ver, _ := benchutil.RunOut(bin, "version")
	fmt.Printf("\n== tandem %s (pid %d) on udp:127.0.0.1:%d, data dir on disk: %s\n", strings.TrimSpace(ver), t.PID, sipPort, filepath.Join(dir, "data"))
	if o.profileDir != "" {
		o.pprofURL = "http://" + httpListen + "/debug/pprof/profile"
	}
	b := &bench{o: o, dir: dir, remote: fmt.Sprintf("127.0.0.1:%d", sipPort), server: t.Proc,
		serverCPU: func() (time.Duration, error) { return peers.ProcCPU(t.PID) }, metrics: t.Metrics}
	if err := b.register(); err != nil {
		return fail(err)
	}
	res = b.runSteps()
	if res.err != nil {
		fmt.Printf("tandem: %v\n", res.err)
	}
	if t.Exited() {
		fmt.Printf("tandem exited during the run; log tail:\n%s\n", t.Tail(30))
	} else if res.best == 0 {
		fmt.Printf("tandem log (tail):\n%s\n", benchutil.Indent(t.Tail(10)))
	}
	return res
}

func benchKamailio(o options, work string) (res result) {
	res.ran = true
	fail := func(err error) result {
		res.err = err
		fmt.Printf("kamailio: %v\n", err)
		return res
	}
	root, err := peers.RepoRoot()
	if err != nil {
		return fail(err)
	}
	dir := filepath.Join(work, "kamailio")
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return fail(err)
	}
	k, err := peers.StartKamailio(peers.KamailioOptions{
		Config:   filepath.Join(root, "test", "bench", "kamailio", "proxy.cfg"),
		Listen:   fmt.Sprintf("udp:127.0.0.1:%d", port),
		Children: o.kamChildren,
		Realm:    o.domain,
		Password: o.password,
		LogDir:   dir,
		Defines:  []string{fmt.Sprintf("FR_INV_TIMER=%d", o.noAnswer.Milliseconds())},
	}, 15*time.Second)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := k.Stop(10 * time.Second); err != nil {
			fmt.Printf("kamailio stop: %v\n", err)
		}
	}()
	ver, _ := benchutil.RunOut("kamailio", "-v")
	fmt.Printf("\n== %s (pid %d, %d workers, -x tlsf -m 4096) on udp:127.0.0.1:%d, proxy.cfg: tm + dialog + record_route, usrloc db_mode 0\n",
		benchutil.FirstLine(ver), k.PID, o.kamChildren, port)
	b := &bench{o: o, dir: dir, remote: fmt.Sprintf("127.0.0.1:%d", port), server: k,
		serverCPU: func() (time.Duration, error) { return peers.TreeCPU(k.PID) }}
	if err := b.register(); err != nil {
		return fail(err)
	}
	res = b.runSteps()
	res.ran = true
	if res.err != nil {
		fmt.Printf("kamailio: %v\n", res.err)
	}
	return res
}

// runSteps runs the ladder of steps (ladder) on the server and prints
// each step.
func (b *bench) runSteps() result {
	res := result{ran: true}
	lastClean := true
	cpuAt := map[int]float64{} // server CPU per call of each clean step, by rate
	fmt.Printf("%7s %5s %7s %7s %7s %6s %7s %8s %9s %8s %7s %8s %7s %24s  %s\n",
		"rate/s", "pairs", "calls", "ok", "uas-ok", "failed", "retrans", "achieved", "sipp-cpu%", "server%", "other%", "us/call", "rcvbuf", "fsyncs mean slowest", "verdict")
	attempt := func(rate int) (bool, error) {
		if b.server.Exited() {
			return false, errors.New("server exited")
		}
		if res.steps > 0 {
			if lastClean {
				time.Sleep(b.o.pause)
			} else {
				b.quiesce()
				time.Sleep(max(b.o.pause, b.o.settle))
			}
		}
		res.steps++
		s, err := b.runStep(rate)
		if err != nil {
			return false, err
		}
		verdict := "clean"
		if !s.clean {
			verdict = "NOT clean: " + s.why
		}
		fmt.Printf("%7d %5d %7d %7d %7d %6d %7d %8.0f %9.0f %8.0f %7.0f %8.0f %7d %24s  %s\n",
			s.rate, s.pairs, s.calls, s.ok, s.uasOK, s.failed, s.retrans, b.achieved(s),
			benchutil.Pct(s.sippCPU, s.elapsed), benchutil.Pct(s.serverCPU, s.elapsed), benchutil.Pct(s.otherCPU, s.elapsed),
			s.cpuPerCall(), s.rcvbuf, s.fsyncs, verdict)
		b.printSplit(rate, b.achieved(s))
		lastClean = s.clean
		if s.clean {
			cpuAt[rate] = s.cpuPerCall()
		}
		return s.clean, nil
	}
	res.best, res.err = ladder(b.o.rates, b.o.refine, b.o.retry, attempt, func(rate, i int) {
		fmt.Printf("        (offering %d/s again: retry %d of %d)\n", rate, i, b.o.retry)
	})
	res.bestCPU = cpuAt[res.best]
	return res
}

// printSplit prints where the server's CPU went in a profiled step, per
// call (calls at the achieved rate over the profile's window), when
// -cpuprofile is on.
func (b *bench) printSplit(rate int, achieved float64) {
	if b.o.pprofURL == "" {
		return
	}
	sp, err := cpushare.ReadFile(filepath.Join(b.o.profileDir, fmt.Sprintf("step-%d.pprof", rate)))
	if err != nil {
		fmt.Printf("        cpu split: %v\n", err)
		return
	}
	fmt.Printf("        where the server's CPU went (step-%d.pprof):\n", rate)
	sp.Print(os.Stdout, achieved*sp.Duration.Seconds(), "        ")
}

// ladder offers each rate in turn until one is not clean, then bisects
// between the last clean rate and that one (refine times, to the nearest
// 50/s), and returns the highest clean rate. A rate whose attempt is not
// clean is offered again, retry times (again is told before each retry),
// before it counts as unclean: on these shared machines a single stall (a
// slow fsync, another tenant) fails a step the server runs clean the next
// time, and the ladder would stop there. Both servers get the same ladder.
func ladder(rates []int, refine, retry int, attempt func(rate int) (bool, error), again func(rate, i int)) (int, error) {
	best := 0
	try := func(rate int) (bool, error) {
		for i := 0; ; i++ {
			clean, err := attempt(rate)
			if err != nil {
				return false, err
			}
			if clean {
				best = max(best, rate)
				return true, nil
			}
			if i >= retry {
				return false, nil
			}
			again(rate, i+1)
		}
	}
	failedAt := 0
	for _, rate := range rates {
		clean, err := try(rate)
		if err != nil {
			return best, err
		}
		if !clean {
			failedAt = rate
			break
		}
	}
	for i := 0; i < refine && failedAt > 0; i++ {
		mid := (best + failedAt) / 2 / 50 * 50
		if mid <= best || mid >= failedAt {
			break
		}
		clean, err := try(mid)
		if err != nil {
			return best, err
		}
		if !clean {
			failedAt = mid
		}
	}
	return best, nil
}

// quiesce waits, after an unclean step, until the server has worked off
// its backlog: until a second passes in which it uses under 3% of a core
// (at most quiesceMax). Only then does the settle pause start. An
// overloaded server still sends INVITEs and BYEs of that step's calls for
// a while after the callers have gone; a call still ringing then is given
// up after the no-answer timer with a CANCEL; and a BYE or CANCEL nobody
// answers is retransmitted for 32 s (64*T1). Counted from the end of the
// step, the settle pause was too short for them, and the next step's
// callees, on the same addresses, took the last of them as calls of their
// own that went wrong (sipp's "unexpected BYE" and "unexpected CANCEL"),
// failing that step (seen with Tandem after its 3,000 calls/s step had
// collapsed). Both servers wait the same way.
func (b *bench) quiesce() {
	const quiesceMax = 90 * time.Second
	start := time.Now()
	prev, err := b.serverCPU()
	if err != nil {
		return
	}
	for time.Since(start) < quiesceMax {
		time.Sleep(time.Second)
		cur, err := b.serverCPU()
		if err != nil {
			return
		}
		if cur-prev < 30*time.Millisecond {
			fmt.Printf("        (server idle %.0f s after the step; settling %s more)\n", time.Since(start).Seconds(), b.o.settle)
			return
		}
		prev = cur
	}
	fmt.Printf("        (server still busy %s after the step; settling %s more)\n", quiesceMax, b.o.settle)
}

// achieved is the rate of successful calls over the time the callers spent
// starting calls: their wall time less the hold of the last calls.
func (b *bench) achieved(s step) float64 {
	active := max(s.elapsed-b.o.hold, 100*time.Millisecond)
	return float64(s.ok) / active.Seconds()
}

func (b *bench) runStep(rate int) (step, error) {
	o := b.o
	s := step{rate: rate}
	dir := filepath.Join(b.dir, fmt.Sprintf("step-%d", rate))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	k := (rate + o.perClient - 1) / o.perClient
	k = max(1, min(k, o.maxClients))
	s.pairs = k
	users := allUsers(o)
	callers := users[o.maxClients:]
	// A call lasts the hold plus its set-up; sipp gives up (and the step
	// fails) after the offered duration plus slack.
	bound := time.Duration(o.seconds)*time.Second*2 + o.hold + 15*time.Second
	var uacs []peers.SippRun
	var uas []peers.CallSipp
	for c := 0; c < k; c++ {
		var part []peers.Cred
		for i := c; i < len(callers); i += k {
			part = append(part, callers[i])
		}
		r := rate / k
		if c < rate%k {
			r++
		}
		calls := r * o.seconds
		s.calls += calls
		// Simultaneous calls: the rate times the hold and some set-up.
		limit := max(100, int(float64(r)*(o.hold.Seconds()+3)))
		uac, err := peers.CallSipp{
			Name: fmt.Sprintf("uac-%d", c), Dir: dir, Scenario: "call_uac.xml", Server: b.remote,
			Addr: callerIP(c) + ":5061", Calls: calls, Rate: r, Limit: limit,
			Hold: holdOrZero(o.hold), Timeout: bound, RecvTimeout: o.recvTimeout,
			Callee: users[c].User, Domain: o.domain, Callers: part, BuffSize: o.buffSize,
		}.SippRun()
		if err != nil {
			return s, err
		}
		uacs = append(uacs, uac)
		// Callees take any number of calls (no -m) and are stopped once
		// the callers have ended: with -m, INVITEs of an overloaded step
		// still arriving would use up the next step's count.
		uas = append(uas, peers.CallSipp{
			Name: fmt.Sprintf("uas-%d", c), Dir: dir, Scenario: "call_uas.xml", Server: b.remote,
			Addr: calleeAddr(c), Calls: -1, Timeout: bound, RecvTimeout: o.recvTimeout, BuffSize: o.buffSize,
		})
	}
	var procs []*peers.SippProc
	var errs []error
	for _, u := range uas {
		r, err := u.SippRun()
		if err == nil {
			var p *peers.SippProc
			if p, err = peers.StartSipp(r); err == nil {
				procs = append(procs, p)
			}
		}
		if err != nil {
			for _, p := range procs {
				p.Stop(0)
			}
			return s, err
		}
	}
	rb0, _ := peers.RcvbufErrors()
	b0, _ := peers.BusyCPU()
	c0, _ := b.serverCPU()
	fsyncs := benchutil.FsyncColumn(b.metrics)
	start := time.Now()
	profiled := benchutil.ProfileStep(o.pprofURL, o.profileDir, fmt.Sprintf("step-%d", rate), o.seconds)
	uacRes, err := peers.RunSippMany(uacs)
	profiled()
	s.elapsed = time.Since(start)
	errs = append(errs, err)
	var uasRes []*peers.SippResult
	for _, p := range procs {
		r, err := p.Stop(o.grace)
		uasRes = append(uasRes, r)
		errs = append(errs, err)
	}
	c1, _ := b.serverCPU()
	b1, _ := peers.BusyCPU()
	rb1, _ := peers.RcvbufErrors()
	s.fsyncs = fsyncs()
	s.serverCPU = c1 - c0
	s.rcvbuf = rb1 - rb0
	ok, failed, retrans, created, sippCPU := peers.Sum(uacRes)
	uasOK, uasFailed, uasRetrans, _, uasCPU := peers.Sum(uasRes)
	s.ok, s.uasOK = ok, uasOK
	s.failed = failed + uasFailed
	s.retrans = retrans + uasRetrans
	s.sippCPU = sippCPU + uasCPU
	s.otherCPU = max(0, (b1-b0)-s.serverCPU-s.sippCPU)
	var why []string
	if err := errors.Join(errs...); err != nil {
		why = append(why, "sipp: "+benchutil.FirstLine(err.Error()))
	}
	if s.failed > 0 {
		why = append(why, fmt.Sprintf("%d failed (callers %d, callees %d)", s.failed, failed, uasFailed))
	}
	if s.ok < s.calls || s.uasOK != s.calls {
		why = append(why, fmt.Sprintf("only %d/%d calls completed (callers created %d; callees %d)", s.ok, s.calls, created, s.uasOK))
	}
	if s.retrans > s.calls/100 {
		why = append(why, fmt.Sprintf("%d retransmissions (> 1%%)", s.retrans))
	}
	if b.achieved(s) < 0.9*float64(rate) {
		why = append(why, "offered rate not kept up")
	}
	s.clean = len(why) == 0
	s.why = strings.Join(why, "; ")
	if !s.clean {
		for _, r := range append(uacRes, uasRes...) {
			if r != nil && (r.Failed > 0 || r.Successful < r.Run.Calls) {
				fmt.Printf("   %s\n", r.String())
				if tail := peers.TailFile(r.ErrFile, 6); !strings.HasPrefix(tail, "(cannot read") {
					fmt.Printf("   %s (tail):\n%s\n", r.ErrFile, benchutil.Indent(tail))
				}
				break
			}
		}
	}
	return s, nil
}

// holdOrZero maps a hold of 0 to CallSipp's "0, not the default".
func holdOrZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "callbench: "+f+"\n", a...)
	fmt.Println("ratio=n/a")
	os.Exit(1)
}
