package peers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Call tests and benchmarks run pairs of sipp processes through a server
// (Tandem, or Kamailio with test/bench/kamailio/proxy.cfg): a callee sipp
// (a test/sipp/call_uas*.xml scenario) listens on its own address, which is
// registered first as a contact of a user (call_register_contact.xml); a
// caller sipp (call_uac*.xml) then calls that user through the server. The
// callee runs in the background (StartSipp) while the caller runs to
// completion (RunSipp); RunCall does both and waits for every side.

// Defaults of a CallSipp.
const (
	DefaultCallHold        = 500 * time.Millisecond // -d: non-zero (PEERS.md)
	DefaultCallTimeout     = 60 * time.Second       // -timeout, and the run's bound
	DefaultCallRecvTimeout = 10 * time.Second       // -recv_timeout
)

// CallSipp describes one sipp of a call: a caller (call_uac*.xml, with
// Callee and Callers) or a callee (call_uas*.xml).
type CallSipp struct {
	Name     string // file prefix and log name in Dir
	Dir      string // working directory of sipp; every output file goes here
	Scenario string // a scenario in test/sipp, e.g. "call_uac.xml"
	Server   string // host:port of the proxy or B2BUA (sipp's remote)
	Addr     string // ip:port this sipp listens on (-i, -p); a callee's registered contact
	Calls    int    // -m: calls before sipp ends (default 1; < 0: no -m, end it with SippProc.Stop)
	Rate     int    // -r: calls per second started by a caller (0: sipp's default of 10)
	Limit    int    // -l: most simultaneous calls of a caller (0: sipp's default)
	// Hold is -d, the length of every <pause/> without its own duration
	// (the call hold of call_uac.xml, call_uas_bye.xml, ...); default
	// DefaultCallHold. Negative means 0.
	Hold time.Duration
	// Timeout is sipp's -timeout and bounds the run (plus 15 s); default
	// DefaultCallTimeout.
	Timeout time.Duration
	// RecvTimeout is -recv_timeout: a call waiting longer for a message
	// fails (a recv with its own timeout, such as the 480 of
	// call_uac_noanswer.xml, keeps it); default DefaultCallRecvTimeout.
	RecvTimeout time.Duration

	// Callers only.
	Callee  string // -s: the called user (Request-URI sip:Callee@Domain); also -auth_uri Callee@Domain
	Domain  string // the users' domain (digest realm)
	Callers []Cred // written to Dir/Name.csv as the injection file, cycled through in order
	Inf     string // an existing injection file instead of Callers

	Transport string // -t: "" (sipp's default, u1: UDP) or "t1" (one TCP connection)
	BuffSize  int    // -buff_size (socket buffers), 0: sipp's default
	TraceMsg  bool   // -trace_msg into Dir/Name_messages.log
	Keys      map[string]string
	Extra     []string
}

// SippRun turns c into a SippRun (and writes the callers' injection file).
func (c CallSipp) SippRun() (SippRun, error) {
	if c.Name == "" || c.Dir == "" || c.Scenario == "" || c.Server == "" || c.Addr == "" {
		return SippRun{}, fmt.Errorf("CallSipp %q: Name, Dir, Scenario, Server and Addr are required", c.Name)
	}
	path := c.Scenario
	if !filepath.IsAbs(path) {
		p, err := Scenario(c.Scenario)
		if err != nil {
			return SippRun{}, err
		}
		path = p
	}
	ip, port, err := splitHostPort(c.Addr)
	if err != nil {
		return SippRun{}, fmt.Errorf("CallSipp %q: Addr: %w", c.Name, err)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return SippRun{}, err
	}
	calls := c.Calls
	if calls == 0 {
		calls = 1
	}
	calls = max(calls, 0) // SippRun: 0 is no -m
	hold := c.Hold
	if hold == 0 {
		hold = DefaultCallHold
	}
	hold = max(hold, 0)
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	recv := c.RecvTimeout
	if recv <= 0 {
		recv = DefaultCallRecvTimeout
	}
	r := SippRun{
		Name: c.Name, Dir: c.Dir, Scenario: path, Remote: c.Server,
		LocalIP: ip, LocalPort: port, Calls: calls, Rate: c.Rate, Limit: c.Limit,
		Timeout: timeout, BuffSize: c.BuffSize, Keys: c.Keys, TraceMsg: c.TraceMsg, Transport: c.Transport,
		Extra: append([]string{"-d", strconv.FormatInt(hold.Milliseconds(), 10),
			"-recv_timeout", strconv.FormatInt(recv.Milliseconds(), 10)}, c.Extra...),
	}
	if c.Callee != "" {
		if c.Domain == "" {
			return SippRun{}, fmt.Errorf("CallSipp %q: a caller needs Domain", c.Name)
		}
		r.Extra = append(r.Extra, "-s", c.Callee)
		// The digest uri is the Request-URI, sip:Callee@Domain.
		r.AuthURI = c.Callee + "@" + c.Domain
		r.Inf = c.Inf
		if len(c.Callers) > 0 {
			r.Inf = filepath.Join(c.Dir, c.Name+".csv")
			if err := WriteInjection(r.Inf, c.Domain, c.Callers); err != nil {
				return SippRun{}, err
			}
		}
		if r.Inf == "" {
			return SippRun{}, fmt.Errorf("CallSipp %q: a caller needs Callers or Inf", c.Name)
		}
	}
	return r, nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("%q is not ip:port", addr)
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return addr[:i], port, nil
}

// SippProc is a sipp running in the background, typically a callee waiting
// for its calls. Its methods are called serially (one goroutine).
type SippProc struct {
	Run   SippRun
	proc  *Proc
	start time.Time
}

// StartSipp starts r in the background and waits (up to 5 s) until its UDP
// socket is bound, so that a call placed right after reaches it. Use Wait
// to collect its statistics; it is stopped by its PID only.
func StartSipp(r SippRun) (*SippProc, error) {
	if r.Name == "" {
		r.Name = "sipp"
	}
	if r.Dir == "" {
		return nil, errors.New("StartSipp: Dir is required")
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(r.Dir, r.Name+"_stat.csv"))
	p, err := Start(r.Name, r.Dir, r.Dir, nil, r.Args()...)
	if err != nil {
		return nil, err
	}
	s := &SippProc{Run: r, proc: p, start: time.Now()}
	if r.LocalIP != "" && r.LocalPort != 0 && (r.Transport == "" || strings.HasPrefix(r.Transport, "u")) {
		if err := WaitUDPBound(fmt.Sprintf("%s:%d", r.LocalIP, r.LocalPort), 5*time.Second, p.Done()); err != nil {
			p.Kill()
			return nil, fmt.Errorf("sipp %s: %v\n%s", r.Name, err, p.Tail(20))
		}
	}
	return s, nil
}

// PID is the sipp process's id.
func (s *SippProc) PID() int { return s.proc.PID }

// Exited reports whether sipp has ended.
func (s *SippProc) Exited() bool { return s.proc.Exited() }

// Wait waits up to timeout for sipp to end by itself (after its -m calls),
// then parses its statistics. If it is still running then, it is stopped
// (see Stop, with 3 s of grace) and the result comes with an error saying
// so.
func (s *SippProc) Wait(timeout time.Duration) (*SippResult, error) {
	if werr := s.proc.Wait(timeout); werr != nil && !s.proc.Exited() {
		res, err := s.Stop(3 * time.Second)
		return res, errors.Join(fmt.Errorf("sipp %s still running after %v: stopped", s.Run.Name, timeout), err)
	}
	return s.result(nil)
}

// Stop ends sipp and parses its statistics: SIGUSR1 (sipp starts no new
// calls and ends when its open calls have ended), after grace a second
// SIGUSR1 (open calls are aborted and counted as failed), after 3 s more
// SIGKILL; the last comes with an error (and maybe no statistics). Use it
// for a callee run without -m (CallSipp.Calls < 0).
func (s *SippProc) Stop(grace time.Duration) (*SippResult, error) {
	var killed error
	for i, wait := range []time.Duration{grace, 3 * time.Second} {
		if s.proc.Exited() {
			break
		}
		_ = s.proc.Signal(syscall.SIGUSR1)
		_ = s.proc.Wait(wait)
		if i == 1 && !s.proc.Exited() {
			s.proc.Kill()
			killed = fmt.Errorf("sipp %s still running after two SIGUSR1: killed", s.Run.Name)
		}
	}
	return s.result(killed)
}

func (s *SippProc) result(prior error) (*SippResult, error) {
	r := s.Run
	res := &SippResult{Run: r,
		StatFile: filepath.Join(r.Dir, r.Name+"_stat.csv"),
		ErrFile:  filepath.Join(r.Dir, r.Name+"_errors.log"),
		LogFile:  filepath.Join(r.Dir, r.Name+".log"),
	}
	if r.TraceMsg {
		res.MsgFile = filepath.Join(r.Dir, r.Name+"_messages.log")
	}
	res.Elapsed = time.Since(s.start)
	res.ExitCode = s.proc.ExitCode()
	res.CPU = s.proc.CPUTime()
	if err := res.parseStats(); err != nil {
		return res, errors.Join(prior, fmt.Errorf("sipp %s (exit %d): %v\n%s", r.Name, res.ExitCode, err, s.proc.Tail(20)))
	}
	return res, prior
}

// WaitUDPBound polls /proc/net/udp (every 20 ms, at most timeout) until a
// socket is bound to addr (IPv4 ip:port); it gives up early when exited is
// closed.
func WaitUDPBound(addr string, timeout time.Duration, exited <-chan struct{}) error {
	ip, port, err := splitHostPort(addr)
	if err != nil {
		return err
	}
	var b [4]byte
	if _, err := fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3]); err != nil {
		return fmt.Errorf("%q: not an IPv4 address", ip)
	}
	// /proc/net/udp prints the address as the host-order (little-endian
	// on the machines we run on) 32-bit value and the port big-endian.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], port)
	deadline := time.Now().Add(timeout)
	for i := 0; i < 5000; i++ {
		select {
		case <-exited:
			return fmt.Errorf("process exited before binding %s", addr)
		default:
		}
		if data, err := os.ReadFile("/proc/net/udp"); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				f := strings.Fields(line)
				if len(f) > 1 && (f[1] == want || f[1] == "00000000:"+want[9:]) {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing bound to udp %s after %v", addr, timeout)
}

// RegisterContact registers contact (ip:port of a callee sipp) as a binding
// of user with call_register_contact.xml, sending from localIP (a free
// port), and fails unless the registration got its 200.
func RegisterContact(dir, name, server, domain string, user Cred, contact, localIP string) (*SippResult, error) {
	path, err := Scenario("call_register_contact.xml")
	if err != nil {
		return nil, err
	}
	port, err := FreePort(localIP)
	if err != nil {
		return nil, err
	}
	inf := filepath.Join(dir, name+".csv")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := WriteInjection(inf, domain, []Cred{user}); err != nil {
		return nil, err
	}
	res, err := RunSipp(SippRun{
		Name: name, Dir: dir, Scenario: path, Remote: server, LocalIP: localIP, LocalPort: port,
		Inf: inf, Calls: 1, Timeout: 20 * time.Second, AuthURI: domain,
		Keys: map[string]string{"contact": contact}, TraceMsg: true,
	})
	if err != nil {
		return res, err
	}
	if res.Successful != 1 || res.Failed != 0 {
		return res, fmt.Errorf("registering %s for %s: %s\n%s", contact, user.User, res, res.Diagnostics())
	}
	return res, nil
}

// CallResult is what RunCall's sipps reported: the caller's result, then
// the callees' in the order given.
type CallResult struct {
	Caller  *SippResult
	Callees []*SippResult
}

// All is the caller's result followed by the callees'.
func (r CallResult) All() []*SippResult {
	return append([]*SippResult{r.Caller}, r.Callees...)
}

// Check returns an error describing every sipp of the call that did not
// end with exactly its -m calls successful and none failed (with their
// diagnostics), or nil.
func (r CallResult) Check() error {
	var errs []error
	for _, res := range r.All() {
		if res == nil {
			errs = append(errs, errors.New("a sipp produced no result"))
			continue
		}
		if res.Successful != res.Run.Calls || res.Failed != 0 {
			errs = append(errs, fmt.Errorf("%s: SuccessfulCall=%d FailedCall=%d, want %d and 0\n%s",
				res.Run.Name, res.Successful, res.Failed, res.Run.Calls, res.Diagnostics()))
		}
	}
	return errors.Join(errs...)
}

// RunCall starts the callees (in the background, each waiting until its
// socket is bound), runs the caller to completion, then waits for every
// callee: up to calleeGrace after the caller ended before stopping it (see
// SippProc.Wait). The callees' contacts must be registered already. An
// error means a sipp could not run or produced no statistics, or a callee
// had to be stopped; failed calls are in the results (see Check).
func RunCall(caller CallSipp, calleeGrace time.Duration, callees ...CallSipp) (CallResult, error) {
	var out CallResult
	var procs []*SippProc
	var errs []error
	stopAll := func() {
		for _, p := range procs {
			res, err := p.Wait(0)
			out.Callees = append(out.Callees, res)
			errs = append(errs, err)
		}
	}
	for _, c := range callees {
		r, err := c.SippRun()
		if err != nil {
			stopAll()
			return out, errors.Join(append(errs, err)...)
		}
		p, err := StartSipp(r)
		if err != nil {
			stopAll()
			return out, errors.Join(append(errs, err)...)
		}
		procs = append(procs, p)
	}
	r, err := caller.SippRun()
	if err == nil {
		out.Caller, err = RunSipp(r)
	}
	errs = append(errs, err)
	for _, p := range procs {
		res, err := p.Wait(calleeGrace)
		out.Callees = append(out.Callees, res)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}
