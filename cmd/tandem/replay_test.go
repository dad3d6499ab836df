package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/history"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/api"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/internal/node"
	"github.com/tandemswitch/tandem/projections/location"
)

const (
	testdata = "../../projections/replay/testdata/"
	callID   = "o54t4qtdfqwvbscm7sszwbxq" // the recorded histories' call
	aor      = "sip:alice@example.test"
)

// loadHistories appends the recorded histories named to st.
func loadHistories(t *testing.T, st events.Store, names ...string) {
	t.Helper()
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = testdata + name + ".events.json"
	}
	if err := history.AppendFiles(context.Background(), st, paths...); err != nil {
		t.Fatal(err)
	}
}

// dataDir makes the data directory of a stopped node holding the
// recorded histories named.
func dataDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	loadHistories(t, st, names...)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// server is a running node's API over the recorded histories named.
func server(t *testing.T, names ...string) string {
	t.Helper()
	st := memstore.New()
	loadHistories(t, st, names...)
	s := &api.Server{Store: st, Location: location.New(), Clock: clock.NewFake(time.Now())}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(testdata + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replay call and replay registration print the golden ladders, from a
// data directory and from a node's API alike.
func TestReplayPrintsTheGoldenLadders(t *testing.T) {
	callDir, regDir := dataDir(t, "call-restart-answered"), dataDir(t, "registration-lifecycle")
	callURL, regURL := server(t, "call-restart-answered"), server(t, "registration-lifecycle")
	for _, f := range []string{"text", "json", "svg"} {
		ext := map[string]string{"text": "txt", "json": "json", "svg": "svg"}[f]
		for _, where := range [][2][]string{
			{{"--data", callDir}, {"--data", regDir}},
			{{"--server", callURL}, {"--server", regURL}},
		} {
			out, err := run(append([]string{"replay", "call", callID, "--format", f}, where[0]...)...)
			if err != nil || out != golden(t, "call-restart-answered.golden."+ext) {
				t.Errorf("replay call %s --format %s: %v\n%s", where[0], f, err, out)
			}
			out, err = run(append([]string{"replay", "registration", aor, "--format", f}, where[1]...)...)
			if err != nil || out != golden(t, "registration-lifecycle.golden."+ext) {
				t.Errorf("replay registration %s --format %s: %v\n%s", where[1], f, err, out)
			}
		}
	}
	// --config works on the config's data_dir; --output writes a file.
	cfg := filepath.Join(t.TempDir(), "tandem.yaml")
	doc := "node_id: n1\ndata_dir: " + callDir + "\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\n  domain: example.test\nhttp:\n  listen: 127.0.0.1:0\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ladder.svg")
	if out, err := run("replay", "call", callID, "--config", cfg, "--format", "svg", "--output", file); err != nil || out != "" {
		t.Fatalf("--config --output: %v %q", err, out)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != golden(t, "call-restart-answered.golden.svg") {
		t.Fatalf("--output wrote %v\n%s", err, b)
	}
}

func TestStateAtFromDataAndServer(t *testing.T) {
	names := []string{"call-hold-unhold", "registration-lifecycle"}
	for _, where := range [][]string{{"--data", dataDir(t, names...)}, {"--server", server(t, names...)}} {
		// 10:00:20: the desk phone is bound and the call is up, on hold.
		out, err := run(append([]string{"state", "--at", "2026-11-22T10:00:20Z", "--format", "json"}, where...)...)
		var snap struct {
			At            string                          `json:"at"`
			Registrations []struct{ AOR, Contact string } `json:"registrations"`
			Calls         []struct{ ID, State string }    `json:"calls"`
		}
		if err != nil || json.Unmarshal([]byte(out), &snap) != nil || snap.At != "2026-11-22T10:00:20.000Z" ||
			len(snap.Registrations) != 1 || snap.Registrations[0].Contact != "sip:alice@10.0.0.1:5061" ||
			len(snap.Calls) != 1 || snap.Calls[0].ID != callID || snap.Calls[0].State != "held" {
			t.Errorf("state %v: %v\n%s", where, err, out)
		}
		// 10:10: nothing.
		out, err = run(append([]string{"state", "--at", "2026-11-22T11:10:00+01:00"}, where...)...)
		if err != nil || !strings.Contains(out, "registrations bound: 0") || !strings.Contains(out, "calls up: 0") {
			t.Errorf("state %v as text: %v\n%s", where, err, out)
		}
	}
}

// Bad input and impossible requests fail with an error that says what is
// wrong, and never touch a store.
func TestReplayAndStateErrors(t *testing.T) {
	dir := dataDir(t, "call-busy")
	url := server(t, "call-busy")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"replay", "call", "aaaaaaaaaaaaaaaaaaaaaaaa", "--data", dir}, "no such call: aaaaaaaaaaaaaaaaaaaaaaaa"},
		{[]string{"replay", "call", "aaaaaaaaaaaaaaaaaaaaaaaa", "--server", url}, "404 Not Found: no such call"},
		{[]string{"replay", "call", "not-a-call", "--data", dir}, `"not-a-call" is not a call id`},
		{[]string{"replay", "call", callID, "--data", dir, "--format", "png"}, `--format: "png" is not a format: want text, json or svg`},
		{[]string{"replay", "call", callID, "--data", dir, "--server", url}, "exclude each other"},
		{[]string{"replay", "call", callID}, "--config FILE, --data DIR or --server URL"},
		{[]string{"replay", "call", "--data", dir}, "accepts 1 arg"},
		{[]string{"replay", "call", callID, "--data", filepath.Join(dir, "nothing-here")}, "nothing-here"},
		{[]string{"replay", "registration", "sip:nobody@example.test", "--data", dir}, "no registration events for sip:nobody@example.test"},
		{[]string{"replay", "registration", "nobody", "--data", dir}, `"nobody" is not an address of record`},
		{[]string{"state", "--at", "yesterday", "--data", dir}, `--at: "yesterday" is not an RFC 3339 time`},
		{[]string{"state", "--data", dir}, `required flag(s) "at" not set`},
		{[]string{"state", "--at", "2026-11-22T10:00:00Z", "--data", dir, "--format", "svg"}, `--format: "svg" is not a format: want text or json`},
		{[]string{"state", "--at", "2026-11-22T10:00:00Z", "--data", dir, "--server", url}, "exclude each other"},
	} {
		out, err := run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v (output %q), want an error saying %q", tc.args, err, out, tc.says)
		}
	}
	// A data directory a running node holds is refused, with advice.
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := run("replay", "call", callID, "--data", dir); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("replay beside a running node: %v", err)
	}
	// A failed replay leaves no output file behind.
	file := filepath.Join(t.TempDir(), "out.txt")
	if _, err := run("replay", "call", "aaaaaaaaaaaaaaaaaaaaaaaa", "--server", url, "--output", file); err == nil {
		t.Error("unknown call succeeded")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("output file left behind: %v", err)
	}
}
