// Package replay is the auditor's view of the event history: it replays one
// call's or one registration's stream as a ladder (one row per event: when,
// on which node, who spoke to whom, the SIP message that caused it, the
// event, and the state the event leads to), renders it as text, JSON or an
// SVG sequence diagram, and folds the whole global order into the
// registrations that were bound and the calls that were up at a moment in
// the past (StateAt).
//
// Every state shown is computed with the actors' own pure Apply
// (actors/call State.Apply, actors/registrar State.Apply), so the ladder
// says what the actors themselves would have known after each event
// (ARCHITECTURE.md invariant 3). An event of a type this binary does not
// know is shown as such and left out of the fold, never an error; an event
// that does not fold (a stream that contradicts itself) is shown with the
// reason and left out too. Nothing here writes or keeps anything: it is a
// pure function of the events, and its output is deterministic, so it can
// be compared byte for byte (the golden tests in testdata/).
//
// Functions are safe to call concurrently; nothing is shared between calls.
package replay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// TimeFormat is how every time is shown: RFC 3339 in UTC with milliseconds,
// as in the HTTP API's answers.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Row is one event of a ladder. The JSON keys are part of the output
// format: keep them stable.
type Row struct {
	Position uint64 `json:"position"` // in the global order
	Version  uint64 `json:"version"`  // in the stream
	Time     string `json:"time"`     // the writer's clock, TimeFormat
	Node     string `json:"node"`     // the node that wrote it
	// Direction says who spoke to whom: "caller -> tandem",
	// "tandem -> callee (leg 2)", "caller -> tandem -> callee (leg 1)" for
	// a relayed request, "UA -> registrar", or "timer" for an internal
	// trigger. From and To are the lifelines at its two ends (the same one
	// twice for a timer).
	Direction string `json:"direction"`
	From      string `json:"from"`
	To        string `json:"to"`
	// Message is the causing SIP message in one line (Cause, written out).
	Message string `json:"message"`
	Cause   Cause  `json:"cause"`
	// Event is the event's short type name ("CallStarted"), or "unknown"
	// for a type this binary does not know; Type is the full name.
	Event   string `json:"event"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
	// State is the aggregate's state after the event, in one line.
	State string `json:"state"`
	// Skipped is true when the event was left out of the fold (unknown
	// type, undecodable payload, or an event that does not apply).
	Skipped bool `json:"skipped"`
}

// Cause is the envelope's cause, the SIP message (or internal trigger)
// that caused an event.
type Cause struct {
	Method string `json:"method"` // request method, response status, or "timer"
	CSeq   uint32 `json:"cseq"`
	CallID string `json:"call_id"`
	Branch string `json:"branch"`
	Source string `json:"source"` // transport source, "leg-b1", or the timer's kind
}

func causeOf(c *eventpb.Cause) Cause {
	return Cause{Method: c.GetMethod(), CSeq: c.GetCseq(), CallID: c.GetCallId(), Branch: c.GetBranch(), Source: c.GetSource()}
}

// line writes the cause out: "INVITE cseq=2 call-id=... branch=... src=...",
// "timer (noanswer)", or "-" when the event names no cause.
func (c Cause) line() string {
	switch c.Method {
	case "":
		return "-"
	case "timer":
		if c.Source != "" {
			return "timer (" + c.Source + ")"
		}
		return "timer"
	}
	parts := []string{c.Method}
	if c.CSeq != 0 {
		parts = append(parts, fmt.Sprintf("cseq=%d", c.CSeq))
	}
	for _, kv := range [][2]string{{"call-id", c.CallID}, {"branch", c.Branch}, {"src", c.Source}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, " ")
}

// short is the cause as an SVG arrow names it: "INVITE cseq=2".
func (c Cause) short() string {
	if c.Method == "" || c.Method == "timer" {
		return c.line()
	}
	if c.CSeq != 0 {
		return fmt.Sprintf("%s cseq=%d", c.Method, c.CSeq)
	}
	return c.Method
}

// Ladder is one stream replayed.
type Ladder struct {
	Kind   string // "call" or "registration"
	Name   string // the call id or the AOR
	Stream string
	// Lanes are the lifelines, left to right: caller, tandem and one per
	// callee leg; or UA and registrar.
	Lanes []string
	Rows  []Row
}

// Lifelines.
const (
	laneCaller    = "caller"
	laneTandem    = "tandem"
	laneUA        = "UA"
	laneRegistrar = "registrar"
	dirTimer      = "timer"
)

func legLane(n uint32) string { return fmt.Sprintf("callee (leg %d)", n) }

// row starts the row of env; the caller fills the rest.
func row(env *eventpb.Envelope) Row {
	c := causeOf(env.GetCause())
	return Row{
		Position: env.GetPosition(), Version: env.GetVersion(), Time: formatTime(env.GetTime().AsTime()),
		Node: env.GetNode(), Message: c.line(), Cause: c, Type: env.GetType(),
		Event: strings.TrimPrefix(env.GetType(), "tandem.events.v1."),
	}
}

// arrow sets the row's direction from one lifeline to another; over, when
// not empty, is a lifeline the message passes through (a relay).
func (r *Row) arrow(from, over, to string) {
	r.From, r.To = from, to
	switch {
	case from == dirTimer:
		r.Direction, r.From, r.To = dirTimer, to, to
	case over != "":
		r.Direction = from + " -> " + over + " -> " + to
	default:
		r.Direction = from + " -> " + to
	}
}

// CheckCallID validates a call id as the API does (call.ValidID).
func CheckCallID(id string) error {
	if !call.ValidID(id) {
		return badInput("%q is not a call id (24 characters a-z, 2-7)", id)
	}
	return nil
}

// CheckAOR validates an address of record as the registrar writes it:
// sip:user@domain (or sips:).
func CheckAOR(aor string) error {
	rest, ok := strings.CutPrefix(aor, "sip:")
	if !ok {
		rest, ok = strings.CutPrefix(aor, "sips:")
	}
	user, host, at := strings.Cut(rest, "@")
	if !ok || !at || user == "" || host == "" || strings.ContainsAny(aor, " \t\r\n<>\"") {
		return badInput("%q is not an address of record (sip:user@domain)", aor)
	}
	return nil
}

// ParseTime parses an RFC 3339 time ("2026-11-22T10:00:00Z", fractions of
// a second and any offset allowed).
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, badInput("%q is not an RFC 3339 time such as 2026-11-22T10:00:00Z", s)
	}
	return t, nil
}

// readBatch is how many events one store read asks for.
const readBatch = 1024

// readStream reads a whole stream (versions from..), in batches.
func readStream(ctx context.Context, st events.Store, stream string, from uint64, upTo uint64) ([]*eventpb.Envelope, error) {
	var out []*eventpb.Envelope
	for upTo == 0 || from <= upTo {
		n := readBatch
		if upTo != 0 && upTo-from+1 < uint64(n) {
			n = int(upTo - from + 1)
		}
		batch, err := st.ReadStream(ctx, stream, from, n)
		if err != nil {
			return nil, fmt.Errorf("replay: read %s: %w", stream, err)
		}
		out = append(out, batch...)
		if len(batch) < n {
			break
		}
		from = batch[len(batch)-1].GetVersion() + 1
	}
	return out, nil
}

// ReadCall replays call id from st. A call with no events is ErrNotFound.
func ReadCall(ctx context.Context, st events.Store, id string) (*Ladder, error) {
	return readLadder(ctx, st, id, CheckCallID, call.StreamName, CallLadder, "no such call: %s")
}

// ReadRegistration replays the registration of aor from st. An AOR with
// no events is ErrNotFound.
func ReadRegistration(ctx context.Context, st events.Store, aor string) (*Ladder, error) {
	return readLadder(ctx, st, aor, CheckAOR, registrar.StreamName, RegistrationLadder, "no registration events for %s")
}

// readLadder checks name, reads its stream and replays it; missing says
// (with name) that the stream has no events.
func readLadder(ctx context.Context, st events.Store, name string, check func(string) error,
	stream func(string) string, ladder func(string, []*eventpb.Envelope) *Ladder, missing string) (*Ladder, error) {
	if err := check(name); err != nil {
		return nil, err
	}
	envs, err := readStream(ctx, st, stream(name), 1, 0)
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, notFound(missing, name)
	}
	return ladder(name, envs), nil
}
