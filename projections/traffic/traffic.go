// Package traffic is the traffic projection: attempts, answers, ASR, ACD,
// dispositions and concurrent calls per minute and per caller domain,
// folded from the call streams' events in the global order. The stats API
// (GET /api/v1/stats) and the tandem_traffic_* metrics read it.
//
// It is in memory and disposable (ARCHITECTURE.md invariant 6): every
// start rebuilds it from position 1, and the same events always give the
// same figures. The fold is pure (invariant 3): every time in it is an
// event's time, never a clock's; only a query takes times, from its caller.
//
// Conventions. Figures are kept in buckets, one per UTC minute of the
// events' times, each broken down by Key (the caller's domain):
//   - attempts: a call counts once, in the minute it started (CallStarted);
//   - answered: a call counts once, in the minute of its first CallAnswered;
//   - dispositions: a call counts once, in the minute it ended (CallEnded or
//     CallFailed), classified by the CDR fold's rules (cdr.Disposition):
//     ANSWERED if it was answered however it ended, else BUSY, NO ANSWER,
//     CANCELLED or FAILED;
//   - ACD: the billable seconds (cdr.BillableSeconds) of the answered calls
//     that ended, over their number, both in the minute they ended;
//   - ASR: answered / attempts over the same minutes. A call is attempted
//     in the minute it started and answered in the minute it was answered,
//     so a single minute's ASR can exceed 1 when calls ring across its
//     boundary; over longer windows that edge effect fades (ringing is
//     bounded by the no-answer timer);
//   - concurrent calls: calls started and not yet ended or failed; each
//     minute reports the peak and the value at its end.
//
// Events of one call are folded in the order of its stream; a call's
// events before its CallStarted or after its end (strays) count nowhere.
// Events whose times are out of order across calls (nodes' clocks, actors
// appending in parallel) land in their own minute; only the order within a
// minute can then shift that minute's peak.
//
// Memory is bounded: the buckets of the newest KeepMinutes minutes (by
// event time; default 7 days) are kept and older ones dropped. An event
// older than that changes only the lifetime counts and the calls up.
//
// Apply is called serially (by CatchUp, then the node's
// projections.Fanout); every other method may be called concurrently with
// it.
package traffic

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/cdr"
)

// DefaultKeepMinutes is how many minutes of buckets are kept by default:
// 7 days.
const DefaultKeepMinutes = 7 * 24 * 60

// Key is what the figures are broken down by: today the caller's domain.
//
// A trunk dimension will be a Trunk field here. Peaks of concurrent calls
// do not add up across keys, so once keys carry a trunk, a figure by
// domain alone needs keys of its own: each event is then recorded under
// every key it falls in (domain, and domain with trunk).
type Key struct {
	// Domain is the host part of the caller's AOR (CallStarted.caller),
	// lower-cased; "" when it has none.
	Domain string
}

// Dispositions lists the CDR dispositions in the order reports use.
func Dispositions() []string {
	return []string{cdr.Answered, cdr.Busy, cdr.NoAnswer, cdr.Cancelled, cdr.Failed}
}

// numDispositions is len(Dispositions()); answeredIndex is ANSWERED's.
const (
	numDispositions = 5
	answeredIndex   = 0
)

func dispositionIndex(d string) int {
	for i, x := range Dispositions() {
		if x == d {
			return i
		}
	}
	return numDispositions - 1 // FAILED: cdr.Disposition returns nothing else
}

// counts are the figures of one key (or of all keys) in one minute.
type counts struct {
	attempts, answered int64
	ended              [numDispositions]int64 // calls that ended, by disposition
	billable           int64                  // seconds, of the answered calls that ended
	// delta is the change in calls up over the minute; peak is the
	// highest delta reached within it (never below 0: the value at the
	// minute's start).
	delta, peak int64
}

func (c *counts) move(d int64) {
	c.delta += d
	c.peak = max(c.peak, c.delta)
}

// bucket is one minute.
type bucket struct {
	all  counts
	keys map[Key]*counts
}

// Lifetime is what one key has counted since the first event, and its
// calls up now.
type Lifetime struct {
	Key      Key
	Attempts int64
	Answered int64
	// Ended counts the calls that ended, by disposition (every key of
	// Dispositions is present).
	Ended map[string]int64
	// Billable is the billable seconds of the answered calls that ended.
	Billable int64
	// Up is the number of calls up now.
	Up int64
}

type lifetime struct {
	attempts, answered, billable int64
	ended                        [numDispositions]int64
}

// open is what the fold keeps of a call that has not ended.
type open struct {
	key      Key
	answered bool
	answerMS int64 // Unix milliseconds of the first CallAnswered
}

// Projection is the traffic projection.
type Projection struct {
	keep int64 // minutes of buckets kept

	mu      sync.RWMutex
	calls   map[string]*open // by call id
	up      map[Key]int64    // calls up, by key (no zero entries)
	upAll   int64
	buckets map[int64]*bucket // by minute (Unix time / 60)
	minutes []int64           // the keys of buckets, ascending
	newest  int64             // the newest minute of any call event
	seen    bool              // whether newest is set
	life    map[Key]*lifetime

	projections.Cursor
}

// Option configures a Projection.
type Option func(*Projection)

// KeepMinutes sets how many minutes of buckets are kept (the newest ones,
// by event time): the memory bound and the longest range a query covers.
// Default DefaultKeepMinutes; values below 1 keep the default.
func KeepMinutes(n int) Option {
	return func(p *Projection) {
		if n >= 1 {
			p.keep = int64(n)
		}
	}
}

// New returns an empty projection.
func New(opts ...Option) *Projection {
	p := &Projection{
		keep: DefaultKeepMinutes, calls: map[string]*open{}, up: map[Key]int64{},
		buckets: map[int64]*bucket{}, life: map[Key]*lifetime{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Payload types the fold reads; other known types of a call stream change
// no figure.
const (
	typeStarted  = "tandem.events.v1.CallStarted"
	typeAnswered = "tandem.events.v1.CallAnswered"
	typeEnded    = "tandem.events.v1.CallEnded"
	typeFailed   = "tandem.events.v1.CallFailed"
)

// Apply folds one event; events of other streams only advance the
// position. An event of a type this binary does not know is skipped and
// counted; one that does not decode is an error.
func (p *Projection) Apply(env *eventpb.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.Advance("traffic", env); err != nil {
		return err
	}
	id, ok := strings.CutPrefix(env.GetStream(), "call-")
	if !ok {
		return nil
	}
	at := env.GetTime().AsTime()
	switch t := env.GetType(); t {
	case typeStarted:
		m, err := events.UnwrapAs[*eventpb.CallStarted](env)
		if err != nil {
			return fmt.Errorf("traffic: %w", err)
		}
		p.start(id, DomainOf(m.GetCaller()), at)
	case typeAnswered:
		p.answer(id, at)
	case typeEnded:
		p.end(id, at, nil)
	case typeFailed:
		m, err := events.UnwrapAs[*eventpb.CallFailed](env)
		if err != nil {
			return fmt.Errorf("traffic: %w", err)
		}
		p.end(id, at, m)
	default:
		if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(t)); err != nil {
			p.Skip()
		}
	}
	return nil
}

// DomainOf is the lower-cased host part of a SIP or SIPS URI, without
// port or parameters; "" for anything else (a tel: URI, no URI at all).
func DomainOf(aor string) string {
	var u sip.Uri
	if aor == "" || sip.ParseUri(aor, &u) != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

func (p *Projection) start(id, domain string, at time.Time) {
	if p.calls[id] != nil {
		return // a stream starts once; a repeated start adds nothing
	}
	k := Key{Domain: domain}
	p.calls[id] = &open{key: k}
	p.lifetime(k).attempts++
	p.upAll++
	p.up[k]++
	p.record(at, k, func(c *counts) {
		c.attempts++
		c.move(1)
	})
}

func (p *Projection) answer(id string, at time.Time) {
	c := p.calls[id]
	if c == nil || c.answered {
		return
	}
	c.answered, c.answerMS = true, at.UnixMilli()
	p.lifetime(c.key).answered++
	p.record(at, c.key, func(x *counts) { x.answered++ })
}

// end closes a call; failed is its CallFailed (nil for CallEnded).
func (p *Projection) end(id string, at time.Time, failed *eventpb.CallFailed) {
	c := p.calls[id]
	if c == nil {
		return
	}
	delete(p.calls, id)
	i := dispositionIndex(cdr.Disposition(c.answered, failed))
	var billable int64
	if c.answered {
		billable = cdr.BillableSeconds(c.answerMS, at.UnixMilli())
	}
	l := p.lifetime(c.key)
	l.ended[i]++
	l.billable += billable
	p.upAll--
	if p.up[c.key]--; p.up[c.key] == 0 {
		delete(p.up, c.key)
	}
	p.record(at, c.key, func(x *counts) {
		x.ended[i]++
		x.billable += billable
		x.move(-1)
	})
}

func (p *Projection) lifetime(k Key) *lifetime {
	l := p.life[k]
	if l == nil {
		l = &lifetime{}
		p.life[k] = l
	}
	return l
}

// minuteOf is the minute (Unix time / 60, rounded down) holding t.
func minuteOf(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// record applies f to the figures of key k, and of all keys, in the
// minute of at; nothing when that minute is older than the kept window.
func (p *Projection) record(at time.Time, k Key, f func(*counts)) {
	m := minuteOf(at)
	if !p.seen || m > p.newest {
		p.newest, p.seen = m, true
		for len(p.minutes) > 0 && p.minutes[0] <= m-p.keep {
			delete(p.buckets, p.minutes[0])
			p.minutes = p.minutes[1:]
		}
	}
	if m <= p.newest-p.keep {
		return
	}
	b := p.buckets[m]
	if b == nil {
		b = &bucket{keys: map[Key]*counts{}}
		p.buckets[m] = b
		// Nearly always the newest minute; a late event's goes in place.
		i := sort.Search(len(p.minutes), func(i int) bool { return p.minutes[i] >= m })
		p.minutes = append(p.minutes, 0)
		copy(p.minutes[i+1:], p.minutes[i:])
		p.minutes[i] = m
	}
	c := b.keys[k]
	if c == nil {
		c = &counts{}
		b.keys[k] = c
	}
	f(&b.all)
	f(c)
}

// CatchUp folds everything up to the store's head at call time.
func (p *Projection) CatchUp(ctx context.Context, st events.Store) error {
	return projections.CatchUp(ctx, st, "traffic", p.Position, p.Apply)
}

// KeepMinutes is how many minutes of buckets the projection keeps.
func (p *Projection) KeepMinutes() int { return int(p.keep) }

// Lifetimes returns every key's lifetime counts, sorted by key.
func (p *Projection) Lifetimes() []Lifetime {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]Lifetime, 0, len(p.life))
	for k, l := range p.life {
		out = append(out, Lifetime{Key: k, Attempts: l.attempts, Answered: l.answered,
			Ended: dispositionMap(&l.ended), Billable: l.billable, Up: p.up[k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.less(out[j].Key) })
	return out
}

func (k Key) less(o Key) bool { return k.Domain < o.Domain }

func dispositionMap(n *[numDispositions]int64) map[string]int64 {
	m := make(map[string]int64, numDispositions)
	for i, d := range Dispositions() {
		m[d] = n[i]
	}
	return m
}
