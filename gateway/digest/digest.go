// Package digest implements the server side of SIP digest authentication
// (RFC 3261 22, RFC 7616 with the SIP algorithms of RFC 8760): challenges
// for MD5 and SHA-256 with qop=auth, self-validating nonces that expire (and
// are then answered with stale=true), and nonce-count replay rejection.
//
// The stack names github.com/icholy/digest for digest; its parser proved too
// slow for the server's hot path (see ParseCredentials), so parsing and
// challenge formatting are ours, checked against it by a differential fuzz
// test, and it remains the independent client our tests answer challenges
// with. The checks a server needs (nonce integrity and age, realm, uri, nc
// replay, the response itself) are ours in any case. Unknown users are verified
// against a per-process derived HA1, so that answers and timing do not
// reveal which users exist.
//
// An Authenticator is safe for concurrent use.
package digest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/tandemswitch/tandem/internal/clock"
)

// HA1Source finds a user's HA1 (hex H(user:realm:password)) for an
// algorithm ("MD5" or "SHA-256"). ok is false for an unknown user, or one
// without an HA1 for that algorithm. Called concurrently.
type HA1Source func(user, algorithm string) (ha1 string, ok bool)

// Options configure an Authenticator.
type Options struct {
	Realm string
	// Algorithms offered, most preferred first. Default MD5, SHA-256.
	Algorithms []string
	// NonceTTL: a nonce older than this is stale. Default 5 minutes.
	NonceTTL time.Duration
	// MaxTrackedNonces bounds the replay guard. Default 1,000,000.
	MaxTrackedNonces int
	// Secret keys nonces and fake HA1s. Default: 32 random bytes. Nodes of a
	// cluster share one so that any node can check any node's nonce.
	Secret []byte
	Clock  clock.Clock
	Users  HA1Source
}

// Outcome of a verification.
type Outcome int

const (
	// OK: credentials are valid; Result.User is authenticated.
	OK Outcome = iota
	// Challenge: no usable credentials (none for our realm, an unknown or
	// forged nonce, an unsupported algorithm): answer 401/407 with a fresh
	// challenge.
	Challenge
	// Stale: the response was right but the nonce expired or its count was
	// replayed: answer 401/407 with a fresh challenge and stale=true.
	Stale
	// Forbidden: wrong password or unknown user: answer 403.
	Forbidden
	// Malformed: the header cannot be parsed or lacks required fields, or
	// its uri does not match the request: answer 400 with Result.Reason.
	Malformed
)

func (o Outcome) String() string {
	return [...]string{"ok", "challenge", "stale", "forbidden", "malformed"}[o]
}

// Result of Verify.
type Result struct {
	Outcome Outcome
	User    string // the claimed user name (authenticated only when OK)
	Reason  string // for Malformed and Forbidden: why, for logs and 400s
}

// Authenticator issues challenges and verifies credentials.
type Authenticator struct {
	opts        Options
	guard       *replayGuard
	quotedRealm string
	opaqueVal   string
	macs        sync.Pool // of *macState
}

// New returns an Authenticator.
func New(opts Options) (*Authenticator, error) {
	if opts.Realm == "" {
		return nil, fmt.Errorf("digest: empty realm")
	}
	if len(opts.Algorithms) == 0 {
		opts.Algorithms = []string{"MD5", "SHA-256"}
	}
	for _, a := range opts.Algorithms {
		if a != "MD5" && a != "SHA-256" {
			return nil, fmt.Errorf("digest: unsupported algorithm %q", a)
		}
	}
	if opts.NonceTTL <= 0 {
		opts.NonceTTL = 5 * time.Minute
	}
	if opts.MaxTrackedNonces <= 0 {
		opts.MaxTrackedNonces = 1_000_000
	}
	if len(opts.Secret) == 0 {
		opts.Secret = make([]byte, 32)
		if _, err := rand.Read(opts.Secret); err != nil {
			return nil, fmt.Errorf("digest: secret: %w", err)
		}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Users == nil {
		return nil, fmt.Errorf("digest: no user source")
	}
	a := &Authenticator{opts: opts, guard: newReplayGuard(opts.MaxTrackedNonces, opts.NonceTTL), quotedRealm: quote(opts.Realm)}
	m := hmac.New(sha256.New, opts.Secret)
	m.Write([]byte("opaque:" + opts.Realm))
	a.opaqueVal = hex.EncodeToString(m.Sum(nil)[:12])
	secret := opts.Secret
	a.macs.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
	return a, nil
}

// Challenges returns one header value per offered algorithm, most preferred
// first, for WWW-Authenticate (401) or Proxy-Authenticate (407).
func (a *Authenticator) Challenges(stale bool) []string {
	nonce := a.newNonce()
	out := make([]string, 0, len(a.opts.Algorithms))
	for _, alg := range a.opts.Algorithms {
		c := `Digest realm=` + a.quotedRealm + `, nonce="` + nonce + `", opaque="` + a.opaqueVal +
			`", algorithm=` + alg + `, qop="auth"`
		if stale {
			c += ", stale=true"
		}
		out = append(out, c)
	}
	return out
}

// Nonce layout: 8 bytes issue time (unix ns, big endian), 8 random bytes,
// 16 bytes of HMAC-SHA256(secret, first 16 bytes); base64url, 43 chars.
const (
	nonceRaw  = 32
	nonceText = 43 // base64.RawURLEncoding.EncodedLen(nonceRaw)
)

func (a *Authenticator) newNonce() string {
	var b [nonceRaw]byte
	binary.BigEndian.PutUint64(b[:8], uint64(a.opts.Clock.Now().UnixNano()))
	_, _ = rand.Read(b[8:16])
	a.nonceMAC(b[:16], b[16:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// nonceMAC writes the first len(out) bytes of HMAC-SHA256(secret, in) to
// out. The keyed hashes are pooled: hmac.New per nonce was a measurable
// share of the allocations under REGISTER load.
func (a *Authenticator) nonceMAC(in, out []byte) {
	m := a.macs.Get().(*macState)
	m.h.Reset()
	n := copy(m.in[:], in)
	m.h.Write(m.in[:n])
	copy(out, m.h.Sum(m.sum[:0]))
	a.macs.Put(m)
}

// macState is a pooled HMAC with buffers of its own for what goes in and
// out: the callers' buffers, handed through the hash.Hash interface, would
// escape to the heap.
type macState struct {
	h   hash.Hash
	in  [16]byte
	sum [sha256.Size]byte
}

// nonceTime checks a nonce's integrity and returns its issue time.
func (a *Authenticator) nonceTime(nonce string) (time.Time, bool) {
	// Decoded from a copy on the stack: DecodeString allocated per request.
	var src [nonceText]byte
	if len(nonce) != nonceText {
		return time.Time{}, false
	}
	copy(src[:], nonce)
	var b [nonceRaw]byte
	if n, err := base64.RawURLEncoding.Decode(b[:], src[:]); err != nil || n != nonceRaw {
		return time.Time{}, false
	}
	var mac [16]byte
	a.nonceMAC(b[:16], mac[:])
	if !hmac.Equal(mac[:], b[16:]) {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), true
}

// Verify checks the value of an Authorization or Proxy-Authorization header
// for a request with method. txKey identifies the request's transaction
// (top Via branch, Call-ID, CSeq): a retransmission of an accepted request
// (same nonce, count and txKey) is accepted again, so that a stateless
// server can answer it as it did the first time; any other reuse of a
// nonce-count is a replay. uriMatches tells whether the credentials' uri
// names the request's Request-URI (RFC 7616 3.4.6); the caller compares,
// since it holds the parsed request. An empty header means no credentials
// (Challenge).
func (a *Authenticator) Verify(header, method, txKey string, uriMatches func(digestURI string) bool) Result {
	if strings.TrimSpace(header) == "" {
		return Result{Outcome: Challenge}
	}
	cr, err := parseAndCheck(header)
	if err != nil {
		return Result{Outcome: Malformed, Reason: err.Error()}
	}
	res := Result{User: cr.Username}
	if cr.Realm != a.opts.Realm {
		res.Outcome = Challenge // credentials for another realm
		return res
	}
	alg := cr.Algorithm
	if alg == "" {
		alg = "MD5" // RFC 7616 3.4: absent means MD5
	}
	if !a.offers(alg) {
		res.Outcome = Challenge
		return res
	}
	issued, ok := a.nonceTime(cr.Nonce)
	if !ok || cr.Opaque != "" && cr.Opaque != a.opaqueVal {
		res.Outcome = Challenge // not a nonce of ours
		return res
	}
	if !uriMatches(cr.URI) {
		res.Outcome, res.Reason = Malformed, fmt.Sprintf("digest uri %q does not match the Request-URI", cr.URI)
		return res
	}

	// From here on a known and an unknown user do the same work.
	ha1, known := a.opts.Users(cr.Username, alg)
	if !known {
		ha1 = a.fakeHA1(cr.Username, alg)
	}
	var want [2 * sha256.Size]byte
	match := equalHexFold(appendResponse(want[:0], alg, ha1, cr.Nonce, cr.Nc, cr.Cnonce, cr.QOP, method, cr.URI), cr.Response)
	if !known || !match {
		res.Outcome, res.Reason = Forbidden, "wrong credentials"
		return res
	}
	now := a.opts.Clock.Now()
	if age := now.Sub(issued); age > a.opts.NonceTTL || age < -time.Minute {
		res.Outcome = Stale
		return res
	}
	nc := cr.Nc
	if cr.QOP == "" {
		nc = 1 // RFC 2069 style: the nonce is single-use
	}
	if !a.guard.accept(cr.Nonce, nc, txKey, now) {
		res.Outcome = Stale
		return res
	}
	res.Outcome = OK
	return res
}

func (a *Authenticator) offers(alg string) bool {
	for _, x := range a.opts.Algorithms {
		if x == alg {
			return true
		}
	}
	return false
}

func (a *Authenticator) fakeHA1(user, alg string) string {
	m := hmac.New(sha256.New, a.opts.Secret)
	m.Write([]byte("nouser:" + user))
	seed := m.Sum(nil)
	if alg == "SHA-256" {
		return hex.EncodeToString(seed)
	}
	return hex.EncodeToString(seed[:16])
}

// parseAndCheck parses a credentials header and checks that it carries
// every field a response needs (RFC 7616 3.4).
func parseAndCheck(header string) (*Credentials, error) {
	cr, err := ParseCredentials(header)
	if err != nil {
		return nil, fmt.Errorf("bad digest credentials: %v", err)
	}
	switch {
	case cr.Username == "":
		return nil, fmt.Errorf("digest credentials without username")
	case cr.Nonce == "":
		return nil, fmt.Errorf("digest credentials without nonce")
	case cr.URI == "":
		return nil, fmt.Errorf("digest credentials without uri")
	case cr.Response == "":
		return nil, fmt.Errorf("digest credentials without response")
	case cr.QOP != "" && cr.QOP != "auth":
		return nil, fmt.Errorf("unsupported qop %q", cr.QOP)
	case cr.QOP == "auth" && (cr.Cnonce == "" || cr.Nc == 0):
		return nil, fmt.Errorf("qop=auth needs cnonce and a positive nc")
	case cr.Userhash:
		return nil, fmt.Errorf("userhash is not supported")
	}
	return cr, nil
}

// appendResponse appends the expected digest response (RFC 7616 3.4.1),
// in lower-case hex, to dst. It works in stack buffers: the strings,
// fmt.Sprintf and hash objects of a straightforward version were a good
// share of Verify's cost under REGISTER load.
func appendResponse(dst []byte, alg, ha1, nonce string, nc uint32, cnonce, qop, method, uri string) []byte {
	var in [256]byte
	b := append(in[:0], method...)
	b = append(b, ':')
	b = append(b, uri...)
	var ha2 [2 * sha256.Size]byte
	h2 := appendHash(ha2[:0], alg, b)
	b = append(in[:0], ha1...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	if qop != "" {
		var n [4]byte // nc: eight lower-case hex digits
		binary.BigEndian.PutUint32(n[:], nc)
		b = hex.AppendEncode(b, n[:])
		b = append(b, ':')
		b = append(b, cnonce...)
		b = append(b, ':')
		b = append(b, qop...)
		b = append(b, ':')
	}
	b = append(b, h2...)
	return appendHash(dst, alg, b)
}

// appendHash appends the lower-case hex hash of data under alg ("MD5" or
// "SHA-256") to dst.
func appendHash(dst []byte, alg string, data []byte) []byte {
	if alg == "SHA-256" {
		sum := sha256.Sum256(data)
		return hex.AppendEncode(dst, sum[:])
	}
	sum := md5.Sum(data)
	return hex.AppendEncode(dst, sum[:])
}

// equalHexFold tells, in time that depends only on the lengths, whether got
// is the lower-case hex want in any letter case (RFC 7616 does not fix
// the case of the response's hex digits).
func equalHexFold(want []byte, got string) bool {
	if len(got) != len(want) {
		return false
	}
	var diff byte
	for i := range len(want) {
		c := got[i]
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A'
		}
		diff |= c ^ want[i]
	}
	return diff == 0
}
