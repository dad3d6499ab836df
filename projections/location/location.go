// Package location is the location index: a projection of registration
// events (global order) into AOR -> current bindings. The registrations API
// reads it, calls will look callees up in it, and start-up uses it to
// re-activate every AOR that still has bindings (so their expiry timers are
// re-armed).
//
// It is in memory and disposable (ARCHITECTURE.md invariant 6): every start
// rebuilds it from position 1. The fold reuses the registration aggregate's
// pure Apply, so the index and the actors cannot disagree on what an event
// means. Apply is called serially (by the node's projections.Fanout);
// readers are concurrent.
package location

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/projections"
)

// Index is the location index.
type Index struct {
	mu   sync.RWMutex // guards aors
	aors map[string]*registrar.State

	projections.Cursor
}

// New returns an empty index.
func New() *Index { return &Index{aors: map[string]*registrar.State{}} }

// Entry is one binding of one AOR, for listings.
type Entry struct {
	AOR string
	registrar.Binding
}

// Apply folds one event. Only registration streams matter; other events
// just advance the position. Called serially.
func (ix *Index) Apply(env *eventpb.Envelope) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.Advance("location", env); err != nil {
		return err
	}
	aor, ok := strings.CutPrefix(env.GetStream(), "reg-")
	if !ok {
		return nil
	}
	msg, err := events.Unwrap(env)
	if errors.Is(err, events.ErrUnknownType) {
		ix.Skip()
		return nil
	}
	if err != nil {
		return fmt.Errorf("location: %w", err)
	}
	st := ix.aors[aor]
	if st == nil {
		st = &registrar.State{AOR: aor}
		ix.aors[aor] = st
	}
	st.Apply(msg)
	st.Version = env.GetVersion()
	if len(st.Binds) == 0 {
		delete(ix.aors, aor)
	}
	return nil
}

// CatchUp folds everything up to the store's head at call time.
func (ix *Index) CatchUp(ctx context.Context, st events.Store) error {
	return projections.CatchUp(ctx, st, "location", ix.Position, ix.Apply)
}

// Lookup returns aor's bindings active at now, highest q first.
func (ix *Index) Lookup(aor string, now time.Time) []registrar.Binding {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	st := ix.aors[aor]
	if st == nil {
		return nil
	}
	out := st.Active(now)
	sort.SliceStable(out, func(i, j int) bool { return q(out[i]) > q(out[j]) })
	return out
}

func q(b registrar.Binding) int32 {
	if b.QMilli < 0 {
		return 1000 // no q means the highest preference
	}
	return b.QMilli
}

// Entries lists every binding active at now, by AOR then contact.
func (ix *Index) Entries(now time.Time) []Entry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Entry
	for aor, st := range ix.aors {
		for _, b := range st.Active(now) {
			out = append(out, Entry{AOR: aor, Binding: b})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].AOR != out[j].AOR {
			return out[i].AOR < out[j].AOR
		}
		return out[i].Contact < out[j].Contact
	})
	return out
}

// Active counts bindings active at now.
func (ix *Index) Active(now time.Time) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, st := range ix.aors {
		for _, b := range st.Binds {
			if b.ExpiresAt.After(now) {
				n++
			}
		}
	}
	return n
}

// AORs returns every AOR that holds bindings in the index, expired or not:
// the ones whose actors must run to expire or keep them.
func (ix *Index) AORs() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]string, 0, len(ix.aors))
	for aor := range ix.aors {
		out = append(out, aor)
	}
	sort.Strings(out)
	return out
}
