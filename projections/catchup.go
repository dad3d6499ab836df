// Package projections holds what every projection shares; each projection
// (location, calls, ...) is its own package below it.
package projections

import (
	"context"
	"fmt"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// CatchUp folds, with apply, every event after position() up to the
// store's head at call time. name goes into errors.
func CatchUp(ctx context.Context, st events.Store, name string, position func() uint64, apply func(*eventpb.Envelope) error) error {
	head := st.Head()
	for position() < head {
		batch, err := st.ReadAll(ctx, position()+1, 1024)
		if err != nil {
			return fmt.Errorf("%s: catch up: %w", name, err)
		}
		if len(batch) == 0 {
			return fmt.Errorf("%s: store head %d but nothing to read after %d", name, head, position())
		}
		for _, env := range batch {
			if err := apply(env); err != nil {
				return err
			}
		}
	}
	return nil
}
