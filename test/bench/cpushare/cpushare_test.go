package cpushare

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// Stacks as a Tandem profile shows them, leaf first.
var (
	sendmmsg = []string{
		"internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.Syscall6",
		"golang.org/x/net/internal/socket.sendmmsg", "golang.org/x/net/ipv4.(*payloadHandler).WriteBatch",
		"github.com/tandemswitch/tandem/gateway.(*udpWriter).write",
	}
	recvfrom = []string{
		"internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.Syscall6", "syscall.recvfrom",
		"net.(*UDPConn).ReadFrom", "github.com/emiago/sipgo/sip.(*UDPConnection).ReadFrom",
		"github.com/emiago/sipgo/sip.(*TransportUDP).readListenerConnection",
	}
	fdatasync = []string{
		"internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.Syscall", "golang.org/x/sys/unix.Fdatasync",
		"github.com/cockroachdb/pebble/vfs.(*syncingFile).Sync", "github.com/cockroachdb/pebble/record.(*LogWriter).flushPending",
	}
	epoll = []string{
		"internal/runtime/syscall/linux.Syscall6", "internal/runtime/syscall/linux.EpollWait", "runtime.netpoll",
		"runtime.findRunnable", "runtime.schedule",
	}
	pwrite = []string{
		"internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.Syscall6", "syscall.pwrite",
		"os.(*File).WriteAt", "github.com/cockroachdb/pebble/objstorage.(*fileWriter).Write",
	}
	parse = []string{
		"runtime.mallocgc", "runtime.newobject", "github.com/emiago/sipgo/sip.HeadersParser.ParseHeader",
		"github.com/emiago/sipgo/sip.(*Parser).parseHeadersOnly", "github.com/emiago/sipgo/sip.(*Parser).Parse",
		"github.com/tandemswitch/tandem/gateway.(*Gateway).fastWorker",
	}
	serverTx = []string{
		"runtime.selectgo", "github.com/emiago/sipgo/sip.(*ServerTx).Respond",
		"github.com/tandemswitch/tandem/actors/call.(*callActor).respondTo",
	}
	render = []string{
		"bytes.(*Buffer).WriteString", "github.com/emiago/sipgo/sip.(*headers).StringWrite",
		"github.com/emiago/sipgo/sip.(*Request).StringWrite", "github.com/emiago/sipgo/sip.(*UDPConnection).WriteMsg",
		"github.com/emiago/sipgo/sip.(*ClientTx).Init",
	}
	assist = []string{
		"runtime.scanObjectSmall", "runtime.gcDrainN", "runtime.gcAssistAlloc1", "runtime.gcAssistAlloc",
		"runtime.mallocgc", "github.com/emiago/sipgo/sip.HeadersParser.ParseHeader",
	}
	markWorker = []string{"runtime.scanSpan", "runtime.gcDrain", "runtime.gcBgMarkWorker.func2", "runtime.gcBgMarkWorker"}
	actorMap   = []string{
		"runtime.mapaccess2_faststr", "github.com/tandemswitch/tandem/actors/call.(*callActor).onInvite",
		"github.com/tandemswitch/tandem/actors/call.(*callActor).Receive",
		"github.com/asynkron/protoactor-go/actor.(*actorContext).InvokeUserMessage",
	}
	mailbox  = []string{"github.com/asynkron/protoactor-go/internal/queue/goring.(*Queue).Push", "github.com/asynkron/protoactor-go/actor.(*defaultMailbox).PostUserMessage"}
	snappy   = []string{"github.com/golang/snappy.encodeBlock", "github.com/cockroachdb/pebble/sstable.(*Writer).flush"}
	sqlite   = []string{"modernc.org/sqlite/lib._sqlite3VdbeExec", "modernc.org/sqlite.(*conn).step"}
	generic  = []string{"github.com/emiago/sipgo/sip.parseHeaderLazy[go.shape.struct { Address github.com/emiago/sipgo/sip.Uri }]", "github.com/emiago/sipgo/sip.(*Parser).Parse"}
	schedule = []string{"runtime.runqgrab", "runtime.findRunnable", "runtime.schedule", "runtime.park_m", "runtime.mcall"}
	futex    = []string{"runtime.futex", "runtime.futexwakeup", "runtime.notewakeup", "runtime.wakep", "runtime.ready",
		"runtime.chansend", "github.com/tandemswitch/tandem/actors/dispatch.(*Pool).Schedule"}
	closure = []string{"github.com/tandemswitch/tandem/gateway.newUDPWriter.func1", "github.com/tandemswitch/tandem/gateway.(*udpWriter).run"}
	dotted  = []string{"gopkg.in/yaml%2ev3.(*parser).parse"}
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name  string
		stack []string
		want  string
	}{
		{"sendmmsg", sendmmsg, KernelSend},
		{"recvfrom", recvfrom, KernelRecv},
		{"fdatasync", fdatasync, KernelSync},
		{"epoll", epoll, KernelPoll},
		{"pwrite", pwrite, KernelOther},
		{"parse", parse, SipgoParse},
		{"server transaction", serverTx, SipgoTx},
		{"rendering in a client transaction", render, SipgoTx},
		{"generic parser function", generic, SipgoParse},
		{"assist", assist, GCAssist},
		{"mark worker", markWorker, GCBackground},
		{"map access in the call actor", actorMap, "tandem: actors/call"},
		{"mailbox", mailbox, "protoactor (actor runtime)"},
		{"snappy under pebble", snappy, "pebble (event store engine)"},
		{"sqlite", sqlite, "sqlite (CDR projection)"},
		{"scheduler", schedule, Scheduler},
		{"futex wake charged to the sender", futex, "tandem: actors/dispatch"},
		{"closure", closure, "tandem: gateway"},
		{"other module", dotted, "other: gopkg.in/yaml%2ev3"},
		{"empty", nil, Scheduler},
		{"sipgo outside parser and transactions", []string{"github.com/emiago/sipgo/sip.(*Request).StringWrite"}, SipgoOther},
	} {
		if got := Classify(c.stack); got != c.want {
			t.Errorf("%s: Classify = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestPkgPath(t *testing.T) {
	for in, want := range map[string]string{
		"runtime.mallocgc":                  "runtime",
		"sync.(*Mutex).Lock":                "sync",
		"aeshashbody":                       "aeshashbody",
		"internal/runtime/maps.ctrlGroup.x": "internal/runtime/maps",
		"github.com/tandemswitch/tandem/actors/call.(*callActor).Receive": "github.com/tandemswitch/tandem/actors/call",
		"github.com/x/y.F[go.shape.struct { A github.com/x/z.T }]":        "github.com/x/y",
	} {
		if got := pkgPath(in); got != want {
			t.Errorf("pkgPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// build makes a CPU profile of the given stacks, each sampled once with
// the CPU time given, over duration.
func build(t *testing.T, duration time.Duration, samples map[time.Duration][]string) []byte {
	t.Helper()
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        10_000_000,
		DurationNanos: duration.Nanoseconds(),
	}
	fns := map[string]*profile.Function{}
	for cpu, st := range samples {
		s := &profile.Sample{Value: []int64{int64(cpu / 10_000_000), cpu.Nanoseconds()}}
		for _, name := range st {
			fn := fns[name]
			if fn == nil {
				fn = &profile.Function{ID: uint64(len(fns) + 1), Name: name}
				fns[name] = fn
				p.Function = append(p.Function, fn)
			}
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: fn}}}
			p.Location = append(p.Location, loc)
			s.Location = append(s.Location, loc)
		}
		p.Sample = append(p.Sample, s)
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadSplitsEverySampleOnce(t *testing.T) {
	data := build(t, 4*time.Second, map[time.Duration][]string{
		500 * time.Millisecond: sendmmsg,
		300 * time.Millisecond: parse,
		200 * time.Millisecond: serverTx,
		100 * time.Millisecond: markWorker,
		40 * time.Millisecond:  actorMap,
		10 * time.Millisecond:  schedule,
	})
	s, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 1150*time.Millisecond || s.Duration != 4*time.Second {
		t.Fatalf("total %v over %v, want 1.15s over 4s", s.Total, s.Duration)
	}
	want := []Part{
		{KernelSend, 500 * time.Millisecond}, {SipgoParse, 300 * time.Millisecond}, {SipgoTx, 200 * time.Millisecond},
		{GCBackground, 100 * time.Millisecond}, {"tandem: actors/call", 40 * time.Millisecond}, {Scheduler, 10 * time.Millisecond},
	}
	if len(s.Parts) != len(want) {
		t.Fatalf("parts %v, want %v", s.Parts, want)
	}
	for i := range want {
		if s.Parts[i] != want[i] {
			t.Errorf("part %d = %v, want %v", i, s.Parts[i], want[i])
		}
	}
	if got := s.Sum("sipgo"); got != 500*time.Millisecond {
		t.Errorf("Sum(sipgo) = %v, want 500ms", got)
	}

	var out bytes.Buffer
	s.Print(&out, 1000, "")
	text := out.String()
	for _, line := range []string{
		" 500.0  43.5%  kernel: socket sends",
		"  10.0   0.9%  runtime: scheduler and other",
		"1150.0 100.0%  total over 4.0 s of profile, 1000 calls",
		"in all: sipgo 43.5%, kernel 43.5%, runtime: garbage collector 8.7%, tandem 3.5%",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("Print lacks %q:\n%s", line, text)
		}
	}
}

func TestPrintSumsSmallParts(t *testing.T) {
	data := build(t, time.Second, map[time.Duration][]string{
		time.Second:           parse,
		2 * time.Millisecond:  sqlite,
		3 * time.Millisecond:  snappy,
		10 * time.Millisecond: mailbox,
	})
	s, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.Print(&out, 100, "  ")
	if !strings.Contains(out.String(), "    50.0   0.5%  (2 parts under 0.5% each)") {
		t.Errorf("small parts not summed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "protoactor") {
		t.Errorf("a part of 1%% was summed away:\n%s", out.String())
	}
}

func TestReadRefuses(t *testing.T) {
	if _, err := Read(strings.NewReader("not a profile")); err == nil {
		t.Error("garbage read as a profile")
	}
	heap := &profile.Profile{SampleType: []*profile.ValueType{{Type: "alloc_objects", Unit: "count"}}}
	var b bytes.Buffer
	if err := heap.Write(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(&b); err == nil || !strings.Contains(err.Error(), "not a CPU profile") {
		t.Errorf("heap profile: err = %v, want one saying it is not a CPU profile", err)
	}
	var out bytes.Buffer
	Split{}.Print(&out, 10, "")
	if !strings.Contains(out.String(), "empty profile") {
		t.Errorf("empty split printed %q", out.String())
	}
}
