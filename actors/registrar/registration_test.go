package registrar

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
)

var (
	t0  = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	lim = Limits{MinExpires: 60, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 3}
)

const aor = "sip:alice@example.test"

func reg(callID string, cseq uint32, expires int64, contacts ...ContactSpec) *Register {
	return &Register{AOR: aor, CallID: callID, CSeq: cseq, Expires: expires, Contacts: contacts, Source: "udp:127.0.0.1:5061"}
}

func contact(uri string, expires int64) ContactSpec {
	return ContactSpec{URI: uri, Expires: expires, QMilli: -1}
}

// describe renders events compactly for table comparisons.
func describe(evs []proto.Message) string {
	var parts []string
	for _, e := range evs {
		switch e := e.(type) {
		case *eventpb.BindingAdded:
			parts = append(parts, fmt.Sprintf("added %s %s", e.Binding.Contact, e.Binding.ExpiresAt.AsTime().Sub(t0)))
		case *eventpb.BindingRefreshed:
			parts = append(parts, fmt.Sprintf("refreshed %s %s", e.Binding.Contact, e.Binding.ExpiresAt.AsTime().Sub(t0)))
		case *eventpb.BindingRemoved:
			parts = append(parts, fmt.Sprintf("removed %s wildcard=%v", e.Contact, e.Wildcard))
		case *eventpb.BindingExpired:
			parts = append(parts, fmt.Sprintf("expired %s", e.Contact))
		}
	}
	return strings.Join(parts, "; ")
}

// run folds a sequence of commands, each at its own offset from t0, and
// returns the state; it fails the test on an unexpected error.
func run(t *testing.T, steps ...func(*State)) *State {
	s := &State{}
	for _, step := range steps {
		step(s)
	}
	return s
}

func do(t *testing.T, at time.Duration, cmd *Register) func(*State) {
	return func(s *State) {
		evs, err := DecideRegister(s, cmd, t0.Add(at), lim)
		if err != nil {
			t.Fatalf("setup command %+v: %v", cmd, err)
		}
		for _, e := range evs {
			s.Apply(e)
		}
	}
}

func TestDecideRegister(t *testing.T) {
	a := "sip:alice@10.0.0.1:5060"
	b := "sip:alice@10.0.0.2:5060"
	c := "sip:alice@10.0.0.3:5060"
	d := "sip:alice@10.0.0.4:5060"
	cases := []struct {
		name  string
		setup []func(*State)
		cmd   *Register
		at    time.Duration
		want  string
		err   error
	}{
		{name: "new binding, Expires header", cmd: reg("c1", 1, 600, contact(a, -1)), want: "added " + a + " 10m0s"},
		{name: "contact expires beats header", cmd: reg("c1", 1, 600, contact(a, 120)), want: "added " + a + " 2m0s"},
		{name: "default expiry", cmd: reg("c1", 1, -1, contact(a, -1)), want: "added " + a + " 1h0m0s"},
		{name: "max clamp", cmd: reg("c1", 1, 7200, contact(a, -1)), want: "added " + a + " 1h0m0s"},
		{name: "too brief", cmd: reg("c1", 1, 30, contact(a, -1)), err: &IntervalTooBriefError{}},
		{name: "zero on unknown contact is a no-op", cmd: reg("c1", 1, 0, contact(a, -1)), want: ""},
		{name: "query (no contact)", cmd: reg("c1", 1, -1), want: ""},
		{
			name:  "refresh same Call-ID higher CSeq",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact(a, -1)))},
			cmd:   reg("c1", 2, 600, contact(a, -1)), at: time.Minute,
			want: "refreshed " + a + " 11m0s",
		},
		{
			name:  "refresh from another Call-ID",
			setup: []func(*State){do(t, 0, reg("c1", 9, 600, contact(a, -1)))},
			cmd:   reg("c2", 1, 600, contact(a, -1)),
			want:  "refreshed " + a + " 10m0s",
		},
		{
			name:  "retransmission (same Call-ID and CSeq) adds nothing",
			setup: []func(*State){do(t, 0, reg("c1", 5, 600, contact(a, -1)))},
			cmd:   reg("c1", 5, 600, contact(a, -1)), at: time.Second,
			want: "",
		},
		{
			name:  "out of order CSeq",
			setup: []func(*State){do(t, 0, reg("c1", 5, 600, contact(a, -1)))},
			cmd:   reg("c1", 4, 600, contact(a, -1)),
			err:   ErrOutOfOrder,
		},
		{
			name:  "remove with expires 0",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact(a, -1), contact(b, -1)))},
			cmd:   reg("c1", 2, -1, contact(a, 0)),
			want:  "removed " + a + " wildcard=false",
		},
		{
			name:  "wildcard removes all",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact(a, -1), contact(b, -1)))},
			cmd:   &Register{AOR: aor, CallID: "c9", CSeq: 1, Wildcard: true, Expires: 0},
			want:  "removed " + a + " wildcard=true; removed " + b + " wildcard=true",
		},
		{name: "wildcard without Expires 0", cmd: &Register{AOR: aor, CallID: "c9", CSeq: 1, Wildcard: true, Expires: 60}, err: ErrBadRequest},
		{name: "wildcard with another contact", cmd: &Register{AOR: aor, CallID: "c9", CSeq: 1, Wildcard: true, Expires: 0, Contacts: []ContactSpec{contact(a, -1)}}, err: ErrBadRequest},
		{
			name:  "wildcard out of order",
			setup: []func(*State){do(t, 0, reg("c1", 5, 600, contact(a, -1)))},
			cmd:   &Register{AOR: aor, CallID: "c1", CSeq: 3, Wildcard: true, Expires: 0},
			err:   ErrOutOfOrder,
		},
		{
			name:  "too many contacts",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact(a, -1), contact(b, -1), contact(c, -1)))},
			cmd:   reg("c2", 1, 600, contact(d, -1)),
			err:   ErrTooManyContacts,
		},
		{
			name:  "replacing one contact by another stays within the limit",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact(a, -1), contact(b, -1), contact(c, -1)))},
			cmd:   reg("c1", 2, 600, contact(a, 0), contact(d, -1)),
			want:  "removed " + a + " wildcard=false; added " + d + " 10m0s",
		},
		{
			name:  "expired binding is expired first, then re-added",
			setup: []func(*State){do(t, 0, reg("c1", 1, 60, contact(a, -1)))},
			cmd:   reg("c1", 2, 60, contact(a, -1)), at: 2 * time.Minute,
			want: "expired " + a + "; added " + a + " 3m0s",
		},
		{
			name:  "contact URI compared per RFC 3261 (host case, param order)",
			setup: []func(*State){do(t, 0, reg("c1", 1, 600, contact("sip:alice@HOST.example;transport=udp;ob", -1)))},
			cmd:   reg("c1", 2, 600, contact("sip:alice@host.example;ob;transport=udp", -1)),
			want:  "refreshed sip:alice@host.example;ob;transport=udp 10m0s",
		},
		{name: "empty AOR", cmd: &Register{CallID: "c", CSeq: 1, Expires: -1}, err: ErrBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := run(t, tc.setup...)
			before := describeState(s)
			evs, err := DecideRegister(s, tc.cmd, t0.Add(tc.at), lim)
			if describeState(s) != before {
				t.Fatal("DecideRegister changed the state it was given")
			}
			if tc.err != nil {
				var tb *IntervalTooBriefError
				if errors.As(tc.err, &tb) {
					if !errors.As(err, &tb) || tb.MinExpires != 60 {
						t.Fatalf("err = %v, want IntervalTooBriefError with MinExpires 60", err)
					}
				} else if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if evs != nil {
					t.Fatalf("events %q returned with an error", describe(evs))
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got := describe(evs); got != tc.want {
				t.Fatalf("events:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func describeState(s *State) string { return fmt.Sprintf("%+v", *s) }

func TestApplyAndExpire(t *testing.T) {
	a := "sip:alice@10.0.0.1"
	b := "sip:alice@10.0.0.2"
	s := run(t, do(t, 0, reg("c1", 1, 60, contact(a, -1))), do(t, 0, reg("c1", 2, 120, contact(b, -1))))
	if len(s.Binds) != 2 || len(s.Active(t0.Add(90*time.Second))) != 1 {
		t.Fatalf("state %+v", s)
	}
	if next, ok := s.NextExpiry(); !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("NextExpiry = %v %v", next, ok)
	}
	if evs := DecideExpire(s, t0.Add(59*time.Second)); len(evs) != 0 {
		t.Fatalf("expired early: %s", describe(evs))
	}
	evs := DecideExpire(s, t0.Add(60*time.Second))
	if got := describe(evs); got != "expired "+a {
		t.Fatalf("DecideExpire = %q", got)
	}
	for _, e := range evs {
		s.Apply(e)
	}
	if len(s.Binds) != 1 || s.Binds[0].Contact != b {
		t.Fatalf("after expiry: %+v", s.Binds)
	}
	// Unknown payloads are skipped, never fatal.
	s.Apply(&eventpb.Cause{})
	if len(s.Binds) != 1 {
		t.Fatal("unknown event changed state")
	}
}

func TestContactKey(t *testing.T) {
	for _, tc := range [][2]string{
		{"sip:alice@HOST.example", "sip:alice@host.example"},
		{"SIP:Alice@h;Transport=udp", "sip:Alice@h;transport=udp"},
		{"sip:a@h;ob;transport=udp", "sip:a@h;ob;transport=udp"},
		{"sip:a@h;transport=udp;ob", "sip:a@h;ob;transport=udp"},
		{"sip:a@h?subject=x", "sip:a@h"},
		{"sip:h:5060", "sip:h:5060"},
		{"nonsense", "nonsense"},
		{" sip:a@h:5061;transport=UDP ", "sip:a@h:5061;transport=UDP"},
		{"sip:a@h;Transport=UDP", "sip:a@h;transport=UDP"},
		{"sip:a@H;transport=udp", "sip:a@h;transport=udp"},
		{"sip:a@h;transport=udp?x=1", "sip:a@h;transport=udp"},
	} {
		if got := ContactKey(tc[0]); got != tc[1] {
			t.Errorf("ContactKey(%q) = %q, want %q", tc[0], got, tc[1])
		}
	}
	// A URI that is already its own key costs no allocation.
	if n := testing.AllocsPerRun(100, func() { _ = ContactKey("sip:a@h:5061;transport=UDP") }); n != 0 {
		t.Errorf("ContactKey of a canonical URI allocates %v times", n)
	}
}
