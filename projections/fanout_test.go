package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

func appendN(t *testing.T, st events.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		env, err := events.Wrap(&eventpb.CallAnswered{Leg: 1}, time.Unix(0, 0), "n1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(context.Background(), "s", events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			t.Fatal(err)
		}
	}
}

// One read feeds every member; a member that is not critical is dropped
// at its first failure (and reported) while the others go on; a critical
// member's failure stops the fan-out.
func TestFanout(t *testing.T) {
	st := memstore.New()
	appendN(t, st, 5)
	var a, b, c []uint64
	var reported []string
	f := &Fanout{
		Members: []Member{
			{Name: "a", Critical: true, Apply: func(e *eventpb.Envelope) error { a = append(a, e.GetPosition()); return nil }},
			{Name: "b", Apply: func(e *eventpb.Envelope) error {
				if e.GetPosition() == 3 {
					return errors.New("b breaks at 3")
				}
				b = append(b, e.GetPosition())
				return nil
			}},
			{Name: "c", Critical: true, Apply: func(e *eventpb.Envelope) error {
				if e.GetPosition() == 7 {
					return errors.New("c breaks at 7")
				}
				c = append(c, e.GetPosition())
				return nil
			}},
		},
		OnError: func(name string, err error) { reported = append(reported, name+": "+err.Error()) },
	}
	if err := f.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if f.Position() != 5 || len(a) != 5 || len(c) != 5 || len(b) != 2 {
		t.Fatalf("position %d, a %v, b %v, c %v", f.Position(), a, b, c)
	}
	if len(reported) != 1 || reported[0] != "b: b breaks at 3" {
		t.Fatalf("reported %v", reported)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, st) }()
	appendN(t, st, 3)
	err := <-done
	if err == nil || err.Error() != "c projection: c breaks at 7" {
		t.Fatalf("Run: %v", err)
	}
	if len(a) != 7 || len(b) != 2 || len(c) != 6 || f.Position() != 6 {
		t.Fatalf("after the live events: position %d, a %v, b %v, c %v", f.Position(), a, b, c)
	}
}
