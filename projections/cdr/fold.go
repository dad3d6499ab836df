// Package cdr is the CDR projection: exactly one call detail record per
// call, folded from the call streams' events (call-<id>) and written to a
// SQL database (SQLite by default, PostgreSQL for shared analytics)
// together with the projection's checkpoint and its calls in progress, in
// one transaction per batch. It can be deleted and rebuilt from the first
// event with the same result.
package cdr

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Dispositions, as carriers' CDRs (and Asterisk's) spell them.
const (
	Answered  = "ANSWERED"
	NoAnswer  = "NO ANSWER"
	Busy      = "BUSY"
	Failed    = "FAILED"
	Cancelled = "CANCELLED"
)

// CDR is one call detail record. Times are UTC with millisecond precision
// (the events' times, i.e. the deciding node's clock).
type CDR struct {
	CallID     string     `json:"call_id"`
	Caller     string     `json:"caller"`
	Callee     string     `json:"callee"`
	RequestURI string     `json:"request_uri"`
	Source     string     `json:"source"`
	Start      time.Time  `json:"start"`
	Answer     *time.Time `json:"answer"` // nil: never answered
	End        time.Time  `json:"end"`
	// Duration is end - start in whole seconds (rounded down).
	Duration int64 `json:"duration"`
	// Billable is end - answer in seconds, a started second counted whole
	// (per-second billing); 0 for a call never answered.
	Billable    int64  `json:"billable"`
	Disposition string `json:"disposition"`
	SIPStatus   uint32 `json:"sip_status"` // the final status of the call
	Q850Cause   uint32 `json:"q850_cause"`
	// HangupSide: caller, callee or system (timers, failures, recovery).
	HangupSide string `json:"hangup_side"`
	Legs       int    `json:"legs"`  // B legs tried
	Nodes      string `json:"nodes"` // nodes that wrote its events, in order, comma-separated
	// Position of the event that ended the call in the global order.
	Position uint64 `json:"-"`
}

// open is what the fold keeps of a call that has not ended yet. It is
// stored (as JSON) with the checkpoint, so that a restart or a crash
// resumes the fold exactly.
type open struct {
	Caller     string `json:"caller"`
	Callee     string `json:"callee"`
	RequestURI string `json:"request_uri"`
	Source     string `json:"source"`
	StartMS    int64  `json:"start_ms"`
	AnswerMS   int64  `json:"answer_ms,omitempty"`
	Legs       int    `json:"legs"`
	Nodes      string `json:"nodes"`
}

// Fold is the pure part of the projection: it turns call events into
// CDRs. It reads no clock; times come from the events.
type Fold struct {
	Open map[string]*open // by call id
	// What the current batch changed, for the sink.
	Done    []CDR
	changed map[string]bool // call ids whose open state changed or ended
}

// NewFold returns an empty fold.
func NewFold() *Fold { return &Fold{Open: map[string]*open{}, changed: map[string]bool{}} }

// callPrefix starts every call stream's name (actors/call.StreamName).
const callPrefix = "call-"

// Payload type names the fold reads; everything else in a call stream
// leaves the CDR as it is.
const (
	typeStarted  = "tandem.events.v1.CallStarted"
	typeAttempt  = "tandem.events.v1.LegAttempted"
	typeAnswered = "tandem.events.v1.CallAnswered"
	typeEnded    = "tandem.events.v1.CallEnded"
	typeFailed   = "tandem.events.v1.CallFailed"
)

// callEventTypes are the call stream's other known types (no CDR field).
var callEventTypes = map[string]bool{
	"tandem.events.v1.LegProgress": true, "tandem.events.v1.LegAnswered": true,
	"tandem.events.v1.LegFailed": true, "tandem.events.v1.InDialogRelayed": true,
	"tandem.events.v1.HoldChanged": true, "tandem.events.v1.SessionRefreshed": true,
}

// Apply folds one event. Events of other streams are known and ignored;
// an unknown type in a call stream is reported unknown (and ignored).
func (f *Fold) Apply(env *eventpb.Envelope) (bool, error) {
	stream := env.GetStream()
	if !strings.HasPrefix(stream, callPrefix) {
		return true, nil // not ours: registrations, trunks, ...
	}
	id := stream[len(callPrefix):]
	at := env.GetTime().AsTime().UnixMilli()
	t := env.GetType()
	switch t {
	case typeStarted:
		o, err := startedFields(env.GetData())
		if err != nil {
			return true, fmt.Errorf("CallStarted of %s: %w", id, err)
		}
		o.StartMS, o.Nodes = at, env.GetNode()
		f.Open[id] = o
		f.changed[id] = true
		return true, nil
	}
	o := f.Open[id]
	if o == nil {
		// An event of a call whose start we never saw (or that already
		// ended: the stray ACK/BYE answers after the end add nothing).
		return t == typeAttempt || t == typeAnswered || t == typeEnded || t == typeFailed || callEventTypes[t], nil
	}
	if n := env.GetNode(); n != "" && !containsNode(o.Nodes, n) {
		if o.Nodes != "" {
			o.Nodes += ","
		}
		o.Nodes += n
		f.changed[id] = true
	}
	switch t {
	case typeAttempt:
		o.Legs++
		f.changed[id] = true
	case typeAnswered:
		if o.AnswerMS == 0 {
			o.AnswerMS = at
			f.changed[id] = true
		}
	case typeEnded:
		m, err := events.UnwrapAs[*eventpb.CallEnded](env)
		if err != nil {
			return true, fmt.Errorf("CallEnded of %s: %w", id, err)
		}
		f.finish(id, o, env, at, m.GetSipStatus(), m.GetQ850Cause(), side(m.GetBy()), nil)
	case typeFailed:
		m, err := events.UnwrapAs[*eventpb.CallFailed](env)
		if err != nil {
			return true, fmt.Errorf("CallFailed of %s: %w", id, err)
		}
		f.finish(id, o, env, at, m.GetSipStatus(), m.GetQ850Cause(), failedSide(m.GetReason()), m)
	default:
		return callEventTypes[t], nil
	}
	return true, nil
}

func containsNode(list, n string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == n {
			return true
		}
	}
	return false
}

// finish turns an open call into its CDR; failed is the CallFailed that
// ended it (nil for CallEnded).
func (f *Fold) finish(id string, o *open, env *eventpb.Envelope, endMS int64, status, q850 uint32, side string, failed *eventpb.CallFailed) {
	c := CDR{
		CallID: id, Caller: o.Caller, Callee: o.Callee, RequestURI: o.RequestURI, Source: o.Source,
		Start: time.UnixMilli(o.StartMS).UTC(), End: time.UnixMilli(endMS).UTC(),
		SIPStatus: status, Q850Cause: q850, HangupSide: side, Legs: o.Legs, Nodes: o.Nodes,
		Position: env.GetPosition(), Disposition: Disposition(o.AnswerMS != 0, failed),
	}
	c.Duration = max(0, (endMS-o.StartMS)/1000)
	if o.AnswerMS != 0 {
		a := time.UnixMilli(o.AnswerMS).UTC()
		c.Answer = &a
		c.Billable = BillableSeconds(o.AnswerMS, endMS)
	}
	f.Done = append(f.Done, c)
	delete(f.Open, id)
	f.changed[id] = true
}

// side names who hung up from CallEnded.by.
func side(by string) string {
	switch by {
	case "caller", "a":
		return "caller"
	case "callee", "b":
		return "callee"
	}
	return "system"
}

// failedSide names who ended a call that was never answered.
func failedSide(reason string) string {
	switch reason {
	case "cancel":
		return "caller"
	case "rejected":
		return "callee"
	}
	return "system"
}

// Disposition classifies a call that is over, as its CDR does: ANSWERED
// once it was answered (however it ended); otherwise by the CallFailed
// that ended it (see failedDisposition), or FAILED when it ended with a
// CallEnded (failed nil) without an answer. The traffic projection counts
// dispositions with it.
func Disposition(answered bool, failed *eventpb.CallFailed) string {
	switch {
	case answered:
		return Answered
	case failed != nil:
		return failedDisposition(failed.GetReason(), failed.GetSipStatus())
	}
	return Failed
}

// BillableSeconds is the billable time of a call answered at answerMS and
// ended at endMS (Unix milliseconds): a started second counts whole
// (per-second billing); never negative.
func BillableSeconds(answerMS, endMS int64) int64 {
	return int64(math.Ceil(float64(max(0, endMS-answerMS)) / 1000))
}

// failedDisposition classifies a call that was never answered: the
// caller's CANCEL, the callee's busy (486, 600) or no-answer (408, 480,
// the no-answer timer) answers, and everything else as FAILED.
func failedDisposition(reason string, status uint32) string {
	switch {
	case reason == "cancel":
		return Cancelled
	case reason == "no_answer" || status == 408 || status == 480:
		return NoAnswer
	case status == 486 || status == 600:
		return Busy
	}
	return Failed
}

// take returns the batch's finished CDRs and the ids whose open state
// changed (to be rewritten or deleted), and starts a new batch.
func (f *Fold) take() ([]CDR, []string) {
	done := f.Done
	ids := make([]string, 0, len(f.changed))
	for id := range f.changed {
		ids = append(ids, id)
	}
	f.Done = nil
	clear(f.changed)
	return done, ids
}

// startedFields reads the four CallStarted fields a CDR needs (caller 1,
// callee 2, request_uri 3, source 4) with protowire, skipping the rest
// (the caller's leg and the SDP offer, most of the message) without
// decoding them: a full proto.Unmarshal of CallStarted was the fold's
// largest cost in bench-replay. A malformed message is an error, as it
// would be from proto.Unmarshal.
func startedFields(b []byte) (*open, error) {
	o := &open{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 4 {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			if !utf8.Valid(v) {
				return nil, fmt.Errorf("field %d is not valid UTF-8", num)
			}
			switch num {
			case 1:
				o.Caller = string(v)
			case 2:
				o.Callee = string(v)
			case 3:
				o.RequestURI = string(v)
			case 4:
				o.Source = string(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return o, nil
}
