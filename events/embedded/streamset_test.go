package embedded

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// The set never forgets a name (no false negatives, across growth) and
// rarely claims one it never saw.
func TestStreamSetNoFalseNegatives(t *testing.T) {
	s := newStreamSet(1024)
	const n = 200_000
	for i := 0; i < n; i++ {
		s.add(fmt.Sprintf("call-%d", i))
	}
	for i := 0; i < n; i++ {
		if !s.mayContain(fmt.Sprintf("call-%d", i)) {
			t.Fatalf("call-%d forgotten", i)
		}
	}
	fp := 0
	for i := 0; i < n; i++ {
		if s.mayContain(fmt.Sprintf("other-%d", i)) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.05 {
		t.Fatalf("false positive rate %.3f", rate)
	}
	if len(s.filters) < 2 {
		t.Fatalf("%d filters after %d names from a capacity of 1024: it should have grown", len(s.filters), n)
	}
}

// After a reopen the set is rebuilt from the index: a stream written
// before is not taken for new (an append expecting "no stream" conflicts).
func TestStreamsKnownAfterReopen(t *testing.T) {
	dir := t.TempDir()
	env := func() []*eventpb.Envelope {
		e, _ := events.Wrap(&eventpb.CallAnswered{Leg: 1}, time.Now(), "n1", &eventpb.Cause{})
		return []*eventpb.Envelope{e}
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := s.Append(context.Background(), fmt.Sprintf("call-%d", i), events.NoStream, env()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(context.Background(), "call-7", events.NoStream, env()); !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("second create of call-7: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 50; i++ {
		if _, err := s.Append(context.Background(), fmt.Sprintf("call-%d", i), events.NoStream, env()); !errors.Is(err, events.ErrVersionConflict) {
			t.Fatalf("call-%d after reopen: %v", i, err)
		}
	}
	if _, err := s.Append(context.Background(), "call-new", events.NoStream, env()); err != nil {
		t.Fatal(err)
	}
}
