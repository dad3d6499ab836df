package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	icdigest "github.com/icholy/digest"

	"github.com/tandemswitch/tandem/internal/clock"
)

const realm = "example.test"

func users(user, alg string) (string, bool) {
	if user != "alice" {
		return "", false
	}
	if alg == "SHA-256" {
		return "", false // alice has only an MD5 HA1 in this test
	}
	sum := md5.Sum([]byte("alice:" + realm + ":secret"))
	return hex.EncodeToString(sum[:]), true
}

func newAuth(t *testing.T, clk clock.Clock, algs ...string) *Authenticator {
	t.Helper()
	a, err := New(Options{Realm: realm, Algorithms: algs, NonceTTL: time.Minute, Clock: clk, Users: func(u, alg string) (string, bool) {
		if u == "bob" && alg == "SHA-256" {
			return "d5e8d3d43e3c1b4b7c2e0c6d0b6b4a8e8c4f4e9d2f0a1b3c5d7e9f1a3b5c7d9e", true
		}
		return users(u, alg)
	}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// answer computes credentials for challenge header ch with the third-party
// client implementation, so our server math is checked against theirs.
func answer(t *testing.T, ch, user, pass, method, uri string, count int) string {
	t.Helper()
	c, err := icdigest.ParseChallenge(ch)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := icdigest.Digest(c, icdigest.Options{Method: method, URI: uri, Username: user, Password: pass, Count: count})
	if err != nil {
		t.Fatal(err)
	}
	return cr.String()
}

func TestVerifyOutcomes(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	a := newAuth(t, clk)
	chs := a.Challenges(false)
	if len(chs) != 2 || !strings.Contains(chs[0], "algorithm=MD5") || !strings.Contains(chs[1], "algorithm=SHA-256") ||
		!strings.Contains(chs[0], `qop="auth"`) || !strings.Contains(chs[0], `realm="example.test"`) {
		t.Fatalf("challenges %q", chs)
	}
	uri := "sip:example.test"

	good := answer(t, chs[0], "alice", "secret", "REGISTER", uri, 1)
	if r := a.Verify(good, "REGISTER", "tx", is(uri)); r.Outcome != OK || r.User != "alice" {
		t.Fatalf("good credentials: %+v", r)
	}
	// The same request again (a retransmission: same transaction) is
	// accepted again; the same nonce-count in another request is a replay.
	if r := a.Verify(good, "REGISTER", "tx", is(uri)); r.Outcome != OK {
		t.Fatalf("retransmission: %+v", r)
	}
	if r := a.Verify(good, "REGISTER", "other-tx", is(uri)); r.Outcome != Stale {
		t.Fatalf("replayed nc: %+v", r)
	}
	// A higher count on the same nonce is fine.
	if r := a.Verify(answer(t, chs[0], "alice", "secret", "REGISTER", uri, 2), "REGISTER", "tx", is(uri)); r.Outcome != OK {
		t.Fatalf("nc=2: %+v", r)
	}
	// Wrong password and unknown users are both forbidden.
	if r := a.Verify(answer(t, chs[0], "alice", "nope", "REGISTER", uri, 3), "REGISTER", "tx", is(uri)); r.Outcome != Forbidden {
		t.Fatalf("wrong password: %+v", r)
	}
	if r := a.Verify(answer(t, chs[0], "mallory", "secret", "REGISTER", uri, 1), "REGISTER", "tx", is(uri)); r.Outcome != Forbidden {
		t.Fatalf("unknown user: %+v", r)
	}
	// SHA-256 for a user without a SHA-256 HA1 cannot succeed.
	if r := a.Verify(answer(t, chs[1], "alice", "secret", "REGISTER", uri, 1), "REGISTER", "tx", is(uri)); r.Outcome != Forbidden {
		t.Fatalf("sha-256 without ha1: %+v", r)
	}
	// Method and uri are covered by the response.
	if r := a.Verify(answer(t, chs[0], "alice", "secret", "INVITE", uri, 4), "REGISTER", "tx", is(uri)); r.Outcome != Forbidden {
		t.Fatalf("method mismatch: %+v", r)
	}
	if r := a.Verify(answer(t, chs[0], "alice", "secret", "REGISTER", "sip:other.test", 5), "REGISTER", "tx", is(uri)); r.Outcome != Malformed {
		t.Fatalf("uri mismatch: %+v", r)
	}
	// A nonce past its TTL with a right response is stale.
	old := a.Challenges(false)[0]
	clk.Advance(2 * time.Minute)
	if r := a.Verify(answer(t, old, "alice", "secret", "REGISTER", uri, 1), "REGISTER", "tx", is(uri)); r.Outcome != Stale {
		t.Fatalf("expired nonce: %+v", r)
	}
	// A forged nonce is simply re-challenged.
	forged := strings.Replace(answer(t, a.Challenges(false)[0], "alice", "secret", "REGISTER", uri, 1), `nonce="`, `nonce="x`, 1)
	if r := a.Verify(forged, "REGISTER", "tx", is(uri)); r.Outcome != Challenge {
		t.Fatalf("forged nonce: %+v", r)
	}
	// Another realm, no header.
	if r := a.Verify(strings.Replace(good, realm, "other.realm", 1), "REGISTER", "tx", is(uri)); r.Outcome != Challenge {
		t.Fatalf("other realm: %+v", r)
	}
	if r := a.Verify("", "REGISTER", "tx", is(uri)); r.Outcome != Challenge {
		t.Fatalf("no header: %+v", r)
	}
}

func TestVerifySHA256(t *testing.T) {
	a, err := New(Options{Realm: realm, Algorithms: []string{"SHA-256"}, Users: func(u, alg string) (string, bool) {
		if u == "carol" && alg == "SHA-256" {
			ha1 := fmt.Sprintf("%x", sha256sum("carol:"+realm+":pw"))
			return ha1, true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	ch := a.Challenges(false)[0]
	if r := a.Verify(answer(t, ch, "carol", "pw", "REGISTER", "sip:example.test", 1), "REGISTER", "tx", is("sip:example.test")); r.Outcome != OK {
		t.Fatalf("sha-256: %+v", r)
	}
	// MD5 credentials are not accepted where only SHA-256 is offered.
	md5ch := strings.Replace(ch, "SHA-256", "MD5", 1)
	if r := a.Verify(answer(t, md5ch, "carol", "pw", "REGISTER", "sip:example.test", 1), "REGISTER", "tx", is("sip:example.test")); r.Outcome != Challenge {
		t.Fatalf("md5 when only sha-256 offered: %+v", r)
	}
}

func TestMalformedCredentials(t *testing.T) {
	a := newAuth(t, clock.Real{})
	for _, h := range []string{
		"Basic YWxpY2U6c2VjcmV0",
		`Digest realm="example.test"`,
		`Digest username="alice", realm="example.test", nonce="n", uri="sip:x", response="r", qop=auth`,
		`Digest username="alice", realm="example.test", nonce="n", uri="sip:x", response="r", qop=auth-int, nc=00000001, cnonce="c"`,
		`Digest username="alice", nc=zz`,
		`Digest username="alice`,
	} {
		if r := a.Verify(h, "REGISTER", "tx", is("sip:x")); r.Outcome != Malformed || r.Reason == "" {
			t.Errorf("Verify(%q) = %+v, want Malformed with a reason", h, r)
		}
	}
}

func TestReplayGuardBounded(t *testing.T) {
	g := newReplayGuard(64, time.Minute)
	now := time.Now()
	accepted := 0
	for i := 0; i < 1000; i++ {
		if g.accept(fmt.Sprintf("n%d", i), 1, "tx", now) {
			accepted++
		}
	}
	if accepted > 64+64 || accepted < 32 {
		t.Fatalf("accepted %d nonces with max 64 (64 shards of 2)", accepted)
	}
	// After two TTLs everything old is forgotten and room is back.
	now = now.Add(time.Minute)
	g.accept("x", 1, "tx", now)
	now = now.Add(time.Minute)
	if !g.accept("fresh", 1, "tx", now) {
		t.Fatal("guard did not free room after rotation")
	}
}

// FuzzVerify: no header value may panic the verifier, and only a correct
// response can pass.
func FuzzVerify(f *testing.F) {
	a, _ := New(Options{Realm: realm, Users: users, Secret: []byte("fuzz-secret")})
	ch := a.Challenges(false)[0]
	c, _ := icdigest.ParseChallenge(ch)
	cr, _ := icdigest.Digest(c, icdigest.Options{Method: "REGISTER", URI: "sip:example.test", Username: "alice", Password: "secret", Count: 1})
	f.Add(cr.String())
	f.Add(`Digest username="alice", realm="example.test", nonce="", uri="sip:example.test", response="00"`)
	f.Add(`Digest username=alice,realm="example.test",nc=ffffffff,qop=auth,cnonce="",response=""`)
	f.Add("Digest ,,,,=,\"")
	f.Fuzz(func(t *testing.T, h string) {
		r := a.Verify(h, "REGISTER", "tx", is("sip:example.test"))
		if r.Outcome == OK && r.User != "alice" {
			t.Fatalf("authenticated %q from %q", r.User, h)
		}
	})
}

func sha256sum(s string) []byte {
	h := newSHA256()
	h.Write([]byte(s))
	return h.Sum(nil)
}

var newSHA256 = sha256.New

// is returns a uriMatches func accepting exactly want.
func is(want string) func(string) bool { return func(u string) bool { return u == want } }

// TestAppendResponse checks the allocation-free response against the
// formula of RFC 7616 3.4.1 written out with strings, for both algorithms,
// with and without qop, and with inputs longer than its stack buffers.
func TestAppendResponse(t *testing.T) {
	h := func(alg, s string) string {
		if alg == "SHA-256" {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		}
		sum := md5.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	long := strings.Repeat("x", 300)
	for _, alg := range []string{"MD5", "SHA-256"} {
		for _, c := range []struct {
			nonce, cnonce, qop, uri string
			nc                      uint32
		}{
			{"abc", "def", "auth", "sip:example.test", 1},
			{"abc", "def", "auth", "sip:example.test", 0xdeadbeef},
			{"abc", "", "", "sip:example.test", 0},
			{long, long, "auth", "sip:" + long, 7},
		} {
			ha1 := h(alg, "alice:"+realm+":secret")
			ha2 := h(alg, "REGISTER:"+c.uri)
			want := h(alg, ha1+":"+c.nonce+":"+ha2)
			if c.qop != "" {
				want = h(alg, fmt.Sprintf("%s:%s:%08x:%s:%s:%s", ha1, c.nonce, c.nc, c.cnonce, c.qop, ha2))
			}
			if got := string(appendResponse(nil, alg, ha1, c.nonce, c.nc, c.cnonce, c.qop, "REGISTER", c.uri)); got != want {
				t.Errorf("%s %+v: %s, want %s", alg, c, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var buf [64]byte
		appendResponse(buf[:0], "MD5", "0123456789abcdef0123456789abcdef", "nonce", 1, "cnonce", "auth", "REGISTER", "sip:example.test")
	}); n != 0 {
		t.Errorf("appendResponse allocates %v times", n)
	}
}

// TestResponseCase: the response's hex digits are accepted in either case,
// and a response that differs in one digit or in length is not.
func TestResponseCase(t *testing.T) {
	a := newAuth(t, clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)))
	uri := "sip:example.test"
	ch := a.Challenges(false)[0]
	for i, c := range []struct {
		edit func(resp string) string
		want Outcome
	}{
		{strings.ToUpper, OK},
		{func(r string) string {
			return r[:len(r)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", r[len(r)-1])+1)%16])
		}, Forbidden},
		{func(r string) string { return r[:len(r)-2] }, Forbidden},
		{func(r string) string { return r + "00" }, Forbidden},
	} {
		cr := answer(t, ch, "alice", "secret", "REGISTER", uri, i+1)
		start := strings.Index(cr, `response="`) + len(`response="`)
		end := start + strings.IndexByte(cr[start:], '"')
		edited := cr[:start] + c.edit(cr[start:end]) + cr[end:]
		if r := a.Verify(edited, "REGISTER", fmt.Sprint("tx", i), is(uri)); r.Outcome != c.want {
			t.Errorf("case %d (%s): %v, want %v", i, edited, r.Outcome, c.want)
		}
	}
}
