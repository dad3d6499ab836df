// Package traffictest builds traffic projections from hand-written call
// histories, for the tests of the projection's readers (the stats API,
// the metrics).
package traffictest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/projections/traffic"
)

// Event is one event of a call history.
type Event struct {
	At   time.Time
	Call string // the call id: the event goes to stream "call-<Call>"
	Msg  proto.Message
}

// Folded appends evs to a memory store in the order given and returns a
// traffic projection caught up on them.
func Folded(t testing.TB, evs ...Event) *traffic.Projection {
	t.Helper()
	st := memstore.New()
	for _, e := range evs {
		env, err := events.Wrap(e.Msg, e.At, "n1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(context.Background(), "call-"+e.Call, events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			t.Fatal(err)
		}
	}
	p := traffic.New()
	if err := p.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return p
}
