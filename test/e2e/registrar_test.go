package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/test/e2e/peers"
)

// A thousand distinct users register with digest auth (401, then credentials,
// then 200): every one gets its 200 and the API lists exactly one binding per
// user, with the contact, expiry, user agent and source sipp used.
func TestRegisterThousandUsersWithDigestAuth(t *testing.T) {
	const n = 1000
	users := peers.Users(n, "secret")
	h := newHarness(t, users, nil)
	h.start()

	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	res := h.sipp("register-1000", "register_auth.xml", users, sippOpts{port: port, rate: 500, limit: 200})
	h.expectCalls(res, n, 0)
	// Almost no retransmissions at this modest rate (a loaded machine may cause a few).
	t.Logf("sipp: %s", res)
	if res.Retransmissions > n/20 {
		t.Errorf("sipp retransmitted %d times for %d registrations", res.Retransmissions, n)
	}

	regs := h.waitRegistrations(fmt.Sprintf("%d bindings", n), 15*time.Second, func(r []peers.Registration) bool { return len(r) >= n })
	if len(regs) != n {
		t.Fatalf("the API lists %d bindings, want %d: %s", len(regs), n, summarize(regs, 5))
	}
	got := byAOR(regs)
	for _, u := range users {
		aor := aorOf(u.User)
		bs := got[aor]
		if len(bs) != 1 {
			t.Errorf("%s: %d bindings, want 1: %s", aor, len(bs), summarize(bs, 3))
			continue
		}
		b := bs[0]
		if want := fmt.Sprintf("%s@127.0.0.1:%d", u.User, port); !strings.Contains(b.Contact, want) {
			t.Errorf("%s: contact %q does not contain %q", aor, b.Contact, want)
		}
		exp, err := b.Expires()
		if err != nil {
			t.Errorf("%s: expires_at %q: %v", aor, b.ExpiresAt, err)
		} else if lo, hi := before.Add(3600*time.Second-5*time.Second), time.Now().Add(3600*time.Second+5*time.Second); exp.Before(lo) || exp.After(hi) {
			t.Errorf("%s: expires_at %s, want about now+3600s (%s .. %s)", aor, b.ExpiresAt, lo.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339))
		}
		if b.UserAgent != "sipp-register-auth" {
			t.Errorf("%s: user_agent %q, want %q", aor, b.UserAgent, "sipp-register-auth")
		}
		if want := fmt.Sprintf("127.0.0.1:%d", port); !strings.Contains(b.Source, want) {
			t.Errorf("%s: source %q, want udp:%s", aor, b.Source, want)
		}
		if t.Failed() && len(got) > 0 {
			// one example is enough; the rest would repeat it
			break
		}
	}

	// The challenge is what the brief promises: MD5 with qop=auth in the domain's realm.
	msgs := readMessages(t, res.MsgFile)
	chal := responses(msgs, 401)
	if len(chal) == 0 {
		t.Fatalf("no 401 in the sipp trace")
	}
	www := chal[0].Headers("WWW-Authenticate", "")
	if len(www) == 0 || !strings.Contains(www[0], `realm="example.test"`) || !strings.Contains(www[0], "qop=") {
		t.Errorf("first WWW-Authenticate %q: want Digest realm=\"example.test\" with qop", www)
	}
}

// Wrong passwords and unknown users never get a 200 (each gets 403) and
// leave no binding.
func TestWrongPasswordIsRefused(t *testing.T) {
	users := peers.Users(6, "secret") // user0001..user0006
	h := newHarness(t, users, nil)
	h.start()

	var bad []peers.Cred
	for _, u := range users[:5] {
		bad = append(bad, peers.Cred{User: u.User, Password: "wrong-" + u.Password})
	}
	bad = append(bad, peers.Cred{User: "ghost0001", Password: "secret"}, peers.Cred{User: "ghost0002", Password: "whatever"})
	res := h.sipp("wrong-password", "register_wrong_password.xml", bad, sippOpts{rate: 20})
	h.expectCalls(res, len(bad), 0)
	if n := len(responses(readMessages(t, res.MsgFile), 200)); n != 0 {
		t.Fatalf("%d REGISTERs with bad credentials got 200", n)
	}

	// A good registration made afterwards shows up; the bindings are a
	// projection of an ordered log, so once it is listed the refused ones
	// would have been too.
	ok := h.sipp("control", "register_auth.xml", users[5:6], sippOpts{})
	h.expectCalls(ok, 1, 0)
	regs := h.waitRegistrations("the control binding of user0006", 10*time.Second, func(r []peers.Registration) bool {
		return len(byAOR(r)[aorOf("user0006")]) == 1
	})
	for _, b := range bad {
		if bs := byAOR(regs)[aorOf(b.User)]; len(bs) != 0 {
			t.Errorf("%s has bindings after a refused REGISTER: %s", b.User, summarize(bs, 3))
		}
	}
	if len(regs) != 1 {
		t.Errorf("the API lists %d bindings, want only user0006's: %s", len(regs), summarize(regs, 10))
	}
}

// A user configured by HA1 alone (users: {user, ha1}, no password) registers
// with its password over UDP and over TCP (one connection to the address
// UDP is served on too); a wrong password is still refused. Each run has its
// own contact port, so the user ends up with two bindings, one per transport.
func TestHA1OnlyUserRegistersOverUDPAndTCP(t *testing.T) {
	sum := md5.Sum([]byte("bob:" + domain + ":bobs-secret"))
	h := newHarness(t, nil, func(c *peers.TandemConfig) {
		c.HA1Users = []peers.HA1User{{User: "bob", HA1: hex.EncodeToString(sum[:])}}
	})
	h.start()
	bob := []peers.Cred{{User: "bob", Password: "bobs-secret"}}
	for _, transport := range []string{"", "t1"} {
		res := h.sipp("ha1-"+transport, "register_auth.xml", bob, sippOpts{transport: transport})
		h.expectCalls(res, 1, 0)
	}
	regs := h.waitRegistrations("bob's two bindings", 10*time.Second, func(r []peers.Registration) bool {
		return len(byAOR(r)[aorOf("bob")]) == 2
	})
	t.Logf("bindings: %s", summarize(regs, 3))
	var tcp bool
	for _, b := range byAOR(regs)[aorOf("bob")] {
		tcp = tcp || strings.HasPrefix(b.Source, "tcp:") && strings.Contains(b.Contact, "transport=TCP")
	}
	if !tcp {
		t.Errorf("no binding made over TCP: %s", summarize(regs, 3))
	}
	wrong := h.sipp("ha1-wrong", "register_wrong_password.xml", []peers.Cred{{User: "bob", Password: "not-bobs"}}, sippOpts{})
	h.expectCalls(wrong, 1, 0)
	if n := len(responses(readMessages(t, wrong.MsgFile), 200)); n != 0 {
		t.Fatal("a wrong password for an HA1 user got 200")
	}
}

// A REGISTER with Expires: 0 for the registered contact removes its binding.
func TestExpiresZeroRemovesBinding(t *testing.T) {
	users := peers.Users(2, "secret")
	h := newHarness(t, users, nil)
	h.start()
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	aor := aorOf("user0001")

	res := h.sipp("register", "register_expires.xml", users, sippOpts{port: port, keys: map[string]string{"expires": "3600"}})
	h.expectCalls(res, 2, 0)
	h.waitRegistrations("bindings of user0001 and user0002", 10*time.Second, func(r []peers.Registration) bool {
		m := byAOR(r)
		return len(m[aor]) == 1 && len(m[aorOf("user0002")]) == 1
	})

	// Same contact (same local port), a new Call-ID, Expires: 0.
	res = h.sipp("unregister", "register_expires.xml", users[:1], sippOpts{port: port, keys: map[string]string{"expires": "0"}})
	h.expectCalls(res, 1, 0)
	ok := responses(readMessages(t, res.MsgFile), 200)
	if len(ok) != 1 {
		t.Fatalf("%d 200 responses to the removal, want 1", len(ok))
	}
	contact := fmt.Sprintf("user0001@127.0.0.1:%d", port)
	for _, c := range contactsOf(ok[0].Headers("Contact", "m")) {
		if strings.Contains(c, contact) {
			t.Errorf("the 200 to Expires: 0 still lists the removed contact: %q", c)
		}
	}
	regs := h.waitRegistrations("user0001's binding to be removed", 10*time.Second, func(r []peers.Registration) bool {
		return len(byAOR(r)[aor]) == 0
	})
	if bs := byAOR(regs)[aorOf("user0002")]; len(bs) != 1 {
		t.Errorf("user0002 has %d bindings after user0001 unregistered, want 1", len(bs))
	}
}

// Refreshing a registration (same contact, same Call-ID, higher CSeq) keeps
// one binding and gives it the new expiry.
func TestRefreshKeepsOneBinding(t *testing.T) {
	users := peers.Users(1, "secret")
	h := newHarness(t, users, nil)
	h.start()
	port, err := peers.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	aor := aorOf("user0001")

	start := time.Now()
	res := h.sipp("refresh", "register_refresh.xml", users, sippOpts{port: port, keys: map[string]string{"expires1": "300", "expires2": "3600"}})
	h.expectCalls(res, 1, 0)

	// The 200 to the refresh lists one binding, with the new expiry.
	oks := responses(readMessages(t, res.MsgFile), 200)
	if len(oks) != 2 {
		t.Fatalf("%d 200 responses, want 2 (register, refresh)", len(oks))
	}
	cs := contactsOf(oks[1].Headers("Contact", "m"))
	if len(cs) != 1 || !strings.Contains(strings.ToLower(cs[0]), "expires=3600") {
		t.Errorf("the 200 to the refresh lists contacts %q, want exactly one with expires=3600", cs)
	}

	regs := h.waitRegistrations("user0001's binding with the refreshed expiry", 10*time.Second, func(r []peers.Registration) bool {
		bs := byAOR(r)[aor]
		if len(bs) == 0 {
			return false
		}
		exp, err := bs[0].Expires()
		return err == nil && exp.After(start.Add(3000*time.Second))
	})
	bs := byAOR(regs)[aor]
	if len(bs) != 1 {
		t.Fatalf("%s has %d bindings after a refresh, want 1: %s", aor, len(bs), summarize(bs, 5))
	}
	exp, _ := bs[0].Expires()
	if lo, hi := start.Add(3600*time.Second), time.Now().Add(3600*time.Second+5*time.Second); exp.Before(lo) || exp.After(hi) {
		t.Errorf("expires_at %s after the refresh, want now+3600s (%s .. %s)", bs[0].ExpiresAt, lo.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339))
	}
}

// An Expires below min_expires gets 423 Interval Too Brief with Min-Expires,
// and no binding.
func TestExpiresBelowMinimumGets423(t *testing.T) {
	users := peers.Users(2, "secret")
	h := newHarness(t, users, func(c *peers.TandemConfig) { c.MinExpires = 60 })
	h.start()

	res := h.sipp("too-brief", "register_too_brief.xml", users[:1], sippOpts{keys: map[string]string{"expires": "10"}})
	h.expectCalls(res, 1, 0)
	r423 := responses(readMessages(t, res.MsgFile), 423)
	if len(r423) != 1 {
		t.Fatalf("%d 423 responses, want 1", len(r423))
	}
	if me := r423[0].Headers("Min-Expires", ""); len(me) != 1 || me[0] != "60" {
		t.Errorf("423 Min-Expires %q, want [60]", me)
	}

	ok := h.sipp("control", "register_auth.xml", users[1:], sippOpts{})
	h.expectCalls(ok, 1, 0)
	regs := h.waitRegistrations("the control binding of user0002", 10*time.Second, func(r []peers.Registration) bool {
		return len(byAOR(r)[aorOf("user0002")]) == 1
	})
	if bs := byAOR(regs)[aorOf("user0001")]; len(bs) != 0 {
		t.Errorf("user0001 has a binding after 423: %s", summarize(bs, 3))
	}
}

// Bindings survive a crash: after SIGKILL and a restart on the same data dir
// the API lists the same bindings with the same expiry; a binding whose
// expiry passed while tandem was down is gone, with a BindingExpired event.
func TestRestartRecoversBindingsAndExpiresLapsedOnes(t *testing.T) {
	users := peers.Users(21, "secret")
	long, short := users[:20], users[20:]
	shortAOR := aorOf(short[0].User)
	h := newHarness(t, users, func(c *peers.TandemConfig) { c.MinExpires = 1 })
	h.start()

	res := h.sipp("register-long", "register_expires.xml", long, sippOpts{rate: 100, keys: map[string]string{"expires": "3600"}})
	h.expectCalls(res, len(long), 0)
	before := h.waitRegistrations("20 bindings", 10*time.Second, func(r []peers.Registration) bool { return len(r) == len(long) })

	// The short binding: its 200 means it is durable (durable before
	// visible), so kill at once, before it can expire while tandem runs.
	res = h.sipp("register-short", "register_expires.xml", short, sippOpts{keys: map[string]string{"expires": "2"}})
	sippDone := time.Now()
	h.kill()
	killedAt := time.Now()
	h.expectCalls(res, 1, 0)
	if oks := responses(readMessages(t, res.MsgFile), 200); len(oks) != 1 {
		t.Fatalf("%d 200 responses for the short registration, want 1", len(oks))
	}
	t.Logf("SIGKILLed tandem %v after sipp got the short registration's 200", killedAt.Sub(sippDone).Round(time.Millisecond))

	// Let the 2 s expiry pass while tandem is down.
	time.Sleep(time.Until(killedAt.Add(3 * time.Second)))
	h.start()

	after := h.waitRegistrations("the 20 long bindings back and the lapsed one gone", 10*time.Second, func(r []peers.Registration) bool {
		return len(r) == len(long) && len(byAOR(r)[shortAOR]) == 0
	})
	was := byAOR(before)
	now := byAOR(after)
	for _, u := range long {
		aor := aorOf(u.User)
		b0, b1 := was[aor], now[aor]
		if len(b0) != 1 || len(b1) != 1 {
			t.Errorf("%s: %d bindings before the crash, %d after, want 1 and 1", aor, len(b0), len(b1))
			continue
		}
		e0, err0 := b0[0].Expires()
		e1, err1 := b1[0].Expires()
		if err0 != nil || err1 != nil || !e0.Equal(e1) {
			t.Errorf("%s: expires_at %q before the crash, %q after, want the same", aor, b0[0].ExpiresAt, b1[0].ExpiresAt)
		}
		if b0[0].Contact != b1[0].Contact {
			t.Errorf("%s: contact %q before the crash, %q after", aor, b0[0].Contact, b1[0].Contact)
		}
	}

	evs := h.waitEvents(shortAOR, "a tandem.events.v1.BindingExpired event", 10*time.Second, func(e []peers.Event) bool {
		return hasEvent(e, "tandem.events.v1.BindingExpired")
	})
	checkEventStream(t, shortAOR, evs)
	long0, err := h.tandem.Events(aorOf(long[0].User))
	if err != nil {
		t.Fatalf("events of %s: %v", aorOf(long[0].User), err)
	}
	if hasEvent(long0, "tandem.events.v1.BindingExpired") {
		t.Errorf("%s has a BindingExpired event but its binding is current: %s", aorOf(long[0].User), eventTypes(long0))
	}
	checkEventStream(t, aorOf(long[0].User), long0)
}

// checkEventStream checks the fields every event carries: a type, a time,
// and versions and positions that increase.
func checkEventStream(t *testing.T, aor string, evs []peers.Event) {
	t.Helper()
	if len(evs) == 0 {
		t.Errorf("%s: no events", aor)
		return
	}
	for i, e := range evs {
		if e.Type == "" || e.Time == "" {
			t.Errorf("%s: event %d lacks type or time: %v", aor, i, e.Raw)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); e.Time != "" && err != nil {
			t.Errorf("%s: event %d time %q: %v", aor, i, e.Time, err)
		}
		if i > 0 && (e.Version <= evs[i-1].Version || e.Position <= evs[i-1].Position) {
			t.Errorf("%s: versions/positions do not increase: %s", aor, eventTypes(evs))
			break
		}
	}
}
