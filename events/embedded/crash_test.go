//go:build linux

package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/storetest"
)

// crashDirEnv, when set, makes TestCrashChild the crash test's child: it
// appends to the store in that directory until it is killed.
const crashDirEnv = "TANDEM_EMBEDDED_CRASH_CHILD_DIR"

const (
	crashWriters       = 8
	crashStreamsPerWtr = 3
	crashRounds        = 5
)

// crashEvent is the event the child appends as version v of stream: the
// parent recomputes it to check what it reads back.
func crashEvent(stream string, v uint64) *eventpb.Envelope {
	return &eventpb.Envelope{
		Time: timestamppb.New(time.Unix(1700000000+int64(v), 0)),
		Node: "crash-child",
		Cause: &eventpb.Cause{
			CallId: fmt.Sprintf("%s-%d@crash.test", stream, v),
			Method: "INVITE",
		},
		Type: "tandem.test.v1.Crash",
		Data: []byte(fmt.Sprintf("%s version %d %s", stream, v, strings.Repeat("x", int(v%64)))),
	}
}

// realDisk fails t when dir is on tmpfs or ramfs, where fsync proves nothing.
func realDisk(t *testing.T, dir string) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	const tmpfsMagic, ramfsMagic = 0x01021994, 0x858458f6
	if st.Type == tmpfsMagic || st.Type == ramfsMagic {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %s is on tmpfs/ramfs: the crash test needs a real disk (set TMPDIR)", dir)
		}
		t.Skipf("%s is on tmpfs/ramfs (type %#x): a crash test there proves nothing; set TMPDIR to a real disk", dir, st.Type)
	}
}

// TestCrashChild is the child of TestCrash; without crashDirEnv it does
// nothing. It appends from crashWriters goroutines, each on its own
// streams, and prints "ack <stream> <version> <position> <events>" for each
// acknowledged append, until it is killed (or 15 s pass).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: open: %v\n", err)
		os.Exit(3)
	}
	ctx := context.Background()
	var outMu sync.Mutex
	fail := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
		os.Exit(3)
	}
	for w := 0; w < crashWriters; w++ {
		go func() {
			streams := make([]string, crashStreamsPerWtr)
			versions := make([]uint64, crashStreamsPerWtr)
			for k := range streams {
				streams[k] = fmt.Sprintf("crash-w%d-s%d", w, k)
				got, err := s.ReadStream(ctx, streams[k], 1, 1<<30)
				if err != nil {
					fail("read %s: %v", streams[k], err)
				}
				versions[k] = uint64(len(got))
			}
			for i := 0; ; i++ {
				k := i % crashStreamsPerWtr
				n := 1 + i%3
				evs := make([]*eventpb.Envelope, n)
				for j := range evs {
					evs[j] = crashEvent(streams[k], versions[k]+1+uint64(j))
				}
				res, err := s.Append(ctx, streams[k], int64(versions[k]), evs)
				if err != nil {
					fail("append %s expected %d: %v", streams[k], versions[k], err)
				}
				versions[k] = res.Version
				line := fmt.Sprintf("ack %s %d %d %d\n", streams[k], res.Version, res.Position, n)
				outMu.Lock()
				_, werr := os.Stdout.WriteString(line) // one write: one line
				outMu.Unlock()
				if werr != nil {
					fail("stdout: %v", werr)
				}
			}
		}()
	}
	time.Sleep(15 * time.Second) // the parent kills us long before
	fail("not killed after 15s")
}

type ack struct {
	stream            string
	version, position uint64
	events            uint64
}

func parseAck(line string) (ack, bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "ack" {
		return ack{}, false
	}
	v, err1 := strconv.ParseUint(f[2], 10, 64)
	p, err2 := strconv.ParseUint(f[3], 10, 64)
	n, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || n == 0 || n > v || n > p {
		return ack{}, false
	}
	return ack{f[1], v, p, n}, true
}

// TestCrash kills a child that appends from 8 goroutines with SIGKILL at a
// random moment, 5 times on the same directory, and checks after each kill
// that the store opens as is, holds every acknowledged append with the right
// payload at the acknowledged version and position, and passes Check.
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		return
	}
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	realDisk(t, dir)
	var acks []ack
	for round := 1; round <= crashRounds; round++ {
		t0 := time.Now()
		got, lines := runCrashChild(t, dir, round)
		acks = append(acks, got...)
		before := len(acks) - len(got)
		t1 := time.Now()
		verifyAcks(t, dir, acks)
		t.Logf("round %d: %d acknowledged appends this round (%d before), %d output lines; child %v, verify %v",
			round, len(got), before, lines, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	}
}

// runCrashChild runs one child until a random moment 50-400 ms after its
// first acknowledgement, kills it, and returns what it acknowledged.
func runCrashChild(t *testing.T, dir string, round int) ([]ack, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var acks []ack
	nLines := 0
	take := func(line string) {
		nLines++
		if a, ok := parseAck(line); ok {
			acks = append(acks, a)
		}
	}
	killed := false
	kill := func() {
		if !killed {
			_ = cmd.Process.Kill() // SIGKILL, to this child's PID only
			killed = true
		}
	}
	defer kill()
	first := time.After(10 * time.Second)
	var fire <-chan time.Time
	delay := time.Duration(50+rand.IntN(351)) * time.Millisecond
	for open := true; open; {
		select {
		case line, ok := <-lines:
			if !ok {
				open = false
				break
			}
			take(line)
			if len(acks) == 1 && fire == nil {
				fire = time.After(delay)
			}
		case <-first:
			if fire == nil {
				kill()
				t.Fatalf("round %d: no acknowledgement within 10s; child stderr: %s", round, stderr.String())
			}
		case <-fire:
			kill()
			fire = nil
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child ended with %v, not by our SIGKILL; stderr: %s", round, err, stderr.String())
	}
	t.Logf("round %d: killed %v after the first ack", round, delay)
	return acks, nLines
}

// verifyAcks reopens the store in dir (no repair step) and checks that
// every acknowledged append is there, then runs Check.
func verifyAcks(t *testing.T, dir string, acks []ack) {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx := context.Background()
	t0 := time.Now()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check after kill: %v", err)
	}
	t.Logf("check of %d events: %v", s.Head(), time.Since(t0))
	all, err := s.ReadAll(ctx, 1, 1<<30)
	if err != nil {
		t.Fatalf("ReadAll after kill: %v", err)
	}
	if uint64(len(all)) != s.Head() {
		t.Fatalf("ReadAll returned %d events, head %d", len(all), s.Head())
	}
	streams := map[string][]*eventpb.Envelope{}
	for _, a := range acks {
		if _, ok := streams[a.stream]; ok {
			continue
		}
		evs, err := s.ReadStream(ctx, a.stream, 1, 1<<30)
		if err != nil {
			t.Fatalf("ReadStream(%s): %v", a.stream, err)
		}
		streams[a.stream] = evs
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].position < acks[j].position })
	for _, a := range acks {
		if a.position > uint64(len(all)) {
			t.Fatalf("acknowledged %s version %d at position %d lost: head is %d", a.stream, a.version, a.position, len(all))
		}
		st := streams[a.stream]
		if a.version > uint64(len(st)) {
			t.Fatalf("acknowledged %s version %d lost: the stream has %d events", a.stream, a.version, len(st))
		}
		for j := uint64(0); j < a.events; j++ {
			v, p := a.version-j, a.position-j
			got := st[v-1]
			want := crashEvent(a.stream, v)
			want.Stream, want.Version, want.Position = a.stream, v, p
			if !equalEnv(got, want) || !equalEnv(all[p-1], want) {
				t.Fatalf("acknowledged %s version %d position %d:\n stream read %v\n global read %v\n want %v",
					a.stream, v, p, got, all[p-1], want)
			}
		}
	}
}

// equalEnv compares what was read with what was written; the hash chain
// (PrevHash, which the expectation leaves empty) is checked by Check.
func equalEnv(got, want *eventpb.Envelope) bool { return storetest.SameEvent(got, want) }

// newestWAL returns the path of the highest-numbered Pebble WAL in dir.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s: %v", dir, err)
	}
	sort.Strings(logs) // fixed-width numbers: lexical order is numeric order
	return logs[len(logs)-1]
}

// appendTornTestEvents appends 10 appends of 1-3 events, runs before (if
// set), closes the store and returns what a read must give.
func appendTornTestEvents(t *testing.T, dir string, before func(*Store)) []*eventpb.Envelope {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var v uint64
	for i := 0; i < 10; i++ {
		n := 1 + i%3
		evs := make([]*eventpb.Envelope, n)
		for j := range evs {
			evs[j] = crashEvent("torn", v+1+uint64(j))
		}
		res, err := s.Append(ctx, "torn", int64(v), evs)
		if err != nil {
			t.Fatal(err)
		}
		v = res.Version
	}
	all, err := s.ReadAll(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(s)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return all
}

// reopenAndCompare opens dir and checks it holds exactly want (plus
// whatever extra it returns), passes Check, and still takes appends.
func reopenAndCompare(t *testing.T, dir string, want []*eventpb.Envelope) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen with a torn WAL tail: %v", err)
	}
	ctx := context.Background()
	got, err := s.ReadAll(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("after reopen: %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if !equalEnv(got[i], want[i]) {
			t.Fatalf("after reopen: event %d is %v, want %v", i, got[i], want[i])
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	last := want[len(want)-1]
	res, err := s.Append(ctx, "torn", int64(last.Version), []*eventpb.Envelope{crashEvent("torn", last.Version+1)})
	if err != nil || res.Version != last.Version+1 || res.Position != last.Position+1 {
		t.Fatalf("append after reopen = %+v, %v; want version %d position %d", res, err, last.Version+1, last.Position+1)
	}
	return s
}

// TestTornTailGarbage: bytes after the last record of the newest WAL (a
// write torn by a crash, or a preallocated zeroed tail) are cut off at Open
// and every acknowledged event stays. Pebble v1.1.5 does this by default for
// the newest WAL (open.go: replayWAL stops at record.IsInvalidRecord when
// strictWALTail is false, and it is false for the last log); older WALs
// must be clean, which holds because a new WAL is only started after the
// previous one was synced and closed.
func TestTornTailGarbage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		garbage func() []byte
	}{
		{"random", func() []byte {
			b := make([]byte, 777)
			for i := range b {
				b[i] = byte(rand.IntN(256))
			}
			return b
		}},
		{"zeros", func() []byte { return make([]byte, 4096) }},
		{"half header", func() []byte { return []byte{0x12, 0x34, 0x56} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			realDisk(t, dir)
			want := appendTornTestEvents(t, dir, nil)
			wal := newestWAL(t, dir)
			fi, err := os.Stat(wal)
			if err != nil || fi.Size() == 0 {
				t.Fatalf("newest WAL %s: size %v, %v; want the appended records in it", wal, fi, err)
			}
			f, err := os.OpenFile(wal, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.garbage()); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			s := reopenAndCompare(t, dir, want)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// And once more: the repaired state is stable.
			s, err = Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if h := s.Head(); h != uint64(len(want))+1 {
				t.Fatalf("head after second reopen %d, want %d", h, len(want)+1)
			}
			if err := s.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTornTailUnsyncedWrite: a write that was never synced (never
// acknowledged) is the last record of the WAL; cutting its last bytes, as a
// power cut mid-write would, loses that record and nothing acknowledged.
func TestTornTailUnsyncedWrite(t *testing.T) {
	dir := t.TempDir()
	realDisk(t, dir)
	// The acknowledged appends and then the unsynced write go to the same
	// (newest) WAL.
	junkKey := []byte("zz-unsynced")
	want := appendTornTestEvents(t, dir, func(s *Store) {
		if err := s.db.Set(junkKey, make([]byte, 2000), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	})
	wal := newestWAL(t, dir)
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 2000 {
		t.Fatalf("newest WAL %s is %d bytes; the unsynced 2000-byte write is not in it", wal, fi.Size())
	}
	// A clean close ends the WAL with an 11-byte EOF trailer (an empty
	// recyclable chunk) after the last record; cutting 100 bytes removes it
	// and the last 89 bytes of the unsynced record, as a crash mid-write
	// would leave it.
	if err := os.Truncate(wal, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	s := reopenAndCompare(t, dir, want)
	defer s.Close()
	if _, closer, err := s.db.Get(junkKey); !errors.Is(err, pebble.ErrNotFound) {
		if closer != nil {
			closer.Close()
		}
		t.Fatalf("the torn unsynced record survived (err %v): the truncation did not hit it", err)
	}
}
