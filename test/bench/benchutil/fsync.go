package benchutil

import (
	"bufio"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Fsyncs is one reading of Tandem's tandem_store_fsync_duration_seconds
// histogram: the event store's write-ahead-log fsyncs so far, cumulative
// per bucket bound (seconds). A step's two readings tell how many fsyncs
// it made and how slow the slowest was, to tell a disk that stalled from
// a CPU that was full.
type Fsyncs struct {
	Count  uint64
	Sum    float64   // seconds
	bounds []float64 // ascending
	cum    []uint64  // cumulative count at each bound
}

const fsyncMetric = "tandem_store_fsync_duration_seconds"

// ParseFsyncs reads the histogram out of a Prometheus text exposition
// (GET /metrics); ok is false when it is not there.
func ParseFsyncs(text string) (f Fsyncs, ok bool) {
	type bucket struct {
		le float64
		n  uint64
	}
	var bs []bucket
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, fsyncMetric+"_sum "):
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, fsyncMetric+"_sum "), 64)
			if err != nil {
				return f, false
			}
			f.Sum = v
		case strings.HasPrefix(line, fsyncMetric+"_count "):
			n, err := strconv.ParseUint(strings.TrimPrefix(line, fsyncMetric+"_count "), 10, 64)
			if err != nil {
				return f, false
			}
			f.Count, ok = n, true
		case strings.HasPrefix(line, fsyncMetric+`_bucket{le="`):
			rest := strings.TrimPrefix(line, fsyncMetric+`_bucket{le="`)
			le, count, found := strings.Cut(rest, `"} `)
			if !found || le == "+Inf" {
				continue
			}
			b, err1 := strconv.ParseFloat(le, 64)
			n, err2 := strconv.ParseUint(count, 10, 64)
			if err1 != nil || err2 != nil {
				return f, false
			}
			bs = append(bs, bucket{b, n})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	for _, b := range bs {
		f.bounds = append(f.bounds, b.le)
		f.cum = append(f.cum, b.n)
	}
	return f, ok
}

// Since returns how many fsyncs happened between prev and f, and the
// bound of the bucket that holds the slowest of them (+Inf when it was
// beyond the last bound, 0 when there were none).
func (f Fsyncs) Since(prev Fsyncs) (n uint64, slowest float64) {
	n = f.Count - prev.Count
	if n == 0 || f.Count < prev.Count {
		return 0, 0
	}
	for i, le := range f.bounds {
		before := uint64(0)
		if i < len(prev.cum) && prev.bounds[i] == le {
			before = prev.cum[i]
		}
		if f.cum[i]-before == n {
			return n, le
		}
	}
	return n, math.Inf(1)
}

// FormatSlowest renders Since's slowest bound for a table column: "<=3.2ms".
func FormatSlowest(n uint64, slowest float64) string {
	switch {
	case n == 0:
		return "-"
	case math.IsInf(slowest, 1):
		return ">10s"
	}
	return "<=" + formatSeconds(slowest)
}

// formatSeconds renders a duration in seconds with 3 significant digits,
// in ms below a second.
func formatSeconds(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.3gms", v*1000)
	}
	return fmt.Sprintf("%.3gs", v)
}

// FsyncColumn reads the fsync histogram from metrics (a server's GET
// /metrics; nil for a server without one) at a step's start, and returns
// what renders the step's column at its end: the fsyncs in between, their
// mean and the slowest one's bucket ("1234 0.41ms <=3.2ms"), or "-" when
// there is no reading.
func FsyncColumn(metrics func() (string, error)) func() string {
	read := func() (Fsyncs, bool) {
		if metrics == nil {
			return Fsyncs{}, false
		}
		text, err := metrics()
		if err != nil {
			return Fsyncs{}, false
		}
		return ParseFsyncs(text)
	}
	f0, ok0 := read()
	return func() string {
		f1, ok1 := read()
		if !ok0 || !ok1 {
			return "-"
		}
		n, slowest := f1.Since(f0)
		if n == 0 {
			return "0"
		}
		return fmt.Sprintf("%d %s %s", n, formatSeconds((f1.Sum-f0.Sum)/float64(n)), FormatSlowest(n, slowest))
	}
}
