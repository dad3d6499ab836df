// Package cpushare splits a Go CPU profile of the switch into the parts of
// the process that spent it: the SIP library (parsing, transactions, the
// rest), the event store's engine, the CDR database, the actor runtime,
// Tandem's own packages, the kernel's work behind socket and disk calls,
// the garbage collector and the scheduler. The benchmarks print it per call
// beside their figures, so that a claim such as "sipgo takes N% of a call"
// comes from a command anyone can run rather than from a reading of pprof.
//
// Each sample goes to exactly one part, so the parts add up to the whole:
//   - the collector, when the sample is a background mark, sweep or
//     scavenge, or an allocation's assist to the mark;
//   - the kernel, when the sample is inside a system call, named by what
//     made it (a send, a receive, an fsync, the netpoller's wait);
//   - otherwise the code nearest the sample's leaf that is not the Go
//     runtime or standard library: time in malloc, maps or copying counts
//     for the code that asked for it.
//
// The profile is read with github.com/google/pprof/profile, the format's
// own reader, instead of by hand.
package cpushare

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// Part is one component's share of a profile.
type Part struct {
	Name string
	CPU  time.Duration
}

// Split is a profile divided into parts, largest first.
type Split struct {
	Parts    []Part
	Total    time.Duration // CPU of all samples
	Duration time.Duration // wall time the profile covers
}

// ReadFile splits the CPU profile at path.
func ReadFile(path string) (Split, error) {
	f, err := os.Open(path)
	if err != nil {
		return Split{}, err
	}
	defer f.Close()
	return Read(f)
}

// Read splits a CPU profile (pprof's format, gzipped or not).
func Read(r io.Reader) (Split, error) {
	p, err := profile.Parse(r)
	if err != nil {
		return Split{}, fmt.Errorf("cpushare: %w", err)
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			vi = i
		}
	}
	if vi < 0 {
		return Split{}, fmt.Errorf("cpushare: not a CPU profile (no cpu/nanoseconds sample type)")
	}
	by := map[string]time.Duration{}
	var total time.Duration
	for _, s := range p.Sample {
		d := time.Duration(s.Value[vi])
		total += d
		by[Classify(stack(s))] += d
	}
	sp := Split{Total: total, Duration: time.Duration(p.DurationNanos)}
	for n, d := range by {
		sp.Parts = append(sp.Parts, Part{n, d})
	}
	sort.Slice(sp.Parts, func(i, j int) bool {
		if sp.Parts[i].CPU != sp.Parts[j].CPU {
			return sp.Parts[i].CPU > sp.Parts[j].CPU
		}
		return sp.Parts[i].Name < sp.Parts[j].Name
	})
	return sp, nil
}

// stack is a sample's function names, leaf first, inlined frames included.
func stack(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		for _, ln := range loc.Line { // innermost first
			if ln.Function != nil {
				out = append(out, ln.Function.Name)
			}
		}
	}
	return out
}

// Names of the parts Classify gives.
const (
	GCBackground = "runtime: garbage collector (background)"
	GCAssist     = "runtime: garbage collector (assists)"
	Scheduler    = "runtime: scheduler and other"
	KernelSend   = "kernel: socket sends"
	KernelRecv   = "kernel: socket receives"
	KernelSync   = "kernel: fsync"
	KernelPoll   = "kernel: netpoller wait"
	KernelOther  = "kernel: other system calls"
	SipgoParse   = "sipgo: parsing"
	SipgoTx      = "sipgo: transactions"
	SipgoOther   = "sipgo: messages and transport"
)

// libraries names the third-party code by import path prefix.
var libraries = []struct{ prefix, name string }{
	{"github.com/cockroachdb/pebble", "pebble (event store engine)"},
	{"github.com/golang/snappy", "pebble (event store engine)"},
	{"modernc.org/", "sqlite (CDR projection)"},
	{"github.com/asynkron/protoactor-go", "protoactor (actor runtime)"},
	{"google.golang.org/protobuf", "protobuf"},
	{"github.com/prometheus/", "prometheus client"},
	{"github.com/hashicorp/memberlist", "memberlist"},
}

const tandemPrefix = "github.com/tandemswitch/tandem/"

// Classify names the part a sample with this stack (leaf first) goes to.
func Classify(stack []string) string {
	for _, f := range stack {
		switch {
		case strings.HasPrefix(f, "runtime.gcBgMarkWorker"), strings.HasPrefix(f, "runtime.bgsweep"),
			strings.HasPrefix(f, "runtime.bgscavenge"):
			return GCBackground
		case strings.HasPrefix(f, "runtime.gcAssistAlloc"):
			return GCAssist
		}
	}
	if k := kernel(stack); k != "" {
		return k
	}
	for i, f := range stack {
		if std(f) {
			continue
		}
		if strings.HasPrefix(f, "github.com/emiago/sipgo") {
			return sipgo(stack[i:])
		}
		for _, l := range libraries {
			if strings.HasPrefix(f, l.prefix) {
				return l.name
			}
		}
		if rest, ok := strings.CutPrefix(f, tandemPrefix); ok {
			return "tandem: " + tandemPackage(rest)
		}
		return "other: " + pkgPath(f)
	}
	return Scheduler
}

// kernel names the system call a sample is in, by its callers, or "" when
// it is in none. The runtime's own futex and timer calls are the scheduler's.
func kernel(stack []string) string {
	in := false
	for _, f := range stack {
		switch {
		case strings.HasPrefix(f, "internal/runtime/syscall"), strings.HasPrefix(f, "syscall.Syscall"),
			strings.HasPrefix(f, "syscall.RawSyscall"), strings.HasPrefix(f, "modernc.org/libc.") && strings.Contains(f, "syscall"):
			in = true
		case strings.HasPrefix(f, "runtime.futex"), strings.HasPrefix(f, "runtime.usleep"), strings.HasPrefix(f, "runtime.nanotime"):
			return ""
		}
		if !in {
			continue
		}
		l := strings.ToLower(f)
		switch {
		case strings.Contains(l, "epollwait"), strings.Contains(l, "netpoll"):
			return KernelPoll
		case strings.Contains(l, "sendmmsg"), strings.Contains(l, "sendmsg"), strings.Contains(l, "sendto"),
			strings.Contains(l, "writeto"), strings.Contains(l, "writemsg"):
			return KernelSend
		case strings.Contains(l, "recvmmsg"), strings.Contains(l, "recvmsg"), strings.Contains(l, "recvfrom"),
			strings.Contains(l, "readfrom"), strings.Contains(l, "readmsg"):
			return KernelRecv
		case strings.Contains(l, "fsync"), strings.Contains(l, "fdatasync"), strings.Contains(l, "syncfilerange"):
			return KernelSync
		}
	}
	if in {
		return KernelOther
	}
	return ""
}

// sipgo splits sipgo's share by the outermost sipgo work under way: the
// parser, a transaction, or anything else (building and rendering
// messages, the transport's read loops and writes).
func sipgo(stack []string) string {
	parse, tx := false, false
	for _, f := range stack {
		if !strings.HasPrefix(f, "github.com/emiago/sipgo") {
			continue
		}
		switch {
		case strings.Contains(f, "Parser)"), strings.Contains(f, "ParseHeader"), strings.Contains(f, "sip.parse"):
			parse = true
		case strings.Contains(f, "Tx)"), strings.Contains(f, "TransactionLayer)"):
			tx = true
		}
	}
	switch {
	case parse:
		return SipgoParse
	case tx:
		return SipgoTx
	}
	return SipgoOther
}

// std tells whether f is the Go runtime's, the standard library's or the
// Go team's x/ packages' (and so is charged to whoever called it): a
// standard library import path has no dot in its first element.
func std(f string) bool {
	p := pkgPath(f)
	if strings.HasPrefix(p, "golang.org/x/") {
		return true
	}
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

// tandemPackage is the package directory of a function under Tandem's
// module: "actors/call.(*callActor).Receive" -> "actors/call".
func tandemPackage(rest string) string { return pkgPath(rest) }

// pkgPath is the import path of a function's package: what comes before
// the first dot after the last slash ("runtime.mallocgc" -> "runtime"),
// type arguments ("F[go.shape...]") left out.
func pkgPath(f string) string {
	if i := strings.IndexByte(f, '['); i >= 0 {
		f = f[:i]
	}
	i := strings.LastIndexByte(f, '/') + 1
	if j := strings.IndexByte(f[i:], '.'); j >= 0 {
		return f[:i+j]
	}
	return f
}

// Print writes the split as a table of CPU per call (calls is how many
// calls the profile's window held) and share of the total, largest first;
// parts under half a percent are summed into one line.
func (s Split) Print(w io.Writer, calls float64, indent string) {
	if s.Total <= 0 || calls <= 0 {
		fmt.Fprintf(w, "%s(empty profile)\n", indent)
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / calls }
	var small time.Duration
	n := 0
	fmt.Fprintf(w, "%s%8s %6s  %s\n", indent, "us/call", "share", "part")
	for _, p := range s.Parts {
		if float64(p.CPU) < 0.005*float64(s.Total) {
			small += p.CPU
			n++
			continue
		}
		fmt.Fprintf(w, "%s%8.1f %5.1f%%  %s\n", indent, per(p.CPU), 100*float64(p.CPU)/float64(s.Total), p.Name)
	}
	if n > 0 {
		fmt.Fprintf(w, "%s%8.1f %5.1f%%  (%d parts under 0.5%% each)\n", indent, per(small), 100*float64(small)/float64(s.Total), n)
	}
	fmt.Fprintf(w, "%s%8.1f %5.1f%%  total over %.1f s of profile, %.0f calls\n", indent, per(s.Total), 100.0, s.Duration.Seconds(), calls)
	var groups []string
	for _, g := range []string{"sipgo", "kernel", "runtime: garbage collector", "tandem"} {
		groups = append(groups, fmt.Sprintf("%s %.1f%%", g, 100*float64(s.Sum(g))/float64(s.Total)))
	}
	fmt.Fprintf(w, "%sin all: %s\n", indent, strings.Join(groups, ", "))
}

// Sum is the CPU of the parts whose names start with prefix.
func (s Split) Sum(prefix string) time.Duration {
	var d time.Duration
	for _, p := range s.Parts {
		if strings.HasPrefix(p.Name, prefix) {
			d += p.CPU
		}
	}
	return d
}
