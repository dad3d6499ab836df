package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const good = `node_id: n1
data_dir: ./data
sip:
  listen: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
  domain: example.test
  min_expires: 60
  max_expires: 3600
http:
  listen: 127.0.0.1:8080
users:
  - {user: alice, password: secret}
  - {user: bob, ha1: "0123456789abcdef0123456789abcdef"}
`

func TestParseGood(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "n1" || c.SIP.Domain != "example.test" || len(c.Users) != 2 {
		t.Fatalf("decoded %+v", c)
	}
	if c.SIP.DefaultExpires != 3600 || c.SIP.NonceTTL != 300 || c.SIP.DigestAlgorithms[0] != "MD5" {
		t.Fatalf("defaults not applied: %+v", c.SIP)
	}
	ha1, ok := c.Users[0].HA1For("MD5", "example.test")
	// md5("alice:example.test:secret")
	if !ok || len(ha1) != 32 {
		t.Fatalf("HA1For = %q %v", ha1, ok)
	}
	if c.CDR.Sink != "sqlite" || c.CDRSQLitePath() != "data/projections/cdr.sqlite" {
		t.Fatalf("CDR defaults: %+v, %s", c.CDR, c.CDRSQLitePath())
	}
	if c.Calls.MaxRate != 0 || c.Calls.MaxActive != 0 || c.Calls.OverloadRetryAfter != 5 {
		t.Fatalf("calls limits default: %+v", c.Calls)
	}
	if c.Store.CommitWindow() != 2*time.Millisecond {
		t.Fatalf("store.commit_window_us default: %v", c.Store.CommitWindow())
	}
	if _, ok := c.Users[1].HA1For("SHA-256", "example.test"); ok {
		t.Fatal("a user with only an MD5 ha1 cannot have a SHA-256 HA1")
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, doc, key string
		line           int
	}{
		{"unknown top key", good + "bogus: 1\n", "bogus", 13},
		{"unknown nested key", strings.Replace(good, "  domain:", "  domian: x\n  domain:", 1), "sip.domian", 5},
		{"wrong type", strings.Replace(good, "min_expires: 60", "min_expires: sixty", 1), "sip.min_expires", 6},
		{"missing required", strings.Replace(good, "  domain: example.test\n", "", 1), "sip.domain", 3},
		{"missing node_id", strings.Replace(good, "node_id: n1\n", "", 1), "node_id", 0},
		{"bad listen", strings.Replace(good, "udp:127.0.0.1:5060\"", "sctp:127.0.0.1:5060\"", 1), "sip.listen[0]", 4},
		{"bad ha1", strings.Replace(good, "0123456789abcdef0123456789abcdef", "xyz", 1), "users[1].ha1", 12},
		{"duplicate user", strings.Replace(good, "user: bob", "user: alice", 1), "users[1].user", 12},
		{"user without secret", strings.Replace(good, ", password: secret", "", 1), "users[0]", 11},
		{"max below min", strings.Replace(good, "max_expires: 3600", "max_expires: 10", 1), "sip.max_expires", 7},
		{"unknown cdr sink", good + "cdr:\n  sink: mysql\n", "cdr.sink", 14},
		{"postgres without dsn", good + "cdr:\n  sink: postgres\n", "cdr.postgres_dsn", 13},
		{"commit window too long", good + "store:\n  commit_window_us: 50001\n", "store.commit_window_us", 14},
		{"negative call rate", good + "calls:\n  max_rate: -1\n", "calls.max_rate", 14},
		{"negative active calls", good + "calls:\n  max_active: -5\n", "calls.max_active", 14},
		{"retry-after out of range", good + "calls:\n  overload_retry_after: 7200\n", "calls.overload_retry_after", 14},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *config.Error", err)
			}
			if ce.Key != tc.key || ce.Line != tc.line {
				t.Fatalf("err = %v: key %q line %d, want key %q line %d", err, ce.Key, ce.Line, tc.key, tc.line)
			}
		})
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, doc := range []string{"", "[1,2", "- a\n- b\n", "node_id: [\n"} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse(%q) accepted garbage", doc)
		}
	}
}

func TestStoreCommitWindow(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"store:\n  commit_window_us: 750\n", 750 * time.Microsecond},
		{"store:\n  commit_window_us: -1\n", 0},
		{"store:\n  commit_window_us: 50000\n", 50 * time.Millisecond},
	} {
		c, err := Parse([]byte(good + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Store.CommitWindow(); got != tc.want {
			t.Errorf("%q: CommitWindow() = %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
