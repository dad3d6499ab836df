// Package calls is the live-calls projection: a fold of call events
// (global order) into the calls that have not ended. The calls API lists
// it, the active-calls metric counts it, and start-up re-activates every
// call in it so that its timers are re-armed (or, for a call that was
// ringing, so that it is ended cleanly).
//
// It is in memory and disposable (ARCHITECTURE.md invariant 6): every start
// rebuilds it from position 1. It folds with the call actor's own pure
// Apply, so the API and the actors cannot disagree on what an event means.
// Apply is called serially (by the node's projections.Fanout); readers are
// concurrent.
package calls

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/projections"
)

// Live is the live-calls projection.
type Live struct {
	mu    sync.RWMutex
	calls map[string]*call.State
	projections.Cursor
}

// New returns an empty projection.
func New() *Live { return &Live{calls: map[string]*call.State{}} }

// Apply folds one event; events of other streams only advance the
// position. An event that does not fold (a stream that contradicts itself)
// drops that call from the projection with an error.
func (l *Live) Apply(env *eventpb.Envelope) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.Advance("calls", env); err != nil {
		return err
	}
	id, ok := strings.CutPrefix(env.GetStream(), "call-")
	if !ok {
		return nil
	}
	msg, err := events.Unwrap(env)
	if errors.Is(err, events.ErrUnknownType) {
		l.Skip()
		return nil
	}
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	st := l.calls[id]
	if st == nil {
		if _, started := msg.(*eventpb.CallStarted); !started {
			return nil // an ended call's late event (a leg answering after the end)
		}
		st = call.NewState(id)
		l.calls[id] = st
	}
	if err := st.Apply(env.GetVersion(), env.GetTime().AsTime(), msg); err != nil {
		delete(l.calls, id)
		return fmt.Errorf("calls: %w", err)
	}
	if st.Phase.Over() {
		delete(l.calls, id)
	}
	return nil
}

// CatchUp folds everything up to the store's head at call time.
func (l *Live) CatchUp(ctx context.Context, st events.Store) error {
	return projections.CatchUp(ctx, st, "calls", l.Position, l.Apply)
}

// Count is the number of live calls.
func (l *Live) Count() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.calls)
}

// IDs lists the live calls' ids.
func (l *Live) IDs() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ids := make([]string, 0, len(l.calls))
	for id := range l.calls {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Leg is one B leg in a listing.
type Leg struct {
	Leg    uint32 `json:"leg"`
	Target string `json:"target"`
	State  string `json:"state"` // trying, ringing, answered, failed
	Code   uint32 `json:"code,omitempty"`
}

// Call is one live call in a listing.
type Call struct {
	ID         string     `json:"id"`
	Caller     string     `json:"caller"`
	Callee     string     `json:"callee"`
	State      string     `json:"state"`
	StartedAt  time.Time  `json:"started_at"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	Held       bool       `json:"held"`
	Legs       []Leg      `json:"legs"`
}

// List returns the live calls, oldest first.
func (l *Live) List() []Call {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]Call, 0, len(l.calls))
	for id, st := range l.calls {
		c := Call{ID: id, Caller: st.Started.GetCaller(), Callee: st.Started.GetCallee(),
			State: st.StateName(), StartedAt: st.StartedAt.UTC(), Held: st.Held()}
		if !st.AnswerAt.IsZero() {
			t := st.AnswerAt.UTC()
			c.AnsweredAt = &t
		}
		for _, leg := range st.Legs {
			lg := Leg{Leg: leg.N, Target: leg.Attempt.GetRequestUri(), State: "trying"}
			switch {
			case leg.Answered != nil:
				lg.State, lg.Code = "answered", leg.Answered.Code
			case leg.Failed != nil:
				lg.State, lg.Code = "failed", leg.Failed.Code
			case leg.Progress >= 180:
				lg.State, lg.Code = "ringing", leg.Progress
			}
			c.Legs = append(c.Legs, lg)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
