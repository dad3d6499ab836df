// Package registrar is the registration aggregate and its actor: one actor per
// address of record (AOR), stream "reg-<aor>", implementing the registrar of
// RFC 3261 section 10.
//
// The aggregate is split as STYLE.md asks: Decide (command -> events or a
// typed error, given the current state and the injected time), Apply (event ->
// state, pure: no clock, no I/O) and the state itself. The actor (actor.go)
// loads the stream, decides, appends with the expected version, applies, and
// only then answers. Timers (binding expiry) are re-armed from the state after
// every change and after a restart. Every Config.SnapshotEvery events the
// actor also writes its state to "regsnap-<aor>" (derived data), so that an
// activation replays only what follows the newest snapshot.
package registrar

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// StreamName returns the event stream of an AOR.
func StreamName(aor string) string { return "reg-" + aor }

// Limits are the registrar's expiry and size rules (config sip.*).
type Limits struct {
	MinExpires     int64 // seconds; shorter non-zero requests get 423
	MaxExpires     int64 // seconds; longer ones are clamped
	DefaultExpires int64 // seconds; when the request names none
	MaxContacts    int   // bindings per AOR
}

// ContactSpec is one Contact of a REGISTER, already parsed by the gateway.
type ContactSpec struct {
	URI     string // the URI as the UA sent it
	Expires int64  // the contact's expires parameter; -1 when absent
	QMilli  int32  // q-value * 1000; -1 when absent
	Params  string // other contact parameters, "k=v;k2"
}

// Register is the command built from one authenticated REGISTER.
type Register struct {
	AOR       string
	CallID    string
	CSeq      uint32
	Wildcard  bool  // "Contact: *"
	Expires   int64 // Expires header; -1 when absent
	Contacts  []ContactSpec
	UserAgent string
	Source    string
}

// Binding is one bound contact in the state.
type Binding struct {
	Contact   string
	Key       string // comparison key of Contact (ContactKey)
	ExpiresAt time.Time
	QMilli    int32
	CallID    string
	CSeq      uint32
	UserAgent string
	Source    string
	Params    string
}

// State is an AOR's registration state: the fold of its events.
type State struct {
	AOR     string
	Version uint64    // stream version of the last applied event
	Binds   []Binding // in the order they were first added
}

// Active returns the bindings still valid at now.
func (s *State) Active(now time.Time) []Binding {
	var out []Binding
	for _, b := range s.Binds {
		if b.ExpiresAt.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// NextExpiry returns the earliest binding expiry, and false when none.
func (s *State) NextExpiry() (time.Time, bool) {
	var first time.Time
	for _, b := range s.Binds {
		if first.IsZero() || b.ExpiresAt.Before(first) {
			first = b.ExpiresAt
		}
	}
	return first, !first.IsZero()
}

func (s *State) find(key string) int {
	for i := range s.Binds {
		if s.Binds[i].Key == key {
			return i
		}
	}
	return -1
}

// Apply folds one event payload into the state. It is pure: no clock, no
// I/O. Unknown payloads leave the state unchanged (skipped, never fatal).
func (s *State) Apply(ev proto.Message) {
	switch e := ev.(type) {
	case *eventpb.BindingAdded:
		s.AOR = e.GetAor()
		s.upsert(e.GetBinding())
	case *eventpb.BindingRefreshed:
		s.AOR = e.GetAor()
		s.upsert(e.GetBinding())
	case *eventpb.BindingRemoved:
		s.remove(ContactKey(e.GetContact()))
	case *eventpb.BindingExpired:
		s.remove(ContactKey(e.GetContact()))
	}
}

func (s *State) upsert(pb *eventpb.Binding) {
	b := Binding{
		Contact:   pb.GetContact(),
		Key:       ContactKey(pb.GetContact()),
		ExpiresAt: pb.GetExpiresAt().AsTime(),
		QMilli:    pb.GetQMilli(),
		CallID:    pb.GetCallId(),
		CSeq:      pb.GetCseq(),
		UserAgent: pb.GetUserAgent(),
		Source:    pb.GetSource(),
		Params:    pb.GetParams(),
	}
	if i := s.find(b.Key); i >= 0 {
		s.Binds[i] = b
		return
	}
	s.Binds = append(s.Binds, b)
}

func (s *State) remove(key string) {
	if i := s.find(key); i >= 0 {
		s.Binds = append(s.Binds[:i], s.Binds[i+1:]...)
	}
}

// SnapshotStreamName is the stream of aor's registration snapshots.
func SnapshotStreamName(aor string) string { return "regsnap-" + aor }

// Snapshot returns the state as a RegistrationSnapshot.
func (s *State) Snapshot() *eventpb.RegistrationSnapshot {
	snap := &eventpb.RegistrationSnapshot{Aor: s.AOR, Version: s.Version}
	for _, b := range s.Binds {
		snap.Bindings = append(snap.Bindings, &eventpb.Binding{
			Contact: b.Contact, ExpiresAt: timestamppb.New(b.ExpiresAt), QMilli: b.QMilli,
			CallId: b.CallID, Cseq: b.CSeq, UserAgent: b.UserAgent, Source: b.Source, Params: b.Params,
		})
	}
	return snap
}

// Restore makes the state the one snap records.
func (s *State) Restore(snap *eventpb.RegistrationSnapshot) {
	*s = State{AOR: snap.GetAor(), Version: snap.GetVersion()}
	for _, b := range snap.GetBindings() {
		s.upsert(b)
	}
}

func (s *State) clone() State {
	c := *s
	c.Binds = append([]Binding(nil), s.Binds...)
	return c
}

// DecideExpire returns a BindingExpired for every binding whose expiry is
// not after now (RFC 3261 10.2.1: a binding lasts for its expiry interval).
func DecideExpire(s *State, now time.Time) []proto.Message {
	var evs []proto.Message
	for _, b := range s.Binds {
		if !b.ExpiresAt.After(now) {
			evs = append(evs, &eventpb.BindingExpired{
				Aor: s.AOR, Contact: b.Contact, ExpiredAt: timestamppb.New(b.ExpiresAt),
			})
		}
	}
	return evs
}

// DecideRegister processes a REGISTER per RFC 3261 section 10.3 steps 6-8 at
// time now. It returns the events to append (possibly none: a retransmission
// or a query) or a typed error (errors.go) that the gateway maps to a SIP
// status. Bindings already past their expiry are expired first, so the
// events tell the truth about when each binding ended.
func DecideRegister(s *State, cmd *Register, now time.Time, lim Limits) ([]proto.Message, error) {
	if cmd.AOR == "" {
		return nil, fmt.Errorf("%w: empty AOR", ErrBadRequest)
	}
	if s.AOR != "" && s.AOR != cmd.AOR {
		return nil, fmt.Errorf("%w: AOR %q sent to the actor of %q", ErrBadRequest, cmd.AOR, s.AOR)
	}
	evs := DecideExpire(s, now)
	st := s.clone()
	st.AOR = cmd.AOR
	for _, e := range evs {
		st.Apply(e)
	}

	// Step 6 (wildcard): "*" only with Expires: 0 and no other contact.
	if cmd.Wildcard {
		if len(cmd.Contacts) != 0 || cmd.Expires != 0 {
			return nil, fmt.Errorf("%w: Contact \"*\" needs Expires: 0 and no other Contact", ErrBadRequest)
		}
		// Step 7 for every binding: a binding set by the same Call-ID with a
		// higher CSeq makes this request out of order.
		for _, b := range st.Binds {
			if b.CallID == cmd.CallID && cmd.CSeq < b.CSeq {
				return nil, fmt.Errorf("%w: CSeq %d < %d of Call-ID %q", ErrOutOfOrder, cmd.CSeq, b.CSeq, cmd.CallID)
			}
		}
		for _, b := range st.Binds {
			evs = append(evs, &eventpb.BindingRemoved{
				Aor: cmd.AOR, Contact: b.Contact, CallId: cmd.CallID, Cseq: cmd.CSeq, Wildcard: true,
			})
		}
		return evs, nil
	}

	def := clamp(lim.DefaultExpires, lim.MinExpires, lim.MaxExpires)
	type planned struct {
		spec    ContactSpec
		key     string
		expires int64
	}
	plan := make([]planned, 0, len(cmd.Contacts))
	seen := map[string]int{}
	for _, c := range cmd.Contacts {
		exp := c.Expires
		if exp < 0 {
			exp = cmd.Expires
		}
		if exp < 0 {
			exp = def
		}
		if exp > 0 && exp < lim.MinExpires {
			return nil, &IntervalTooBriefError{MinExpires: lim.MinExpires, Asked: exp}
		}
		if exp > lim.MaxExpires {
			exp = lim.MaxExpires
		}
		key := ContactKey(c.URI)
		if i, dup := seen[key]; dup { // the last occurrence of a contact wins
			plan[i] = planned{c, key, exp}
			continue
		}
		seen[key] = len(plan)
		plan = append(plan, planned{c, key, exp})
	}

	// Step 7: out-of-order and retransmission checks against each binding.
	count := len(st.Binds)
	for _, p := range plan {
		i := st.find(p.key)
		if i < 0 {
			if p.expires > 0 {
				count++
			}
			continue
		}
		b := st.Binds[i]
		if b.CallID == cmd.CallID && cmd.CSeq < b.CSeq {
			return nil, fmt.Errorf("%w: CSeq %d < %d of Call-ID %q", ErrOutOfOrder, cmd.CSeq, b.CSeq, cmd.CallID)
		}
		if p.expires == 0 {
			count--
		}
	}
	if count > lim.MaxContacts {
		return nil, fmt.Errorf("%w: %d bindings, at most %d", ErrTooManyContacts, count, lim.MaxContacts)
	}

	for _, p := range plan {
		i := st.find(p.key)
		if i >= 0 && st.Binds[i].CallID == cmd.CallID && st.Binds[i].CSeq == cmd.CSeq {
			continue // already applied: a retransmission changes nothing
		}
		if p.expires == 0 {
			if i >= 0 {
				evs = append(evs, &eventpb.BindingRemoved{
					Aor: cmd.AOR, Contact: st.Binds[i].Contact, CallId: cmd.CallID, Cseq: cmd.CSeq,
				})
			}
			continue
		}
		pb := &eventpb.Binding{
			Contact:   p.spec.URI,
			ExpiresAt: timestamppb.New(now.Add(time.Duration(p.expires) * time.Second)),
			QMilli:    p.spec.QMilli,
			CallId:    cmd.CallID,
			Cseq:      cmd.CSeq,
			UserAgent: cmd.UserAgent,
			Source:    cmd.Source,
			Params:    p.spec.Params,
		}
		if i >= 0 {
			evs = append(evs, &eventpb.BindingRefreshed{Aor: cmd.AOR, Binding: pb})
		} else {
			evs = append(evs, &eventpb.BindingAdded{Aor: cmd.AOR, Binding: pb})
		}
	}
	return evs, nil
}

func clamp(v, lo, hi int64) int64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// ContactKey is the comparison key of a contact URI (RFC 3261 19.1.4, in the
// parts that matter for bindings): scheme and host are case-insensitive,
// the user part is not, and URI parameters compare in any order.
func ContactKey(uri string) string {
	u := strings.TrimSpace(uri)
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok {
		return u
	}
	lscheme := strings.ToLower(scheme)
	// Strip URI headers (?...), which do not identify the contact.
	headers := false
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, headers = rest[:i], true
	}
	user, hostpart := "", rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, hostpart = rest[:i+1], rest[i+1:]
	}
	host, params, _ := strings.Cut(hostpart, ";")
	lhost := strings.ToLower(host)
	// The key is the URI itself when nothing in it changes (the common
	// case: no allocation).
	canonical := !headers && lscheme == scheme && lhost == host
	scheme, host = lscheme, lhost
	if params == "" {
		if canonical {
			return u
		}
		return scheme + ":" + user + host
	}
	if !strings.Contains(params, ";") { // one parameter: nothing to sort
		k, v, hasV := strings.Cut(params, "=")
		if canonical && strings.ToLower(k) == k {
			return u
		}
		if hasV {
			return scheme + ":" + user + host + ";" + strings.ToLower(k) + "=" + v
		}
		return scheme + ":" + user + host + ";" + strings.ToLower(k)
	}
	ps := strings.Split(params, ";")
	for i := range ps {
		k, v, hasV := strings.Cut(ps[i], "=")
		ps[i] = strings.ToLower(k)
		if hasV {
			ps[i] += "=" + v
		}
	}
	sort.Strings(ps)
	return scheme + ":" + user + host + ";" + strings.Join(ps, ";")
}
