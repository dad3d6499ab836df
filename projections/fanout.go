package projections

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Member is an in-memory projection folded by a Fanout: rebuilt from
// position 1 at every start, it keeps (and checks) its own position.
type Member struct {
	Name  string
	Apply func(*eventpb.Envelope) error
	// Critical members stop the fan-out when their Apply fails (the node
	// cannot serve without them); any other member is dropped from it and
	// reported to OnError while the rest go on.
	Critical bool
}

// Fanout folds the global event order into several in-memory projections
// with one read of the log: one catch-up at start, then one subscription,
// instead of one of each per projection (every subscriber costs the store
// a wake-up and a read per event). Apply is called serially.
type Fanout struct {
	Members []Member
	// OnError is told when a member that is not critical fails and is
	// dropped. Optional.
	OnError func(name string, err error)

	dropped  []bool
	position atomic.Uint64
}

// Apply folds one event into every member still in the fan-out. It fails
// only when a critical member fails.
func (f *Fanout) Apply(env *eventpb.Envelope) error {
	if f.dropped == nil {
		f.dropped = make([]bool, len(f.Members))
	}
	for i, m := range f.Members {
		if f.dropped[i] {
			continue
		}
		if err := m.Apply(env); err != nil {
			if m.Critical {
				return fmt.Errorf("%s projection: %w", m.Name, err)
			}
			f.dropped[i] = true
			if f.OnError != nil {
				f.OnError(m.Name, err)
			}
		}
	}
	f.position.Store(env.GetPosition())
	return nil
}

// Position is the last position folded.
func (f *Fanout) Position() uint64 { return f.position.Load() }

// CatchUp folds everything up to the store's head at call time.
func (f *Fanout) CatchUp(ctx context.Context, st events.Store) error {
	return CatchUp(ctx, st, "projections", f.Position, f.Apply)
}

// Run follows the store from the current position until ctx ends or a
// critical member fails.
func (f *Fanout) Run(ctx context.Context, st events.Store) error {
	return st.Subscribe(ctx, f.Position()+1, f.Apply)
}
