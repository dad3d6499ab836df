package sipstatus

import (
	"strconv"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []int{-1, 0, 99, 100, 180, 200, 487, 699, 700, 1000} {
		if got, want := Text(c), strconv.Itoa(c); got != want {
			t.Errorf("Text(%d) = %q, want %q", c, got, want)
		}
	}
}

func TestTextDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Text(486) }); n != 0 {
		t.Errorf("Text(486) allocates %v times", n)
	}
}
