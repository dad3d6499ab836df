// Package config loads and validates Tandem's YAML configuration.
//
// Decoding is strict: an unknown key, a value of the wrong type, or a missing
// required field stops start-up with an error naming the key and its line.
// Every field documents its unit and default; Load fills defaults and then
// validates. YAML is decoded with gopkg.in/yaml.v3 (a well-kept library whose
// node API gives us the line numbers we report).
package config

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole node configuration.
type Config struct {
	// NodeID names this node in every event it writes. Required.
	NodeID string `yaml:"node_id"`
	// DataDir holds the embedded event store. Required. A relative path is
	// taken from the working directory.
	DataDir string `yaml:"data_dir"`
	SIP     SIP    `yaml:"sip"`
	HTTP    HTTP   `yaml:"http"`
	// Users who may register (and later call). Empty means nobody can.
	Users []User `yaml:"users"`
	Log   Log    `yaml:"log"`
	Calls Calls  `yaml:"calls"`
	CDR   CDR    `yaml:"cdr"`
	Store Store  `yaml:"store"`
}

// Store configures the embedded event store.
type Store struct {
	// CommitWindowUS: microseconds the store, while appends overlap, gathers
	// them into one group before it writes and fsyncs the group (a lone
	// append never waits). Each append then waits up to this long more;
	// in exchange there are fewer fsyncs, which cost CPU: at 1,200 calls/s,
	// 2,000 instead of 500 halved the fsyncs and took about 11% off the CPU
	// per call (callbench). Default 2000; negative: no window (a group is
	// what queued during the previous fsync); at most 50000.
	CommitWindowUS int `yaml:"commit_window_us"`
}

// CommitWindow is Store.CommitWindowUS as a duration: zero for no window.
func (s Store) CommitWindow() time.Duration {
	if s.CommitWindowUS < 0 {
		return 0
	}
	return time.Duration(s.CommitWindowUS) * time.Microsecond
}

// CDR configures where the CDR projection writes.
type CDR struct {
	// Sink is sqlite (default: embedded, no server needed) or postgres
	// (shared analytics).
	Sink string `yaml:"sink"`
	// SQLitePath is the SQLite database file. Default
	// <data_dir>/projections/cdr.sqlite.
	SQLitePath string `yaml:"sqlite_path"`
	// PostgresDSN is the PostgreSQL connection string (libpq keyword/value
	// or postgres:// URL). Required when sink is postgres.
	PostgresDSN string `yaml:"postgres_dsn"`
}

// CDRSQLitePath is the SQLite file of the CDR projection.
func (c *Config) CDRSQLitePath() string {
	if c.CDR.SQLitePath != "" {
		return c.CDR.SQLitePath
	}
	return filepath.Join(c.DataDir, "projections", "cdr.sqlite")
}

// Calls configures the B2BUA.
type Calls struct {
	// NoAnswerTimeout: seconds a call may ring unanswered before its B legs
	// are cancelled and the caller gets 480. Default 60.
	NoAnswerTimeout int `yaml:"no_answer_timeout"`
	// MaxForks: most contacts one call forks to in parallel. Default 8.
	MaxForks int `yaml:"max_forks"`
	// MaxRate: new calls a second this node takes (a token bucket holding
	// one second's worth); an INVITE beyond it gets 503 Service
	// Unavailable with Retry-After (RFC 3261 21.5.4), so that the calls in
	// progress keep the node's capacity. Default 0: no limit.
	MaxRate int `yaml:"max_rate"`
	// MaxActive: calls in progress on this node (ringing or answered, as
	// the live-calls projection counts them) beyond which a new INVITE
	// gets 503 with Retry-After. Default 0: no limit.
	MaxActive int `yaml:"max_active"`
	// OverloadRetryAfter: the Retry-After, in seconds, of those 503s.
	// Default 5.
	OverloadRetryAfter int `yaml:"overload_retry_after"`
}

// SIP configures the SIP side: listeners, registrar limits, digest auth and
// message limits.
type SIP struct {
	// Listen lists "transport:host:port" sockets; transport is udp or tcp.
	// Required, at least one.
	Listen []string `yaml:"listen"`
	// Domain is the domain we are registrar for and the digest realm.
	// Required.
	Domain string `yaml:"domain"`
	// Aliases are further host names accepted as ours in request URIs and
	// AORs (the listen IPs are always accepted). Default none.
	Aliases []string `yaml:"aliases"`
	// MinExpires, seconds: a registration asking for less (but not 0) gets
	// 423 Interval Too Brief with Min-Expires. Default 60. Lower it only for
	// tests: short registrations cost events.
	MinExpires int `yaml:"min_expires"`
	// MaxExpires, seconds: longer requests are clamped to it. Default 3600.
	MaxExpires int `yaml:"max_expires"`
	// DefaultExpires, seconds: used when a REGISTER names no expiry.
	// Default 3600, clamped into [min_expires, max_expires].
	DefaultExpires int `yaml:"default_expires"`
	// MaxContacts is the most bindings one AOR may hold. Default 10.
	MaxContacts int `yaml:"max_contacts"`
	// NonceTTL, seconds: how long a digest nonce stays fresh; an older one
	// is answered with stale=true. Default 300.
	NonceTTL int `yaml:"nonce_ttl"`
	// DigestAlgorithms offered in challenges, most preferred first (RFC
	// 8760): MD5 and/or SHA-256. Default [MD5, SHA-256]: MD5 first because
	// most deployed phones (and sipp) only take the first challenge.
	DigestAlgorithms []string `yaml:"digest_algorithms"`
	// MaxMessageBytes: a larger request gets 513 Message Too Large.
	// Default 16384 bytes.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxHeaders: a request with more header fields gets 400. Default 100.
	MaxHeaders int `yaml:"max_headers"`
	// MaxTrackedNonces bounds the memory that guards against nonce-count
	// replay (entries live for two nonce TTLs). When full, new nonces are
	// answered with a fresh challenge. Default 1,000,000 (about 100 MB).
	MaxTrackedNonces int `yaml:"max_tracked_nonces"`
	// RequestTimeout, milliseconds: how long the gateway waits for an actor
	// before answering 500. Default 5000.
	RequestTimeoutMS int `yaml:"request_timeout_ms"`
}

// HTTP configures the API, health and metrics listener.
type HTTP struct {
	// Listen is host:port. Required.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/. Default false: it
	// exposes internals, so enable it only on a trusted listener.
	Pprof bool `yaml:"pprof"`
}

// User is one subscriber. Exactly one of Password or HA1 is required;
// HA1SHA256 may accompany HA1 so that SHA-256 digests work without the
// password on disk.
type User struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// HA1 is hex md5(user:realm:password).
	HA1 string `yaml:"ha1"`
	// HA1SHA256 is hex sha256(user:realm:password). Optional.
	HA1SHA256 string `yaml:"ha1_sha256"`
}

// Log configures logging.
type Log struct {
	// Level: debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}

// Error is a configuration error naming the key and, where known, the line.
type Error struct {
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: %s (line %d): %s", e.Key, e.Line, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Msg)
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Defaults returns a configuration with every default applied and nothing
// else set (no data_dir, listeners or users): what tools use when they are
// given a data directory rather than a configuration file.
func Defaults() *Config {
	var cfg Config
	cfg.applyDefaults()
	return &cfg
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// Parse decodes and validates a configuration document.
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{Key: "(document)", Msg: "empty configuration"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			m := yamlLine.FindStringSubmatch(te.Errors[0])
			if m != nil {
				line, _ := strconv.Atoi(m[1])
				return nil, &Error{Key: keyAtLine(root.Content[0], "", line), Line: line, Msg: m[2]}
			}
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	v := validator{root: root.Content[0]}
	cfg.applyDefaults()
	v.check(&cfg)
	if v.err != nil {
		return nil, v.err
	}
	return &cfg, nil
}

// keyAtLine finds the dotted key whose key or value starts at line.
func keyAtLine(n *yaml.Node, prefix string, line int) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if k.Line == line && (val.Kind == yaml.ScalarNode || val.Line != line) {
				return path
			}
			if found := keyAtLine(val, path, line); found != "" {
				return found
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			if item.Kind == yaml.ScalarNode && item.Line == line {
				return path
			}
			if found := keyAtLine(item, path, line); found != "" {
				return found
			}
		}
	}
	return ""
}

// lineOf returns the line of the dotted key path ("sip.domain",
// "users[1].user"), or of its nearest existing parent.
func lineOf(root *yaml.Node, path string) int {
	n := root
	line := 0
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := (*yaml.Node)(nil)
		if n != nil && n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return line
		}
		if idx >= 0 {
			if next.Kind != yaml.SequenceNode || idx >= len(next.Content) {
				return line
			}
			next = next.Content[idx]
			line = next.Line
		}
		n = next
	}
	return line
}

func (c *Config) applyDefaults() {
	s := &c.SIP
	if s.MinExpires == 0 {
		s.MinExpires = 60
	}
	if s.MaxExpires == 0 {
		s.MaxExpires = 3600
	}
	if s.DefaultExpires == 0 {
		s.DefaultExpires = 3600
	}
	if s.MaxContacts == 0 {
		s.MaxContacts = 10
	}
	if s.NonceTTL == 0 {
		s.NonceTTL = 300
	}
	if len(s.DigestAlgorithms) == 0 {
		s.DigestAlgorithms = []string{"MD5", "SHA-256"}
	}
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = 16384
	}
	if s.MaxHeaders == 0 {
		s.MaxHeaders = 100
	}
	if s.MaxTrackedNonces == 0 {
		s.MaxTrackedNonces = 1_000_000
	}
	if s.RequestTimeoutMS == 0 {
		s.RequestTimeoutMS = 5000
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Calls.NoAnswerTimeout == 0 {
		c.Calls.NoAnswerTimeout = 60
	}
	if c.CDR.Sink == "" {
		c.CDR.Sink = "sqlite"
	}
	if c.Calls.OverloadRetryAfter == 0 {
		c.Calls.OverloadRetryAfter = 5
	}
	if c.Calls.MaxForks == 0 {
		c.Calls.MaxForks = 8
	}
	if c.Store.CommitWindowUS == 0 {
		c.Store.CommitWindowUS = 2000
	}
}

type validator struct {
	root *yaml.Node
	err  error
}

func (v *validator) fail(key, format string, args ...any) {
	if v.err == nil {
		v.err = &Error{Key: key, Line: lineOf(v.root, key), Msg: fmt.Sprintf(format, args...)}
	}
}

func (v *validator) check(c *Config) {
	if strings.TrimSpace(c.NodeID) == "" {
		v.fail("node_id", "required")
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.fail("data_dir", "required")
	}
	s := c.SIP
	if len(s.Listen) == 0 {
		v.fail("sip.listen", "required: at least one \"udp:host:port\" or \"tcp:host:port\"")
	}
	for i, l := range s.Listen {
		if _, _, err := ParseListen(l); err != nil {
			v.fail(fmt.Sprintf("sip.listen[%d]", i), "%v", err)
		}
	}
	if strings.TrimSpace(s.Domain) == "" {
		v.fail("sip.domain", "required")
	}
	if s.MinExpires < 1 {
		v.fail("sip.min_expires", "must be at least 1 second, got %d", s.MinExpires)
	}
	if s.MaxExpires < s.MinExpires {
		v.fail("sip.max_expires", "must be >= min_expires (%d), got %d", s.MinExpires, s.MaxExpires)
	}
	if s.DefaultExpires < 1 {
		v.fail("sip.default_expires", "must be at least 1 second, got %d", s.DefaultExpires)
	}
	if s.MaxContacts < 1 {
		v.fail("sip.max_contacts", "must be at least 1, got %d", s.MaxContacts)
	}
	if s.NonceTTL < 1 {
		v.fail("sip.nonce_ttl", "must be at least 1 second, got %d", s.NonceTTL)
	}
	for i, a := range s.DigestAlgorithms {
		if a != "MD5" && a != "SHA-256" {
			v.fail(fmt.Sprintf("sip.digest_algorithms[%d]", i), "unsupported algorithm %q (MD5 or SHA-256)", a)
		}
	}
	if s.MaxMessageBytes < 1024 || s.MaxMessageBytes > 65535 {
		v.fail("sip.max_message_bytes", "must be within 1024..65535, got %d", s.MaxMessageBytes)
	}
	if s.MaxHeaders < 10 {
		v.fail("sip.max_headers", "must be at least 10, got %d", s.MaxHeaders)
	}
	if s.MaxTrackedNonces < 1 {
		v.fail("sip.max_tracked_nonces", "must be at least 1, got %d", s.MaxTrackedNonces)
	}
	if s.RequestTimeoutMS < 1 {
		v.fail("sip.request_timeout_ms", "must be at least 1, got %d", s.RequestTimeoutMS)
	}
	if n := c.Calls.NoAnswerTimeout; n < 1 || n > 3600 {
		v.fail("calls.no_answer_timeout", "must be 1..3600 seconds, got %d", n)
	}
	if n := c.Calls.MaxForks; n < 1 || n > 32 {
		v.fail("calls.max_forks", "must be 1..32, got %d", n)
	}
	if n := c.Calls.MaxRate; n < 0 {
		v.fail("calls.max_rate", "must be 0 (no limit) or more calls a second, got %d", n)
	}
	if n := c.Calls.MaxActive; n < 0 {
		v.fail("calls.max_active", "must be 0 (no limit) or more calls, got %d", n)
	}
	if n := c.Calls.OverloadRetryAfter; n < 1 || n > 3600 {
		v.fail("calls.overload_retry_after", "must be 1..3600 seconds, got %d", n)
	}
	if n := c.Store.CommitWindowUS; n > 50000 {
		v.fail("store.commit_window_us", "must be at most 50000 microseconds (negative: no window), got %d", n)
	}
	switch c.CDR.Sink {
	case "sqlite":
	case "postgres":
		if strings.TrimSpace(c.CDR.PostgresDSN) == "" {
			v.fail("cdr.postgres_dsn", "required when cdr.sink is postgres")
		}
	default:
		v.fail("cdr.sink", "must be sqlite or postgres, got %q", c.CDR.Sink)
	}
	if strings.TrimSpace(c.HTTP.Listen) == "" {
		v.fail("http.listen", "required (host:port)")
	} else if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		v.fail("http.listen", "%v", err)
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.User == "":
			v.fail(key+".user", "required")
		case strings.ContainsAny(u.User, ":@;,<> \t\"\\"):
			v.fail(key+".user", "must not contain ':@;,<> \" \\' or spaces, got %q", u.User)
		case seen[u.User]:
			v.fail(key+".user", "duplicate user %q", u.User)
		}
		seen[u.User] = true
		switch {
		case u.Password == "" && u.HA1 == "":
			v.fail(key, "one of password or ha1 is required")
		case u.Password != "" && (u.HA1 != "" || u.HA1SHA256 != ""):
			v.fail(key, "give either password or ha1/ha1_sha256, not both")
		}
		if u.HA1 != "" && !isHex(u.HA1, 32) {
			v.fail(key+".ha1", "must be 32 hex digits (md5 of user:realm:password)")
		}
		if u.HA1SHA256 != "" && !isHex(u.HA1SHA256, 64) {
			v.fail(key+".ha1_sha256", "must be 64 hex digits (sha256 of user:realm:password)")
		}
		if u.HA1SHA256 != "" && u.HA1 == "" {
			v.fail(key+".ha1", "required with ha1_sha256")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ParseListen splits "udp:127.0.0.1:5060" into network and address.
func ParseListen(s string) (network string, addr netip.AddrPort, err error) {
	network, rest, ok := strings.Cut(s, ":")
	if !ok || (network != "udp" && network != "tcp") {
		return "", netip.AddrPort{}, fmt.Errorf("want \"udp:host:port\" or \"tcp:host:port\", got %q", s)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("bad address in %q: %v (an IP and a port)", s, err)
	}
	return network, ap, nil
}

// HA1For returns the user's hex HA1 for algorithm ("MD5" or "SHA-256") in
// realm, and whether it is known.
func (u User) HA1For(algorithm, realm string) (string, bool) {
	switch algorithm {
	case "MD5":
		if u.HA1 != "" {
			return strings.ToLower(u.HA1), true
		}
		sum := md5.Sum([]byte(u.User + ":" + realm + ":" + u.Password))
		return hex.EncodeToString(sum[:]), true
	case "SHA-256":
		if u.HA1SHA256 != "" {
			return strings.ToLower(u.HA1SHA256), true
		}
		if u.Password == "" {
			return "", false
		}
		sum := sha256.Sum256([]byte(u.User + ":" + realm + ":" + u.Password))
		return hex.EncodeToString(sum[:]), true
	}
	return "", false
}
