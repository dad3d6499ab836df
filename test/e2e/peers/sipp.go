package peers

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cred is one SIP user and its password.
type Cred struct {
	User     string
	Password string
}

// UserName is the name of the i-th generated user (1-based): user0001, ...
func UserName(i int) string { return fmt.Sprintf("user%04d", i) }

// Users returns n users user0001..userN with the same password.
func Users(n int, password string) []Cred {
	out := make([]Cred, n)
	for i := range out {
		out[i] = Cred{User: UserName(i + 1), Password: password}
	}
	return out
}

// WriteInjection writes a sipp injection file (first line SEQUENTIAL) with
// one line per user: `user;domain;[authentication username=user password=pw];`.
// sipp 3.6.1 does not expand fields nested in [authentication ...], so the
// whole keyword is field2.
func WriteInjection(path, domain string, users []Cred) error {
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s;%s;[authentication username=%s password=%s];\n", u.User, domain, u.User, u.Password)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Scenario is the path of a scenario in test/sipp.
func Scenario(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "test", "sipp", name)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// SippRun describes one sipp client run.
type SippRun struct {
	Name      string // file name prefix in Dir; also the log name
	Dir       string // working directory; every sipp output file goes here
	Scenario  string // path of the scenario XML
	Remote    string // host:port of the server
	Transport string // sipp -t: "u1" (default), "un", "t1", ...
	LocalIP   string // -i (source address; also Via/Contact)
	LocalPort int    // -p (0: sipp chooses)
	Inf       string // injection file (-inf)
	Calls     int    // -m: stop after this many calls
	Rate      int    // -r: calls per RatePeriod (0: sipp's default of 10)
	RatePer   time.Duration
	Limit     int           // -l: max simultaneous calls (0: sipp's default)
	Timeout   time.Duration // -timeout: sipp's global timeout; also bounds the run
	BuffSize  int           // -buff_size (socket send and receive buffers)
	AuthURI   string        // -auth_uri (digest uri; sipp's default is remote_ip:remote_port)
	Keys      map[string]string
	TraceMsg  bool // -trace_msg into Name_messages.log
	Extra     []string
}

// SippResult is what a sipp run reported.
type SippResult struct {
	Run             SippRun
	ExitCode        int
	Stats           map[string]string // the final line of -trace_stat, by column name
	Successful      int               // SuccessfulCall(C), field 16
	Failed          int               // FailedCall(C), field 18
	Created         int               // TotalCallCreated
	Retransmissions int               // Retransmissions(C)
	TimeoutOnRecv   int               // FailedTimeoutOnRecv(C)
	MaxUDPRetrans   int               // FailedMaxUDPRetrans(C)
	Unexpected      int               // FailedUnexpectedMessage(C)
	CPU             time.Duration     // sipp's own user+system CPU
	Elapsed         time.Duration
	StatFile        string
	ErrFile         string
	MsgFile         string
	LogFile         string
}

// Args is the sipp command line for a run.
func (r SippRun) Args() []string {
	a := []string{"sipp", "-sf", r.Scenario, r.Remote, "-nostdin",
		"-trace_stat", "-stf", r.Name + "_stat.csv", "-fd", "1",
		"-trace_err", "-error_file", r.Name + "_errors.log",
	}
	if r.Transport != "" {
		a = append(a, "-t", r.Transport)
	}
	if r.LocalIP != "" {
		a = append(a, "-i", r.LocalIP)
	}
	if r.LocalPort != 0 {
		a = append(a, "-p", strconv.Itoa(r.LocalPort))
	}
	if r.Inf != "" {
		a = append(a, "-inf", r.Inf)
	}
	if r.Calls > 0 {
		a = append(a, "-m", strconv.Itoa(r.Calls))
	}
	if r.Rate > 0 {
		a = append(a, "-r", strconv.Itoa(r.Rate))
	}
	if r.RatePer > 0 {
		a = append(a, "-rp", fmt.Sprintf("%dms", r.RatePer.Milliseconds()))
	}
	if r.Limit > 0 {
		a = append(a, "-l", strconv.Itoa(r.Limit))
	}
	if r.Timeout > 0 {
		a = append(a, "-timeout", fmt.Sprintf("%ds", int((r.Timeout+time.Second-1)/time.Second)))
	}
	if r.BuffSize > 0 {
		a = append(a, "-buff_size", strconv.Itoa(r.BuffSize))
	}
	if r.AuthURI != "" {
		a = append(a, "-auth_uri", r.AuthURI)
	}
	for k, v := range r.Keys {
		a = append(a, "-key", k, v)
	}
	if r.TraceMsg {
		a = append(a, "-trace_msg", "-message_file", r.Name+"_messages.log")
	}
	return append(a, r.Extra...)
}

// RunSipp runs sipp to completion (bounded by r.Timeout + 15 s, or 2 min
// when r.Timeout is 0) and parses its final statistics. An error is returned
// only when sipp could not run or produced no statistics; failed calls are
// reported in the result.
func RunSipp(r SippRun) (*SippResult, error) {
	if r.Name == "" {
		r.Name = "sipp"
	}
	if r.Dir == "" {
		return nil, errors.New("RunSipp: Dir is required")
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &SippResult{Run: r,
		StatFile: filepath.Join(r.Dir, r.Name+"_stat.csv"),
		ErrFile:  filepath.Join(r.Dir, r.Name+"_errors.log"),
		LogFile:  filepath.Join(r.Dir, r.Name+".log"),
	}
	if r.TraceMsg {
		res.MsgFile = filepath.Join(r.Dir, r.Name+"_messages.log")
	}
	os.Remove(res.StatFile)
	bound := 2 * time.Minute
	if r.Timeout > 0 {
		bound = r.Timeout + 15*time.Second
	}
	start := time.Now()
	p, err := Start(r.Name, r.Dir, r.Dir, nil, r.Args()...)
	if err != nil {
		return nil, err
	}
	if werr := p.Wait(bound); werr != nil && !p.Exited() {
		p.Kill()
		return res, fmt.Errorf("sipp %s: %v (killed)\n%s", r.Name, werr, p.Tail(20))
	}
	res.Elapsed = time.Since(start)
	res.ExitCode = p.ExitCode()
	res.CPU = p.CPUTime()
	if err := res.parseStats(); err != nil {
		return res, fmt.Errorf("sipp %s (exit %d): %v\n%s", r.Name, res.ExitCode, err, p.Tail(20))
	}
	return res, nil
}

// RunSippMany runs several sipp clients at once and waits for all.
func RunSippMany(runs []SippRun) ([]*SippResult, error) {
	out := make([]*SippResult, len(runs))
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out[i], errs[i] = RunSipp(runs[i])
		}(i)
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (res *SippResult) parseStats() error {
	f, err := os.Open(res.StatFile)
	if err != nil {
		return fmt.Errorf("no statistics file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var header, last []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		fields := strings.Split(line, ";")
		if header == nil {
			header = fields
			continue
		}
		last = fields
	}
	if header == nil || last == nil {
		return errors.New("statistics file has no data line")
	}
	// sipp 3.6.1: field 16 is SuccessfulCall(C), field 18 FailedCall(C).
	if len(header) < 18 || header[15] != "SuccessfulCall(C)" || header[17] != "FailedCall(C)" {
		return fmt.Errorf("unexpected statistics header: %v", header[:min(len(header), 20)])
	}
	res.Stats = map[string]string{}
	for i, h := range header {
		if i < len(last) {
			res.Stats[h] = last[i]
		}
	}
	res.Successful = atoi(last[15])
	res.Failed = atoi(last[17])
	res.Created = res.stat("TotalCallCreated")
	res.Retransmissions = res.stat("Retransmissions(C)")
	res.TimeoutOnRecv = res.stat("FailedTimeoutOnRecv(C)")
	res.MaxUDPRetrans = res.stat("FailedMaxUDPRetrans(C)")
	res.Unexpected = res.stat("FailedUnexpectedMessage(C)")
	return nil
}

func (res *SippResult) stat(name string) int { return atoi(res.Stats[name]) }

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// String is a one-line summary.
func (res *SippResult) String() string {
	return fmt.Sprintf("%s: exit=%d created=%d ok=%d failed=%d retrans=%d (timeout-recv=%d max-udp-retrans=%d unexpected=%d) cpu=%v elapsed=%v",
		res.Run.Name, res.ExitCode, res.Created, res.Successful, res.Failed, res.Retransmissions,
		res.TimeoutOnRecv, res.MaxUDPRetrans, res.Unexpected, res.CPU.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
}

// Diagnostics returns the command line, the summary and the tails of sipp's
// output, error log and message trace, for a failure report.
func (res *SippResult) Diagnostics() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sipp run %q in %s\n  cmd: %s\n  %s\n", res.Run.Name, res.Run.Dir, strings.Join(res.Run.Args(), " "), res.String())
	fmt.Fprintf(&b, "--- sipp output (tail)\n%s\n", TailFile(res.LogFile, 15))
	if _, err := os.Stat(res.ErrFile); err == nil {
		fmt.Fprintf(&b, "--- sipp errors (tail)\n%s\n", TailFile(res.ErrFile, 40))
	}
	if res.MsgFile != "" {
		fmt.Fprintf(&b, "--- sipp messages (tail)\n%s\n", TailFile(res.MsgFile, 80))
	}
	return b.String()
}

// Sum adds up the counters of several results.
func Sum(rs []*SippResult) (ok, failed, retrans, created int, cpu time.Duration) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		ok += r.Successful
		failed += r.Failed
		retrans += r.Retransmissions
		created += r.Created
		cpu += r.CPU
	}
	return
}

// HaveSipp reports whether sipp is on PATH.
func HaveSipp() bool {
	_, err := exec.LookPath("sipp")
	return err == nil
}
