package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
)

// Pebble's WAL fsync histogram (nanoseconds, 100 bounds) comes out in
// seconds on a subset of its bounds, with exact cumulative counts.
func TestStoreFsyncInSeconds(t *testing.T) {
	s := New(func() float64 { return 0 })
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Buckets: pebble.FsyncLatencyBuckets})
	for _, d := range []time.Duration{300 * time.Microsecond, 2 * time.Millisecond, 150 * time.Millisecond} {
		h.Observe(float64(d))
	}
	s.StoreFsync(h)
	s.StoreFsync(nil) // a read-only store has none: nothing, and no panic
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "tandem_store_fsync_duration_seconds" {
			continue
		}
		got := f.GetMetric()[0].GetHistogram()
		if got.GetSampleCount() != 3 || math.Abs(got.GetSampleSum()-0.1523) > 1e-9 {
			t.Fatalf("count %d sum %g, want 3 and 0.1523", got.GetSampleCount(), got.GetSampleSum())
		}
		bs := got.GetBucket()
		if len(bs) < 10 || len(bs) > 30 {
			t.Fatalf("%d buckets, want a subset of Pebble's 100", len(bs))
		}
		prev := 0.0
		for _, b := range bs {
			le, n := b.GetUpperBound(), b.GetCumulativeCount()
			var want uint64
			for _, v := range []float64{0.0003, 0.002, 0.15} {
				if v <= le {
					want++
				}
			}
			if n != want {
				t.Errorf("le=%g: %d, want %d", le, n, want)
			}
			if le < 2*prev && b != bs[len(bs)-1] {
				t.Errorf("bound %g less than twice the one before (%g)", le, prev)
			}
			prev = le
		}
		if last := bs[len(bs)-1].GetUpperBound(); last != 10 {
			t.Errorf("last bound %g s, want Pebble's 10 s", last)
		}
		return
	}
	t.Fatal("tandem_store_fsync_duration_seconds not exported")
}

// Refused calls are counted by the limit they met.
func TestCallsRefusedByLimit(t *testing.T) {
	s := New(func() float64 { return 0 })
	s.CallRefused("rate")
	s.CallRefused("rate")
	s.CallRefused("active")
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "tandem_calls_refused_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["rate"] != 2 || got["active"] != 1 || len(got) != 2 {
		t.Fatalf("tandem_calls_refused_total %v, want rate 2 and active 1", got)
	}
}
