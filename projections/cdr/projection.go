package cdr

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Name is the projection's name in `tandem projections ...`.
const Name = "cdr"

// Projection is the CDR projection (projections.Durable): the Fold, and
// the Sink it commits to.
type Projection struct {
	Sink *Sink
	fold *Fold
	// stored: calls whose in-progress row is in the database, so that a
	// call that starts and ends within one batch (most of them, during a
	// rebuild) costs no row but its CDR.
	stored map[string]bool
}

// New returns the projection over sink.
func New(sink *Sink) *Projection {
	return &Projection{Sink: sink, fold: NewFold(), stored: map[string]bool{}}
}

func (p *Projection) Name() string { return Name }

// Load restores the checkpoint and the calls in progress.
func (p *Projection) Load(ctx context.Context) (uint64, error) {
	cp, opens, err := p.Sink.load(ctx, Name)
	if err != nil {
		return 0, err
	}
	p.fold = NewFold()
	p.fold.Open = opens
	p.stored = make(map[string]bool, len(opens))
	for id := range opens {
		p.stored[id] = true
	}
	return cp, nil
}

// Apply folds one event.
func (p *Projection) Apply(env *eventpb.Envelope) (bool, error) { return p.fold.Apply(env) }

// Commit takes the batch's CDRs, the calls in progress it changed and the
// checkpoint, and returns the transaction that writes them.
func (p *Projection) Commit(checkpoint uint64) func(context.Context) error {
	done, changed := p.fold.take()
	opens := map[string]*open{}
	var deletes []string
	for _, id := range changed {
		if o, ok := p.fold.Open[id]; ok {
			// A copy: the fold goes on changing its own while this
			// batch is written.
			c := *o
			opens[id] = &c
			p.stored[id] = true
		} else if p.stored[id] {
			deletes = append(deletes, id)
			delete(p.stored, id)
		}
	}
	return func(ctx context.Context) error {
		return p.Sink.write(ctx, Name, done, opens, deletes, checkpoint)
	}
}

// Reset deletes every CDR and the projection's state.
func (p *Projection) Reset(ctx context.Context) error {
	if err := p.Sink.reset(ctx, Name); err != nil {
		return err
	}
	p.fold = NewFold()
	p.stored = map[string]bool{}
	return nil
}

// Columns of the CSV export, in order.
var Columns = []string{"call_id", "caller", "callee", "request_uri", "source", "start", "answer", "end",
	"duration", "billable", "disposition", "sip_status", "q850_cause", "hangup_side", "legs", "nodes"}

// exportTime is the export's time format: RFC 3339, UTC, milliseconds.
const exportTime = "2006-01-02T15:04:05.000Z"

// record is a CDR as exported (CSV row or JSON object).
type record struct {
	CallID      string `json:"call_id"`
	Caller      string `json:"caller"`
	Callee      string `json:"callee"`
	RequestURI  string `json:"request_uri"`
	Source      string `json:"source"`
	Start       string `json:"start"`
	Answer      string `json:"answer"`
	End         string `json:"end"`
	Duration    int64  `json:"duration"`
	Billable    int64  `json:"billable"`
	Disposition string `json:"disposition"`
	SIPStatus   uint32 `json:"sip_status"`
	Q850Cause   uint32 `json:"q850_cause"`
	HangupSide  string `json:"hangup_side"`
	Legs        int    `json:"legs"`
	Nodes       string `json:"nodes"`
}

func toRecord(c CDR) record {
	r := record{CallID: c.CallID, Caller: c.Caller, Callee: c.Callee, RequestURI: c.RequestURI, Source: c.Source,
		Start: c.Start.UTC().Format(exportTime), End: c.End.UTC().Format(exportTime),
		Duration: c.Duration, Billable: c.Billable, Disposition: c.Disposition, SIPStatus: c.SIPStatus,
		Q850Cause: c.Q850Cause, HangupSide: c.HangupSide, Legs: c.Legs, Nodes: c.Nodes}
	if c.Answer != nil {
		r.Answer = c.Answer.UTC().Format(exportTime)
	}
	return r
}

// Write writes cdrs to w as "csv" (a header row, then one row per CDR) or
// "json" (an array of objects). The output depends only on the CDRs.
func Write(w io.Writer, format string, cdrs []CDR) error {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(Columns); err != nil {
			return err
		}
		for _, c := range cdrs {
			r := toRecord(c)
			if err := cw.Write([]string{r.CallID, r.Caller, r.Callee, r.RequestURI, r.Source, r.Start, r.Answer, r.End,
				strconv.FormatInt(r.Duration, 10), strconv.FormatInt(r.Billable, 10), r.Disposition,
				strconv.FormatUint(uint64(r.SIPStatus), 10), strconv.FormatUint(uint64(r.Q850Cause), 10),
				r.HangupSide, strconv.Itoa(r.Legs), r.Nodes}); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "json":
		out := make([]record, 0, len(cdrs))
		for _, c := range cdrs {
			out = append(out, toRecord(c))
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return fmt.Errorf("format %q: want csv or json", format)
}

// ParseBound parses an export bound: RFC 3339 (with or without fractional
// seconds) or a date (YYYY-MM-DD, midnight UTC); "" is open.
func ParseBound(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a YYYY-MM-DD date", s)
}
