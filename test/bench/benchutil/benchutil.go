// Package benchutil holds the small helpers the benchmark commands under
// test/bench share: CPU percentages, output trimming, bounded commands.
package benchutil

import (
	"context"
	"os"
	"os/exec"
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
