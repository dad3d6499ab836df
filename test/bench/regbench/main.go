// Command regbench measures authenticated SIP registrations per second: sipp
// runs test/sipp/register_auth.xml (REGISTER, 401, REGISTER with digest
// credentials, 200) at increasing rates, first against Tandem (a fresh data
// dir on disk, N users) and then, in the same run, against Kamailio 5.6 as a
// memory-only registrar (test/bench/kamailio/registrar.cfg) with the same
// scenario and users. Each server's best rate is the highest step that was
// clean: every registration got its 200 (sipp FailedCall = 0, SuccessfulCall
// = the step's count) at >= 90% of the offered rate, within the step's time
// bound, with at most 1% retransmissions. Steps stop at the first unclean one, then
// bisect (-refine) between it and the last clean one. The last line printed
// is `ratio=<tandem best / kamailio best>`.
//
// Run with `make bench-register` (builds bin/tandem first) or
//
//	go run ./test/bench/regbench [-only tandem|kamailio] [-rates 1000,2000,...]
//
// The load is split over several sipp clients on distinct 127.0.0.x source
// addresses (one sipp is single-threaded); each step reports sipp's CPU and
// the server's (from /proc/PID/stat), and the kernel's UDP RcvbufErrors delta.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/test/bench/benchutil"
	"github.com/tandemswitch/tandem/test/e2e/peers"
)

type options struct {
	only        string
	rates       []int
	seconds     int
	refine      int
	users       int
	perClient   int
	maxClients  int
	kamChildren int
	domain      string
	password    string
	buffSize    int
	keep        bool
	pause       time.Duration
	tandemBin   string
	profileDir  string
	pprofURL    string // set for Tandem's steps when profileDir is
	// metrics reads the server's GET /metrics (Tandem's only), for the
	// store's fsyncs in each step.
	metrics func() (string, error)
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.only, "only", "", "run only one side: tandem or kamailio")
	flag.StringVar(&rates, "rates", "1000,2000,4000,6000,8000,10000,14000,18000,22000,26000,30000,35000,40000,45000,50000", "offered registration rates (per second), in increasing order")
	flag.IntVar(&o.refine, "refine", 2, "bisection steps between the last clean rate and the first unclean one")
	flag.IntVar(&o.seconds, "seconds", 5, "length of each step: a step sends rate x seconds registrations")
	flag.IntVar(&o.users, "users", 10000, "distinct users (user0001...) cycled through")
	flag.IntVar(&o.perClient, "per-client", 10000, "highest rate given to one sipp client; more clients share higher rates")
	flag.IntVar(&o.maxClients, "max-clients", 4, "most sipp clients in one step")
	flag.IntVar(&o.kamChildren, "kamailio-children", 2, "Kamailio UDP workers")
	flag.StringVar(&o.domain, "domain", "example.test", "SIP domain (digest realm)")
	flag.IntVar(&o.buffSize, "buff-size", 4<<20, "sipp -buff_size (capped by net.core.rmem_max)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, sipp statistics)")
	flag.DurationVar(&o.pause, "pause", 2*time.Second, "pause between steps")
	flag.StringVar(&o.tandemBin, "tandem", "", "tandem binary (default bin/tandem under the repository root)")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "save a CPU profile of Tandem for each step under this directory (step-RATE.pprof), and a goroutine dump and heap profile from halfway through it (step-RATE.goroutines.txt, step-RATE.heap.pprof)")
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
	if !peers.HaveSipp() {
		fatal("sipp not found (apt-get install -y sip-tester)")
	}

	work, err := os.MkdirTemp("", "regbench-")
	if err != nil {
		fatal("%v", err)
	}
	if o.keep {
		fmt.Printf("work directory: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	scenario, err := peers.Scenario("register_auth.xml")
	if err != nil {
		fatal("%v", err)
	}
	fmt.Printf("regbench: sipp %s, digest auth (MD5, qop=auth), %d users, steps of %d s at %v/s\n",
		filepath.Base(scenario), o.users, o.seconds, o.rates)
	fmt.Printf("machine: %d CPUs (sipp and the server share them); net.core.rmem_max=%s; load average %s\n",
		runtime.NumCPU(), benchutil.ReadTrim("/proc/sys/net/core/rmem_max"), peers.LoadAvg())
	fmt.Println("CPU columns are % of one core over the step (sipp = all clients; other = every other process on the machine);")
	fmt.Println("rcvbuf = kernel UDP RcvbufErrors during the step (datagrams dropped on a full socket receive buffer).")
	fmt.Println("fsyncs mean slowest = the event store's WAL fsyncs during the step, their mean, and the histogram bucket of the slowest (Tandem only).")

	var tBest, kBest int
	var tRan, kRan bool
	if o.only != "kamailio" {
		tRan = true
		tBest, err = benchTandem(o, work, scenario)
		if err != nil {
			fmt.Printf("tandem: %v\n", err)
		}
	}
	if o.only != "tandem" {
		kRan = true
		kBest, err = benchKamailio(o, work, scenario)
		if err != nil {
			fmt.Printf("kamailio: %v\n", err)
		}
	}
	fmt.Println()
	if tRan {
		fmt.Printf("tandem:   best clean rate %d registrations/s\n", tBest)
	}
	if kRan {
		fmt.Printf("kamailio: best clean rate %d registrations/s\n", kBest)
	}
	switch {
	case tRan && kRan && kBest > 0:
		fmt.Printf("ratio = Tandem's highest rate with zero failed registrations (%d/s) / Kamailio's (%d/s), same sipp scenario, users and machine:\n", tBest, kBest)
		fmt.Printf("ratio=%.2f\n", float64(tBest)/float64(kBest))
	default:
		fmt.Println("ratio needs both Tandem and a Kamailio best rate > 0; not available in this run:")
		fmt.Println("ratio=n/a")
	}
}

// step is the outcome of one offered rate.
type step struct {
	rate, calls, clients int
	ok, failed, retrans  int
	elapsed              time.Duration
	sippCPU, serverCPU   time.Duration
	otherCPU             time.Duration // every other process on the machine
	rcvbuf               int64
	fsyncs               string // how many, their mean, the slowest: "123 0.41ms <=3.2ms"; "-" for Kamailio
	clean                bool
	why                  string
}

func benchTandem(o options, work, scenario string) (int, error) {
	bin := o.tandemBin
	if bin == "" {
		var err error
		if bin, err = peers.TandemBinary(); err != nil {
			return 0, err
		}
	}
	dir := filepath.Join(work, "tandem")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	sipPort, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return 0, err
	}
	httpPort, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return 0, err
	}
	httpListen := fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg := filepath.Join(dir, "tandem.yaml")
	if err := peers.WriteTandemConfig(cfg, peers.TandemConfig{
		NodeID:     "bench",
		DataDir:    filepath.Join(dir, "data"),
		Domain:     o.domain,
		SIPListen:  []string{fmt.Sprintf("udp:127.0.0.1:%d", sipPort)},
		HTTPListen: httpListen,
		MinExpires: 60,
		MaxExpires: 3600,
		Users:      peers.Users(o.users, o.password),
		Pprof:      o.profileDir != "",
	}); err != nil {
		return 0, err
	}
	t, err := peers.StartTandem(bin, "tandem", cfg, httpListen, dir, 30*time.Second)
	if err != nil {
		return 0, err
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
	o.metrics = t.Metrics
	best, err := runSteps(o, dir, scenario, fmt.Sprintf("127.0.0.1:%d", sipPort), t.Proc, func() (time.Duration, error) { return peers.ProcCPU(t.PID) })
	if regs, rerr := t.Registrations(); rerr == nil {
		fmt.Printf("tandem lists %d bindings after the run\n", len(regs))
	}
	if t.Exited() {
		fmt.Printf("tandem exited during the run; log tail:\n%s\n", t.Tail(30))
	}
	return best, err
}

func benchKamailio(o options, work, scenario string) (int, error) {
	dir := filepath.Join(work, "kamailio")
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		return 0, err
	}
	k, err := peers.StartKamailio(peers.KamailioOptions{
		Listen:   fmt.Sprintf("udp:127.0.0.1:%d", port),
		Children: o.kamChildren,
		Realm:    o.domain,
		Password: o.password,
		LogDir:   dir,
	}, 15*time.Second)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := k.Stop(10 * time.Second); err != nil {
			fmt.Printf("kamailio stop: %v\n", err)
		}
	}()
	ver, _ := benchutil.RunOut("kamailio", "-v")
	fmt.Printf("\n== %s (pid %d, %d workers, -x tlsf -m 4096) on udp:127.0.0.1:%d, usrloc db_mode 0\n",
		benchutil.FirstLine(ver), k.PID, o.kamChildren, port)
	return runSteps(o, dir, scenario, fmt.Sprintf("127.0.0.1:%d", port), k, func() (time.Duration, error) { return peers.TreeCPU(k.PID) })
}

// runSteps offers each rate in turn until a step is not clean, then
// bisects between the last clean rate and that one (-refine times, to the
// nearest 500/s), and returns the highest clean rate. Both servers get the
// same ladder and the same refinement.
func runSteps(o options, dir, scenario, remote string, server *peers.Proc, serverCPU func() (time.Duration, error)) (int, error) {
	fmt.Printf("%8s %7s %8s %8s %7s %8s %9s %9s %8s %7s %8s %24s  %s\n",
		"rate/s", "clients", "calls", "ok", "failed", "retrans", "achieved", "sipp-cpu%", "server%", "other%", "rcvbuf", "fsyncs mean slowest", "verdict")
	steps := 0
	try := func(rate int) (bool, error) {
		if server.Exited() {
			return false, fmt.Errorf("server exited")
		}
		if steps > 0 {
			time.Sleep(o.pause)
		}
		steps++
		s, err := runStep(o, filepath.Join(dir, fmt.Sprintf("step-%d", rate)), scenario, remote, rate, serverCPU)
		if err != nil {
			return false, err
		}
		achieved := 0.0
		if s.elapsed > 0 {
			achieved = float64(s.ok) / s.elapsed.Seconds()
		}
		verdict := "clean"
		if !s.clean {
			verdict = "NOT clean: " + s.why
		}
		fmt.Printf("%8d %7d %8d %8d %7d %8d %9.0f %9.0f %8.0f %7.0f %8d %24s  %s\n",
			s.rate, s.clients, s.calls, s.ok, s.failed, s.retrans, achieved,
			benchutil.Pct(s.sippCPU, s.elapsed), benchutil.Pct(s.serverCPU, s.elapsed), benchutil.Pct(s.otherCPU, s.elapsed), s.rcvbuf, s.fsyncs, verdict)
		return s.clean, nil
	}
	best, failedAt := 0, 0
	for _, rate := range o.rates {
		clean, err := try(rate)
		if err != nil {
			return best, err
		}
		if !clean {
			failedAt = rate
			break
		}
		best = rate
	}
	for i := 0; i < o.refine && failedAt > 0; i++ {
		mid := (best + failedAt) / 2 / 500 * 500
		if mid <= best || mid >= failedAt {
			break
		}
		clean, err := try(mid)
		if err != nil {
			return best, err
		}
		if clean {
			best = mid
		} else {
			failedAt = mid
		}
	}
	return best, nil
}

func runStep(o options, dir, scenario, remote string, rate int, serverCPU func() (time.Duration, error)) (step, error) {
	s := step{rate: rate}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	k := (rate + o.perClient - 1) / o.perClient
	k = max(1, min(k, o.maxClients, o.users))
	s.clients = k
	all := peers.Users(o.users, o.password)
	var runs []peers.SippRun
	// Offered duration plus slack; sipp gives up (and the step fails) after it.
	bound := time.Duration(o.seconds)*time.Second*2 + 5*time.Second
	for c := 0; c < k; c++ {
		var part []peers.Cred
		for i := c; i < len(all); i += k {
			part = append(part, all[i])
		}
		inf := filepath.Join(dir, fmt.Sprintf("users-%d.csv", c))
		if err := peers.WriteInjection(inf, o.domain, part); err != nil {
			return s, err
		}
		r := rate / k
		if c < rate%k {
			r++
		}
		calls := r * o.seconds
		s.calls += calls
		runs = append(runs, peers.SippRun{
			Name:     fmt.Sprintf("sipp-%d", c),
			Dir:      dir,
			Scenario: scenario,
			Remote:   remote,
			LocalIP:  fmt.Sprintf("127.0.0.%d", 11+c),
			// distinct source addresses; the same port on each
			LocalPort: 5061,
			Inf:       inf,
			Calls:     calls,
			Rate:      r,
			Limit:     min(max(r, 100), 10000),
			Timeout:   bound,
			BuffSize:  o.buffSize,
			AuthURI:   o.domain,
		})
	}
	rb0, _ := peers.RcvbufErrors()
	b0, _ := peers.BusyCPU()
	c0, _ := serverCPU()
	fsyncs := benchutil.FsyncColumn(o.metrics)
	profiled := benchutil.ProfileStep(o.pprofURL, o.profileDir, fmt.Sprintf("step-%d", rate), o.seconds)
	start := time.Now()
	res, err := peers.RunSippMany(runs)
	profiled()
	s.elapsed = time.Since(start)
	c1, _ := serverCPU()
	b1, _ := peers.BusyCPU()
	rb1, _ := peers.RcvbufErrors()
	s.fsyncs = fsyncs()
	s.serverCPU = c1 - c0
	s.rcvbuf = rb1 - rb0
	var created int
	s.ok, s.failed, s.retrans, created, s.sippCPU = peers.Sum(res)
	s.otherCPU = max(0, (b1-b0)-s.serverCPU-s.sippCPU)
	var why []string
	if err != nil {
		why = append(why, "sipp: "+benchutil.FirstLine(err.Error()))
	}
	if s.failed > 0 {
		why = append(why, fmt.Sprintf("%d failed", s.failed))
	}
	if s.ok < s.calls {
		why = append(why, fmt.Sprintf("only %d of %d registered (created %d; timeout?)", s.ok, s.calls, created))
	}
	if s.retrans > s.calls/100 {
		why = append(why, fmt.Sprintf("%d retransmissions (> 1%%)", s.retrans))
	}
	if float64(s.ok)/s.elapsed.Seconds() < 0.9*float64(rate) {
		why = append(why, "offered rate not kept up")
	}
	s.clean = len(why) == 0
	s.why = strings.Join(why, "; ")
	if !s.clean {
		for _, r := range res {
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

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "regbench: "+f+"\n", a...)
	fmt.Println("ratio=n/a")
	os.Exit(1)
}
