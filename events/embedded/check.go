package embedded

import (
	"context"
	"fmt"

	"github.com/tandemswitch/tandem/events"
)

// Check verifies the whole store against a snapshot, as Verify does (see
// there for what is checked, including the hash chain and the head
// anchor), and returns the first problem as an error wrapping
// events.ErrCorrupt with every value involved. Check reads everything: it is
// for tools and tests, not for the hot path. Appends may run meanwhile.
func (s *Store) Check(ctx context.Context) error {
	rep, err := s.Verify(ctx)
	if err != nil {
		return err
	}
	if p := rep.FirstProblem; p != nil {
		return fmt.Errorf("%w: check: %s", events.ErrCorrupt, p.Message)
	}
	return nil
}
