// Package peers drives the real peers Tandem is tested against (sipp,
// Kamailio) and Tandem itself as an external process: it writes sipp
// injection files and Tandem configs, starts and stops processes by PID with
// their output in log files, waits for readiness, runs sipp and parses its
// statistics, and reads kernel counters (/proc/net/snmp, /proc/PID/stat).
//
// It is used by the end-to-end tests (test/e2e) and the registration
// benchmark (test/bench/regbench). Everything it does is bounded in time.
package peers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RepoRoot finds the repository root (the directory holding the go.mod of
// module github.com/tandemswitch/tandem) from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 64; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/tandemswitch/tandem\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("repository root (go.mod of github.com/tandemswitch/tandem) not found above the working directory")
}

// Proc is a process started by this package. It is stopped only through its
// own PID (never by name).
type Proc struct {
	Name    string
	PID     int
	LogPath string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	mu      sync.Mutex
	waitErr error
}

// Start starts argv[0] with its arguments in dir (if not empty), with stdout
// and stderr appended to logDir/<name>.log.
func Start(name, logDir, dir string, env []string, argv ...string) (*Proc, error) {
	return StartAs(nil, name, logDir, dir, env, argv...)
}

// StartAs is Start with the process running under cred (nil: as we are),
// e.g. PostgreSQL, which refuses to run as root.
func StartAs(cred *syscall.Credential, name, logDir, dir string, env []string, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("peers.Start: empty command")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "==== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, LogPath: logPath, cmd: cmd, logFile: lf, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		fmt.Fprintf(lf, "==== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), err)
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to end and returns its exit error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID, timeout)
	}
}

// ExitCode is the exit code once the process has ended (-1 if killed by a
// signal or still running).
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// CPUTime is the user+system CPU time of the ended process (and its waited-for
// children), from its rusage; zero while it runs.
func (p *Proc) CPUTime() time.Duration {
	if !p.Exited() {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// Signal sends sig to this process's PID if it still runs.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to grace for the process to end, then
// sends SIGKILL and waits up to 5 s more.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits up to 5 s for the process to end.
func (p *Proc) Kill() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not end after SIGKILL", p.Name, p.PID)
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return TailFile(p.LogPath, n) }

// TailFile returns the last n lines of a file (or a note that it is unreadable).
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a port on ip that is free for both UDP and TCP at the time
// of the call.
func FreePort(ip string) (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free UDP+TCP port on %s", ip)
}
