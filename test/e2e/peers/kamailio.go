package peers

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KamailioBinary finds kamailio (on PATH or in /usr/sbin).
func KamailioBinary() (string, error) {
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("/usr/sbin/kamailio"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("kamailio not found (apt-get install -y kamailio)")
}

// KamailioOptions configure the reference registrar of
// test/bench/kamailio/registrar.cfg (or, with Config, another config such as
// test/bench/kamailio/proxy.cfg).
type KamailioOptions struct {
	Config   string // path of the config (default test/bench/kamailio/registrar.cfg)
	Listen   string // e.g. udp:127.0.0.1:5070
	Children int    // UDP workers (-n)
	Realm    string
	Password string
	ShmMB    int // -m (default 4096)
	PkgMB    int // -M (default 64)
	LogDir   string
	// Defines are extra -A NAME=VALUE config defines, e.g.
	// "FR_INV_TIMER=3000" for proxy.cfg.
	Defines []string
}

// Args is the kamailio command line: foreground (-DD), logs to stderr (-E),
// the TLSF allocator (-x tlsf; Debian's default costs about 3x the CPU).
func (o KamailioOptions) Args(bin string) []string {
	shm, pkg := o.ShmMB, o.PkgMB
	if shm == 0 {
		shm = 4096
	}
	if pkg == 0 {
		pkg = 64
	}
	n := o.Children
	if n == 0 {
		n = 2
	}
	args := []string{bin, "-f", o.Config, "-DD", "-E", "-x", "tlsf",
		"-m", fmt.Sprint(shm), "-M", fmt.Sprint(pkg), "-n", fmt.Sprint(n),
		"-l", o.Listen,
		"-A", fmt.Sprintf("REALM=%q", o.Realm), "-A", fmt.Sprintf("PASSWORD=%q", o.Password),
	}
	for _, d := range o.Defines {
		args = append(args, "-A", d)
	}
	return args
}

// StartKamailio starts Kamailio in the foreground and waits up to ready for
// it to answer an OPTIONS on its UDP socket.
func StartKamailio(o KamailioOptions, ready time.Duration) (*Proc, error) {
	bin, err := KamailioBinary()
	if err != nil {
		return nil, err
	}
	if o.Config == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		o.Config = filepath.Join(root, "test", "bench", "kamailio", "registrar.cfg")
	}
	p, err := Start("kamailio", o.LogDir, o.LogDir, nil, o.Args(bin)...)
	if err != nil {
		return nil, err
	}
	addr := strings.TrimPrefix(o.Listen, "udp:")
	if err := WaitSIP(addr, ready, p.Done()); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("kamailio not ready: %v\n%s", err, p.Tail(30))
	}
	return p, nil
}

// WaitSIP sends OPTIONS over UDP to addr (host:port) until any SIP response
// comes back, for at most timeout.
func WaitSIP(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		select {
		case <-exited:
			return fmt.Errorf("process exited while waiting for %s", addr)
		default:
		}
		if last = sipPing(addr); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no SIP answer from %s after %v: %v", addr, timeout, last)
}

func sipPing(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-ping" + fmt.Sprint(time.Now().UnixNano()) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:ping@" + local + ">;tag=ping\r\n" +
		"To: <sip:" + addr + ">\r\n" +
		"Call-ID: ping-" + fmt.Sprint(time.Now().UnixNano()) + "@" + local + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
		return fmt.Errorf("not a SIP response: %.40q", buf[:n])
	}
	return nil
}
