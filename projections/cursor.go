package projections

import (
	"fmt"
	"sync/atomic"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Cursor is an in-memory projection's place in the global order and its
// count of skipped events: what every such projection keeps, embedded in
// it. Advance is called serially (from Apply); Position and Skipped may be
// read concurrently.
type Cursor struct {
	position atomic.Uint64
	skipped  atomic.Uint64
}

// Advance moves the cursor to env's position, or fails naming the gap when
// env does not follow the last event folded (name is the projection's).
func (c *Cursor) Advance(name string, env *eventpb.Envelope) error {
	if last := c.position.Load(); env.GetPosition() != last+1 {
		return fmt.Errorf("%s: gap: got position %d after %d", name, env.GetPosition(), last)
	}
	c.position.Store(env.GetPosition())
	return nil
}

// Skip counts an event of a type this binary does not know.
func (c *Cursor) Skip() { c.skipped.Add(1) }

// Position is the last folded global position.
func (c *Cursor) Position() uint64 { return c.position.Load() }

// Skipped counts events of types this binary does not know.
func (c *Cursor) Skipped() uint64 { return c.skipped.Load() }
