// Command storebench measures the embedded event store's durable append
// rate against the raw fsync rate of the same disk.
//
//	go run ./test/bench/storebench [-dir DIR] [-duration 3s] [-writers 64]
//
// Phases, each for -duration:
//
//	fsync       a loop of 4 KiB append-write + fsync (f.Sync) into a file in
//	            the data directory: what one durable write costs on this disk
//	writers=1   durable single-event Appends (~200-byte envelopes) from one
//	            writer
//	writers=N   the same from N concurrent writers, each on its own stream;
//	            the store's group commit shares fsyncs between them
//	fsync       the raw loop again: a shared disk's speed drifts, so the ratio
//	            divides by the mean of the two raw runs
//
// For each it prints operations per second and the p50 and p99 latency. The
// last line is "ratio=<N-writer events/s / raw fsync/s>": how many durable
// appends the store completes in the time the disk takes for one write+fsync;
// the goal is >= 20.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
)

func main() {
	dir := flag.String("dir", "", "directory to create the benchmark's data directory in (default: os.TempDir()); the data directory is removed at the end")
	duration := flag.Duration("duration", 3*time.Second, "duration of each phase")
	writers := flag.Int("writers", 64, "concurrent writers of the last phase")
	flag.Parse()
	if err := run(*dir, *duration, *writers); err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(1)
	}
}

func run(parent string, d time.Duration, writers int) error {
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "storebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("data directory %s on %s\n", dir, describeFS(dir))
	fmt.Printf("GOMAXPROCS=%d, %v per phase\n", runtime.GOMAXPROCS(0), d)

	raw, err := rawFsync(filepath.Join(dir, "fsync.bin"), d)
	if err != nil {
		return fmt.Errorf("raw fsync: %w", err)
	}
	raw.print("raw 4KiB write+fsync")
	if err := os.Remove(filepath.Join(dir, "fsync.bin")); err != nil {
		return err
	}

	one, err := appends(filepath.Join(dir, "w1"), d, 1)
	if err != nil {
		return fmt.Errorf("writers=1: %w", err)
	}
	one.print("append writers=1")

	many, err := appends(filepath.Join(dir, fmt.Sprintf("w%d", writers)), d, writers)
	if err != nil {
		return fmt.Errorf("writers=%d: %w", writers, err)
	}
	many.print(fmt.Sprintf("append writers=%d", writers))

	raw2, err := rawFsync(filepath.Join(dir, "fsync2.bin"), d)
	if err != nil {
		return fmt.Errorf("raw fsync: %w", err)
	}
	raw2.print("raw 4KiB write+fsync")
	rawRate := (raw.rate() + raw2.rate()) / 2

	fmt.Printf("ratio: %d-writer durable appends per second (%.0f) / raw 4KiB write+fsync per second (%.0f, mean of both runs); goal >= 20\n",
		writers, many.rate(), rawRate)
	fmt.Printf("ratio=%.2f\n", many.rate()/rawRate)
	return nil
}

// result is one phase's outcome.
type result struct {
	ops     int
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(p*float64(len(r.lat)-1))]
}

func (r result) print(name string) {
	fmt.Printf("%-22s %9.0f ops/s  p50 %-10v p99 %-10v (%d ops in %v)\n",
		name, r.rate(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond),
		r.ops, r.elapsed.Round(time.Millisecond))
}

// rawFsync appends 4 KiB blocks to path, fsyncing after each, for d. The
// file wraps to offset 0 after 64 MiB.
func rawFsync(path string, d time.Duration) (result, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i)
	}
	var lat []time.Duration
	var off int64
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		if _, err := f.WriteAt(block, off); err != nil {
			return result{}, err
		}
		if err := f.Sync(); err != nil {
			return result{}, err
		}
		lat = append(lat, time.Since(t0))
		if off += int64(len(block)); off >= 64<<20 {
			off = 0
		}
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	return result{ops: len(lat), elapsed: elapsed, lat: lat}, nil
}

// appends runs writers goroutines appending one event per Append, each on
// its own stream, for d, on a fresh store in dir.
func appends(dir string, d time.Duration, writers int) (result, error) {
	s, err := embedded.Open(embedded.Options{Dir: dir})
	if err != nil {
		return result{}, err
	}
	defer s.Close()
	ctx := context.Background()
	lats := make([][]time.Duration, writers)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := envelope(w)
			evs := []*eventpb.Envelope{env}
			stream := fmt.Sprintf("reg-sip:user%d@example.test", w)
			for v := int64(0); time.Now().Before(deadline); v++ {
				t0 := time.Now()
				if _, err := s.Append(ctx, stream, v, evs); err != nil {
					errs <- err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	var lat []time.Duration
	for _, l := range lats {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	if err := s.Check(ctx); err != nil {
		return result{}, err
	}
	return result{ops: len(lat), elapsed: elapsed, lat: lat}, nil
}

// envelope is a realistic registration event of about 200 bytes as stored.
func envelope(i int) *eventpb.Envelope {
	now := time.Now().UTC()
	callID := fmt.Sprintf("a84b4c76e66710-%d@pc33.example.test", i)
	env, err := events.Wrap(&eventpb.BindingAdded{
		Aor: fmt.Sprintf("sip:user%d@example.test", i),
		Binding: &eventpb.Binding{
			Contact:   fmt.Sprintf("sip:user%d@192.0.2.4:5060;transport=udp", i),
			ExpiresAt: timestamppb.New(now.Add(time.Hour)),
			QMilli:    -1,
			CallId:    callID,
			Cseq:      314159,
			UserAgent: "baresip v3.10.1",
			Source:    "udp:192.0.2.4:5060",
		},
	}, now, "node-1", &eventpb.Cause{CallId: callID, Cseq: 314159, Method: "REGISTER", Branch: "z9hG4bK776asdhds", Source: "udp:192.0.2.4:5060"})
	if err != nil {
		panic(err)
	}
	return env
}

// describeFS names the device and filesystem type of the mount holding
// dir, from /proc/self/mountinfo (Linux); elsewhere it says so.
func describeFS(dir string) string {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		abs = dir
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "an unknown filesystem (" + err.Error() + ")"
	}
	defer f.Close()
	best, desc := "", "an unknown filesystem"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		mp := fields[4]
		if !within(abs, mp) || len(mp) < len(best) {
			continue
		}
		best = mp
		desc = fmt.Sprintf("%s (%s, mounted at %s)", fields[sep+2], fields[sep+1], mp)
		if fields[sep+1] == "tmpfs" || fields[sep+1] == "ramfs" {
			desc += " WARNING: memory-backed, fsync costs nothing here"
		}
	}
	return desc
}

func within(path, mount string) bool {
	if mount == "/" {
		return true
	}
	return path == mount || strings.HasPrefix(path, mount+"/")
}
