// Package benchutil holds the small helpers the benchmark commands under
// test/bench share: CPU percentages, output trimming, bounded commands.
package benchutil

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pct is cpu as a percentage of one core over wall.
func Pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / wall.Seconds()
}

// Indent indents every line of s (cut to 200 characters) for a report.
func Indent(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		if len(lines[i]) > 200 {
			lines[i] = lines[i][:200] + "..."
		}
		lines[i] = "     " + lines[i]
	}
	return strings.Join(lines, "\n")
}

// FirstLine is the first line of s, trimmed.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// RunOut runs a short command (bounded to 10 s) and returns its output.
func RunOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// ReadTrim reads a small file (a /proc value) and trims it; "" on error.
func ReadTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// ProfileStep starts fetching a CPU profile of about seconds-1 seconds from
// url (a server's /debug/pprof/profile) into dir/name.pprof, and returns
// what waits for it, and halfway through the step saves a goroutine dump
// (dir/name.goroutines.txt); with an empty url it does nothing. Failures are
// printed, not fatal: the step's figures stand without a profile.
func ProfileStep(url, dir, name string, seconds int) func() {
	if url == "" {
		return func() {}
	}
	// A profile left by an earlier attempt at the same step must not pass
	// for this one's if this one's fetch fails.
	_ = os.Remove(filepath.Join(dir, name+".pprof"))
	done := make(chan struct{}, 2)
	go func() {
		// Halfway through the step, what every goroutine waits on.
		defer func() { done <- struct{}{} }()
		time.Sleep(time.Duration(seconds) * time.Second / 2)
		res, err := http.Get(strings.TrimSuffix(url, "profile") + "goroutine?debug=1")
		if err != nil {
			fmt.Printf("   goroutines: %v\n", err)
			return
		}
		defer res.Body.Close()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return
		}
		if f, err := os.Create(filepath.Join(dir, name+".goroutines.txt")); err == nil {
			_, _ = io.Copy(f, res.Body)
			f.Close()
		}
		// And what the heap holds at that moment, and who allocated it
		// (gc=1: a collection first, so that in-use is what is live now
		// rather than at the last collection, which at GOGC=400 can be
		// seconds old).
		heap, err := http.Get(strings.TrimSuffix(url, "profile") + "heap?gc=1")
		if err != nil {
			fmt.Printf("   heap: %v\n", err)
			return
		}
		defer heap.Body.Close()
		if f, err := os.Create(filepath.Join(dir, name+".heap.pprof")); err == nil {
			_, _ = io.Copy(f, heap.Body)
			f.Close()
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		res, err := http.Get(fmt.Sprintf("%s?seconds=%d", url, max(1, seconds-1)))
		if err != nil {
			fmt.Printf("   profile: %v\n", err)
			return
		}
		defer res.Body.Close()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Printf("   profile: %v\n", err)
			return
		}
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			fmt.Printf("   profile: %v\n", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, res.Body); err != nil {
			fmt.Printf("   profile: %v\n", err)
		}
	}()
	return func() { <-done; <-done }
}
