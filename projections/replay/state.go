package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Snapshot is what was true at a moment: the registrations bound and the
// calls up. The JSON keys are part of the output format.
type Snapshot struct {
	At            string         `json:"at"`
	Registrations []Registration `json:"registrations"` // by AOR, then contact
	Calls         []Call         `json:"calls"`         // by since, then id
	// Skipped counts events left out of the fold: of a type this binary
	// does not know, or that do not apply to their stream.
	Skipped uint64 `json:"skipped_events"`
}

// Registration is one binding in force at the snapshot's moment.
type Registration struct {
	AOR       string `json:"aor"`
	Contact   string `json:"contact"`
	ExpiresAt string `json:"expires_at"`
	UserAgent string `json:"user_agent"`
	Source    string `json:"source"`
}

// Call is one call up at the snapshot's moment.
type Call struct {
	ID     string `json:"id"`
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// State: trying, ringing, answered or held (answered, on hold).
	State string `json:"state"`
	// Since: when it was answered, or when it started if it was not.
	Since string `json:"since"`
}

// StateAt folds the global order of st into the registrations that were
// bound and the calls that were up at at.
//
// Envelope times are each writer's clock, so they need not grow with the
// position across nodes: every event is looked at, none is taken to end the
// search. Each stream is folded, with the actors' Apply, up to its last
// event whose time is not after at: every such event counts, and so do the
// events before it in its stream even if their writer's clock was ahead
// (the stream's order says they happened first, and the fold needs them).
func StateAt(ctx context.Context, st events.Store, at time.Time) (*Snapshot, error) {
	p := &pointInTime{st: st, at: at, streams: map[string]*fold{}, broken: map[string]bool{}}
	head := st.Head()
	for from := uint64(1); from <= head; {
		batch, err := st.ReadAll(ctx, from, readBatch)
		if err != nil {
			return nil, fmt.Errorf("replay: read from position %d: %w", from, err)
		}
		if len(batch) == 0 {
			return nil, fmt.Errorf("replay: store head %d but nothing to read from position %d", head, from)
		}
		for _, env := range batch {
			if err := p.event(ctx, env); err != nil {
				return nil, err
			}
		}
		from = batch[len(batch)-1].GetPosition() + 1
	}
	return p.snapshot(), nil
}

// pointInTime is the fold of StateAt. Calls leave it when they are over
// (there are many); registrations stay (one per AOR).
type pointInTime struct {
	st      events.Store
	at      time.Time
	streams map[string]*fold
	broken  map[string]bool // streams that do not fold
	skipped uint64
}

func (p *pointInTime) event(ctx context.Context, env *eventpb.Envelope) error {
	if env.GetTime().AsTime().After(p.at) {
		return nil
	}
	name := env.GetStream()
	if p.broken[name] {
		return nil
	}
	f := p.streams[name]
	if f == nil {
		switch {
		case strings.HasPrefix(name, "call-"):
			f = newCallFold(strings.TrimPrefix(name, "call-"))
		case strings.HasPrefix(name, "reg-"):
			f = newRegFold(strings.TrimPrefix(name, "reg-"))
		default:
			return nil // trunks, spans: not part of this answer
		}
	}
	v := env.GetVersion()
	if v <= f.version {
		return nil
	}
	envs := []*eventpb.Envelope{env}
	if v > f.version+1 {
		// Events of the stream that were not folded: later by their
		// writer's clock, or of a call that ended and left the fold (its
		// late leg answers). Read them; they come first.
		gap, err := readStream(ctx, p.st, name, f.version+1, v-1)
		if err != nil {
			return err
		}
		envs = append(gap, env)
	}
	for _, e := range envs {
		if _, err := f.apply(e); err != nil {
			// A re-read event not after at was counted when it came.
			if e == env || e.GetTime().AsTime().After(p.at) {
				p.skipped++
			}
			if !errors.Is(err, events.ErrUnknownType) {
				p.broken[name] = true // corrupt or contradictory: leave it out
				delete(p.streams, name)
				return nil
			}
		}
	}
	if f.call != nil && f.call.Phase.Over() {
		delete(p.streams, name)
	} else {
		p.streams[name] = f
	}
	return nil
}

func (p *pointInTime) snapshot() *Snapshot {
	s := &Snapshot{At: formatTime(p.at), Registrations: []Registration{}, Calls: []Call{}, Skipped: p.skipped}
	type sortable struct {
		since time.Time
		c     Call
	}
	var calls []sortable
	for _, f := range p.streams {
		switch {
		case f.reg != nil:
			for _, b := range f.reg.Active(p.at) {
				s.Registrations = append(s.Registrations, Registration{AOR: f.reg.AOR, Contact: b.Contact,
					ExpiresAt: formatTime(b.ExpiresAt), UserAgent: b.UserAgent, Source: b.Source})
			}
		case f.call != nil && !f.call.Phase.Over() && f.call.Started != nil:
			c := f.call
			since := c.StartedAt
			if !c.AnswerAt.IsZero() {
				since = c.AnswerAt
			}
			calls = append(calls, sortable{since, Call{ID: c.ID, Caller: c.Started.GetCaller(), Callee: c.Started.GetCallee(),
				State: c.StateName(), Since: formatTime(since)}})
		}
	}
	sort.Slice(s.Registrations, func(i, j int) bool {
		a, b := s.Registrations[i], s.Registrations[j]
		if a.AOR != b.AOR {
			return a.AOR < b.AOR
		}
		return a.Contact < b.Contact
	})
	sort.Slice(calls, func(i, j int) bool {
		if !calls[i].since.Equal(calls[j].since) {
			return calls[i].since.Before(calls[j].since)
		}
		return calls[i].c.ID < calls[j].c.ID
	})
	for _, c := range calls {
		s.Calls = append(s.Calls, c.c)
	}
	return s
}

// Render writes the snapshot in format f (text or json).
func (s *Snapshot) Render(w io.Writer, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, s)
	case Text, "":
	default:
		return badInput("%q is not a format: want text or json", f)
	}
	if _, err := fmt.Fprintf(w, "state at %s\n", s.At); err != nil {
		return err
	}
	regs := make([][]string, 0, len(s.Registrations))
	for _, r := range s.Registrations {
		regs = append(regs, []string{r.AOR, r.Contact, r.ExpiresAt, r.UserAgent, r.Source})
	}
	if err := section(w, "registrations bound", []string{"AOR", "CONTACT", "EXPIRES", "USER AGENT", "SOURCE"}, regs); err != nil {
		return err
	}
	calls := make([][]string, 0, len(s.Calls))
	for _, c := range s.Calls {
		calls = append(calls, []string{c.ID, c.Caller, c.Callee, c.State, c.Since})
	}
	if err := section(w, "calls up", []string{"ID", "CALLER", "CALLEE", "STATE", "SINCE"}, calls); err != nil {
		return err
	}
	if s.Skipped > 0 {
		_, err := fmt.Fprintf(w, "\n%d events left out (unknown types, or not applicable to their stream)\n", s.Skipped)
		return err
	}
	return nil
}

// section writes a titled count and, when there are rows, their table.
func section(w io.Writer, title string, header []string, rows [][]string) error {
	if _, err := fmt.Fprintf(w, "\n%s: %d\n", title, len(rows)); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	return table(w, header, rows)
}
