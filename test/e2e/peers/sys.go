package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports here.
const clockTick = 100

// UDPCounters are the kernel's UDP counters from /proc/net/snmp.
type UDPCounters struct {
	InDatagrams  int64
	InErrors     int64
	RcvbufErrors int64
	SndbufErrors int64
}

// ReadUDPCounters reads the "Udp:" lines of /proc/net/snmp.
func ReadUDPCounters() (UDPCounters, error) {
	var c UDPCounters
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return c, err
	}
	var names, values []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(line)[1:]
		} else {
			values = strings.Fields(line)[1:]
			break
		}
	}
	if names == nil || len(values) != len(names) {
		return c, fmt.Errorf("/proc/net/snmp: no Udp counters")
	}
	for i, n := range names {
		v, _ := strconv.ParseInt(values[i], 10, 64)
		switch n {
		case "InDatagrams":
			c.InDatagrams = v
		case "InErrors":
			c.InErrors = v
		case "RcvbufErrors":
			c.RcvbufErrors = v
		case "SndbufErrors":
			c.SndbufErrors = v
		}
	}
	return c, nil
}

// RcvbufErrors is the kernel's UDP RcvbufErrors counter (datagrams dropped
// because a socket's receive buffer was full).
func RcvbufErrors() (int64, error) {
	c, err := ReadUDPCounters()
	return c.RcvbufErrors, err
}

// procStat returns ppid and utime+stime (in ticks) of a PID.
func procStat(pid int) (ppid int, ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	// comm (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, ut + st, nil
}

// ProcCPU is the user+system CPU time used so far by a process (all of its
// threads), from /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	_, t, err := procStat(pid)
	return ticksToDuration(t), err
}

// TreeCPU is the CPU time used so far by a process and all its live
// descendants (Kamailio forks its workers).
func TreeCPU(pid int) (time.Duration, error) {
	entries, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	parent := map[int]int{}
	ticks := map[int]int64{}
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		pp, t, err := procStat(p)
		if err != nil {
			continue
		}
		parent[p] = pp
		ticks[p] = t
	}
	if _, ok := ticks[pid]; !ok {
		return 0, fmt.Errorf("process %d not found", pid)
	}
	var total int64
	for p, t := range ticks {
		for q, n := p, 0; q > 1 && n < 64; q, n = parent[q], n+1 {
			if q == pid {
				total += t
				break
			}
		}
	}
	return ticksToDuration(total), nil
}

func ticksToDuration(t int64) time.Duration {
	return time.Duration(t) * time.Second / clockTick
}

// BusyCPU is the CPU time all CPUs spent not idle since boot (user, nice,
// system, irq, softirq, steal), from the "cpu" line of /proc/stat.
func BusyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for i, s := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		busy += v
	}
	return ticksToDuration(busy), nil
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Missing ends a test whose peer (sipp, kamailio, the tandem binary) is
// not installed: skipped on a developer's machine, failed under CI (CI set),
// where `make test` installs every peer and a skip would pass silently.
func Missing(t interface {
	Helper()
	Skipf(string, ...any)
	Fatalf(string, ...any)
}, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}
