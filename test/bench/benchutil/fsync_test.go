package benchutil

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func exposition(count int, cum ...int) string {
	bounds := []string{"0.0001", "0.0002", "0.0004", "0.1", "10"}
	s := "# TYPE tandem_store_fsync_duration_seconds histogram\n"
	for i, b := range bounds {
		s += "tandem_store_fsync_duration_seconds_bucket{le=\"" + b + "\"} " + strconv.Itoa(cum[i]) + "\n"
	}
	s += "tandem_store_fsync_duration_seconds_bucket{le=\"+Inf\"} " + strconv.Itoa(count) + "\n"
	s += "tandem_store_fsync_duration_seconds_sum 1.5\ntandem_store_fsync_duration_seconds_count " + strconv.Itoa(count) + "\n"
	return "tandem_store_append_duration_seconds_count 9\n" + s
}

func TestFsyncsSince(t *testing.T) {
	before, ok := ParseFsyncs(exposition(10, 2, 8, 10, 10, 10))
	if !ok || before.Count != 10 {
		t.Fatalf("parse: %v %+v", ok, before)
	}
	cases := []struct {
		after   string
		n       uint64
		slowest float64
		shown   string
	}{
		{exposition(10, 2, 8, 10, 10, 10), 0, 0, "-"},
		{exposition(14, 3, 10, 14, 14, 14), 4, 0.0004, "<=0.4ms"}, // two of the four over 200 us
		{exposition(15, 2, 8, 10, 14, 15), 5, 10, "<=10s"},
		{exposition(16, 2, 8, 10, 14, 15), 6, math.Inf(1), ">10s"},
	}
	for _, c := range cases {
		after, ok := ParseFsyncs(c.after)
		if !ok {
			t.Fatal("parse")
		}
		n, slowest := after.Since(before)
		if n != c.n || slowest != c.slowest || FormatSlowest(n, slowest) != c.shown {
			t.Errorf("got %d, %g (%s), want %d, %g (%s)", n, slowest, FormatSlowest(n, slowest), c.n, c.slowest, c.shown)
		}
	}
	if _, ok := ParseFsyncs("kamailio has none\n"); ok {
		t.Error("a text without the histogram parsed")
	}
}

func TestFsyncColumn(t *testing.T) {
	texts := []string{exposition(10, 2, 8, 10, 10, 10), exposition(14, 3, 10, 14, 14, 14)}
	texts[1] = strings.Replace(texts[1], "_sum 1.5", "_sum 1.501", 1) // 4 fsyncs, 1 ms in all
	metrics := func() (string, error) { s := texts[0]; texts = texts[1:]; return s, nil }
	if got := FsyncColumn(metrics)(); got != "4 0.25ms <=0.4ms" {
		t.Errorf("column %q, want \"4 0.25ms <=0.4ms\"", got)
	}
	if got := FsyncColumn(nil)(); got != "-" {
		t.Errorf("without metrics %q, want \"-\"", got)
	}
}
