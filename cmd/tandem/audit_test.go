package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/api"
	"github.com/tandemswitch/tandem/internal/node"
)

// auditDataDir returns a data directory whose store holds three events,
// closed (as when no node runs on it).
func auditDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*eventpb.Envelope
	for leg := uint32(1); leg <= 3; leg++ {
		env, _ := events.Wrap(&eventpb.CallAnswered{Leg: leg}, time.Unix(1700000000, 0), "n1", &eventpb.Cause{})
		evs = append(evs, env)
	}
	_, err = st.Append(context.Background(), "call-x", events.NoStream, evs)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// tamperedCopy copies a data directory and deletes event 2 from the copy's
// store, behind the store's back.
func tamperedCopy(t *testing.T, dir string) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(node.StoreDir(cp), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The key of position 2 in the global order: 'e' | 8 bytes big-endian
	// (see events/embedded's package documentation).
	if err := db.Delete(binary.BigEndian.AppendUint64([]byte{'e'}, 2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestAuditVerifyLocal(t *testing.T) {
	dir := auditDataDir(t)
	bad := tamperedCopy(t, dir)
	cfg := filepath.Join(t.TempDir(), "tandem.yaml")
	doc := "node_id: n1\ndata_dir: " + dir + "\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\n  domain: example.test\nhttp:\n  listen: 127.0.0.1:0\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // "" for success
		out     []string
	}{
		{"intact --data", []string{"--data", dir}, "", []string{"events checked: 3", "head: position 3, hash ", "chain intact"}},
		{"intact --config", []string{"--config", cfg}, "", []string{"chain intact"}},
		{"intact json", []string{"--data", dir, "--format", "json"}, "", []string{`"intact": true`, `"head_position": 3`}},
		{"tampered", []string{"--data", bad}, "not intact: position 2, missing",
			[]string{"NOT INTACT: first problem at position 2: missing", "position 3 follows position 1"}},
		{"tampered json", []string{"--data", bad, "--format", "json"}, "not intact",
			[]string{`"intact": false`, `"kind": "missing"`, `"position": 2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append([]string{"audit", "verify"}, tc.args...)...)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "Usage:") {
				t.Errorf("usage printed for a finding:\n%s", out)
			}
		})
	}
	// The JSON report is the API's: it decodes into the same type.
	out, _ := run("audit", "verify", "--data", bad, "--format", "json")
	var rep embedded.AuditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.FirstProblem == nil || rep.FirstProblem.Kind != embedded.ProblemMissing {
		t.Fatalf("json report %q: %+v, %v", out, rep, err)
	}
}

// TestAuditVerifyServer: with --server the report comes from a running
// node's API (here the real handler over an open store).
func TestAuditVerifyServer(t *testing.T) {
	dir := auditDataDir(t)
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	good := httptest.NewServer((&api.Server{Store: st, Audit: st.Verify}).Handler())
	defer good.Close()
	tampered := httptest.NewServer((&api.Server{Store: st, Audit: func(context.Context) (*embedded.AuditReport, error) {
		return &embedded.AuditReport{EventsChecked: 3, HeadPosition: 3, FirstProblem: &embedded.Problem{
			Position: 2, Kind: embedded.ProblemAltered, Message: "position 2 hashes to 00, but position 3 holds prev_hash 11", DetectedBy: 3}}, nil
	}}).Handler())
	defer tampered.Close()
	failing := httptest.NewServer((&api.Server{Store: st, Audit: func(context.Context) (*embedded.AuditReport, error) {
		return nil, errors.New("read error")
	}}).Handler())
	defer failing.Close()
	notReport := httptest.NewServer((&api.Server{Store: st, Metrics: nil}).Handler()) // no audit: 501
	defer notReport.Close()

	for _, tc := range []struct {
		name, url, wantErr string
		out                []string
	}{
		{"intact", good.URL, "", []string{"events checked: 3", "chain intact"}},
		{"tampered", tampered.URL, "not intact: position 2, altered", []string{"NOT INTACT: first problem at position 2: altered"}},
		{"walk failed", failing.URL, "500 Internal Server Error: audit verify: read error", nil},
		{"no audit", notReport.URL, "501", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run("audit", "verify", "--server", tc.url)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestAuditVerifyBadUsage: wrong flags and places give an error naming the
// flag or the path.
func TestAuditVerifyBadUsage(t *testing.T) {
	dir := auditDataDir(t)
	missing := filepath.Join(t.TempDir(), "nowhere")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no place", nil, "--config FILE, --data DIR or --server URL"},
		{"two places", []string{"--data", dir, "--server", "http://127.0.0.1:1"}, "exclude each other"},
		{"bad server URL", []string{"--server", "ftp://x"}, `--server "ftp://x"`},
		{"bad format", []string{"--data", dir, "--format", "xml"}, `--format "xml": want text or json`},
		{"unknown flag", []string{"--data", dir, "--verbose"}, "unknown flag: --verbose"},
		{"argument", []string{"--data", dir, "extra"}, `unknown command "extra"`},
		{"missing data dir", []string{"--data", missing}, missing},
		{"missing config", []string{"--config", missing + ".yaml"}, missing + ".yaml"},
		{"server down", []string{"--server", "http://127.0.0.1:1"}, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append([]string{"audit", "verify"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q\n%s", err, tc.want, out)
			}
		})
	}
	// A store a running node holds is refused with advice.
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := run("audit", "verify", "--data", dir); err == nil || !strings.Contains(err.Error(), "use --server URL") {
		t.Fatalf("verify of a store in use: %v", err)
	}
}

// mainArgsEnv makes TestMainProcess run main with these arguments
// (separated by newlines), so that a test can see its exit status.
const mainArgsEnv = "TANDEM_TEST_MAIN_ARGS"

// TestMainProcess is the child of TestAuditVerifyExitStatus; without
// mainArgsEnv it does nothing.
func TestMainProcess(t *testing.T) {
	args := os.Getenv(mainArgsEnv)
	if args == "" {
		return
	}
	os.Args = append([]string{"tandem"}, strings.Split(args, "\n")...)
	main()
	os.Exit(0)
}

// TestAuditVerifyExitStatus: the binary exits 0 only when the chain is
// intact, 1 with the report printed when it is not, and non-zero on a
// usage error.
func TestAuditVerifyExitStatus(t *testing.T) {
	dir := auditDataDir(t)
	bad := tamperedCopy(t, dir)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"intact", []string{"--data", dir}, 0, "chain intact", ""},
		{"tampered", []string{"--data", bad}, 1, "first problem at position 2: missing", "tandem: the event log is not intact: position 2, missing"},
		{"usage", []string{"--format", "json"}, 1, "", "say where to work"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainProcess$")
			cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(append([]string{"audit", "verify"}, tc.args...), "\n"))
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
}
