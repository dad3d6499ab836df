package peers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/projections"
)

// HA1User is a user configured by its precomputed MD5(user:realm:password).
type HA1User struct {
	User string
	HA1  string
}

// TandemConfig is what WriteTandemConfig puts into a tandem YAML config.
type TandemConfig struct {
	NodeID     string
	DataDir    string
	Domain     string
	SIPListen  []string // e.g. "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"
	HTTPListen string   // e.g. 127.0.0.1:8080
	MinExpires int      // 0: leave out (server default)
	MaxExpires int      // 0: leave out (server default)
	Users      []Cred
	HA1Users   []HA1User
	// NoAnswerTimeout is calls.no_answer_timeout in seconds (0: leave out).
	NoAnswerTimeout int
	// MaxCallRate and MaxActiveCalls are calls.max_rate and
	// calls.max_active (0: leave out).
	MaxCallRate, MaxActiveCalls int
	// Pprof serves Go's profiler on the HTTP listener (http.pprof).
	Pprof bool
	// CDRSink is cdr.sink ("" leaves the default, sqlite); PostgresDSN is
	// cdr.postgres_dsn.
	CDRSink     string
	PostgresDSN string
}

// WriteTandemConfig writes cfg as the YAML that `tandem serve --config` reads.
func WriteTandemConfig(path string, cfg TandemConfig) error {
	q := strconv.Quote
	var b strings.Builder
	node := cfg.NodeID
	if node == "" {
		node = "n1"
	}
	fmt.Fprintf(&b, "node_id: %s\n", q(node))
	fmt.Fprintf(&b, "data_dir: %s\n", q(cfg.DataDir))
	b.WriteString("sip:\n  listen:\n")
	for _, l := range cfg.SIPListen {
		fmt.Fprintf(&b, "    - %s\n", q(l))
	}
	fmt.Fprintf(&b, "  domain: %s\n", q(cfg.Domain))
	if cfg.MinExpires > 0 {
		fmt.Fprintf(&b, "  min_expires: %d\n", cfg.MinExpires)
	}
	if cfg.MaxExpires > 0 {
		fmt.Fprintf(&b, "  max_expires: %d\n", cfg.MaxExpires)
	}
	fmt.Fprintf(&b, "http:\n  listen: %s\n", q(cfg.HTTPListen))
	if cfg.Pprof {
		b.WriteString("  pprof: true\n")
	}
	if len(cfg.Users)+len(cfg.HA1Users) == 0 {
		b.WriteString("users: []\n")
	} else {
		b.WriteString("users:\n")
		for _, u := range cfg.Users {
			fmt.Fprintf(&b, "  - {user: %s, password: %s}\n", q(u.User), q(u.Password))
		}
		for _, u := range cfg.HA1Users {
			fmt.Fprintf(&b, "  - {user: %s, ha1: %s}\n", q(u.User), q(u.HA1))
		}
	}
	if cfg.NoAnswerTimeout > 0 || cfg.MaxCallRate > 0 || cfg.MaxActiveCalls > 0 {
		b.WriteString("calls:\n")
		if cfg.NoAnswerTimeout > 0 {
			fmt.Fprintf(&b, "  no_answer_timeout: %d\n", cfg.NoAnswerTimeout)
		}
		if cfg.MaxCallRate > 0 {
			fmt.Fprintf(&b, "  max_rate: %d\n", cfg.MaxCallRate)
		}
		if cfg.MaxActiveCalls > 0 {
			fmt.Fprintf(&b, "  max_active: %d\n", cfg.MaxActiveCalls)
		}
	}
	if cfg.CDRSink != "" {
		fmt.Fprintf(&b, "cdr:\n  sink: %s\n", q(cfg.CDRSink))
		if cfg.PostgresDSN != "" {
			fmt.Fprintf(&b, "  postgres_dsn: %s\n", q(cfg.PostgresDSN))
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// TandemBinary is bin/tandem under the repository root.
func TandemBinary() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "tandem")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not built (make build): %w", p, err)
	}
	return p, nil
}

// Tandem is a running `tandem serve`.
type Tandem struct {
	*Proc
	Config  string
	HTTPURL string // http://127.0.0.1:PORT
}

// StartTandem starts `bin tandem serve --config cfgPath` with its log in
// logDir/name.log and waits up to ready for GET /healthz to answer 200.
func StartTandem(bin, name, cfgPath, httpListen, logDir string, ready time.Duration) (*Tandem, error) {
	p, err := Start(name, logDir, logDir, []string{"GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn"}, bin, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	t := &Tandem{Proc: p, Config: cfgPath, HTTPURL: "http://" + httpListen}
	if err := WaitHTTP(t.HTTPURL+"/healthz", ready, p.Done()); err != nil {
		p.Kill()
		return nil, fmt.Errorf("tandem not ready: %v\n--- %s (tail)\n%s", err, p.LogPath, p.Tail(40))
	}
	return t, nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// WaitHTTP polls url until it answers 200, for at most timeout; it gives up
// early when exited is closed (the server died).
func WaitHTTP(url string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for i := 0; time.Now().Before(deadline) && i < 10000; i++ {
		select {
		case <-exited:
			return fmt.Errorf("process exited while waiting for %s", url)
		default:
		}
		resp, err := httpClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// Registration is one binding as listed by GET /api/v1/registrations.
type Registration struct {
	AOR       string `json:"aor"`
	Contact   string `json:"contact"`
	ExpiresAt string `json:"expires_at"`
	UserAgent string `json:"user_agent"`
	Source    string `json:"source"`
}

// Expires parses ExpiresAt (RFC 3339).
func (r Registration) Expires() (time.Time, error) {
	return time.Parse(time.RFC3339Nano, r.ExpiresAt)
}

// Event is one event from GET /api/v1/registrations/{aor}/events. Numbers
// may come as JSON numbers or strings (protojson writes 64-bit integers as
// strings); Raw keeps the whole object.
type Event struct {
	Type     string
	Version  int64
	Position int64
	Time     string
	Raw      map[string]any
}

func (e *Event) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &e.Raw); err != nil {
		return err
	}
	e.Type, _ = e.Raw["type"].(string)
	e.Time, _ = e.Raw["time"].(string)
	e.Version = flexInt(e.Raw["version"])
	e.Position = flexInt(e.Raw["position"])
	return nil
}

func flexInt(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func getJSON(u string, out any) error {
	resp, err := httpClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %v: %.300s", u, err, body)
	}
	return nil
}

// Registrations lists every binding.
func (t *Tandem) Registrations() ([]Registration, error) {
	var out []Registration
	err := getJSON(t.HTTPURL+"/api/v1/registrations", &out)
	return out, err
}

// Events lists the events of an AOR (e.g. "sip:alice@example.test"), which
// goes into the path fully escaped (sip%3Aalice%40example.test).
func (t *Tandem) Events(aor string) ([]Event, error) {
	var out []Event
	err := getJSON(t.HTTPURL+"/api/v1/registrations/"+url.QueryEscape(aor)+"/events", &out)
	return out, err
}

// Metrics returns the Prometheus text of GET /metrics.
func (t *Tandem) Metrics() (string, error) {
	resp, err := httpClient.Get(t.HTTPURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return string(b), err
}

// Call is one live call as listed by GET /api/v1/calls.
type Call struct {
	ID         string `json:"id"`
	Caller     string `json:"caller"`
	Callee     string `json:"callee"`
	State      string `json:"state"`
	StartedAt  string `json:"started_at"`
	AnsweredAt string `json:"answered_at"`
	Held       bool   `json:"held"`
	Legs       []struct {
		Leg    int    `json:"leg"`
		Target string `json:"target"`
		State  string `json:"state"`
		Code   int    `json:"code"`
	} `json:"legs"`
}

// Calls lists the live calls.
func (t *Tandem) Calls() ([]Call, error) {
	var out []Call
	err := getJSON(t.HTTPURL+"/api/v1/calls", &out)
	return out, err
}

// CallEvents lists the events of call id.
func (t *Tandem) CallEvents(id string) ([]Event, error) {
	var out []Event
	err := getJSON(t.HTTPURL+"/api/v1/calls/"+url.PathEscape(id)+"/events", &out)
	return out, err
}

// ProjectionStatus is one entry of GET /api/v1/projections.
type ProjectionStatus = projections.Status

// Projections lists the durable projections' progress.
func (t *Tandem) Projections() ([]ProjectionStatus, error) {
	var out []ProjectionStatus
	err := getJSON(t.HTTPURL+"/api/v1/projections", &out)
	return out, err
}
