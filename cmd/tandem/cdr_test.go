package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/api"
	"github.com/tandemswitch/tandem/internal/node"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/cdr"
)

// dataDirWithCalls writes two finished calls and one ringing into a fresh
// data directory's event store and closes it.
func dataDirWithCalls(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	calls := map[string][]proto.Message{
		"c1": {&eventpb.CallStarted{Caller: "sip:alice@example.test", Callee: "sip:bob@example.test"},
			&eventpb.LegAttempted{Leg: 1}, &eventpb.CallAnswered{Leg: 1},
			&eventpb.CallEnded{By: "callee", SipStatus: 200, Q850Cause: 16}},
		"c2": {&eventpb.CallStarted{Caller: "sip:alice@example.test", Callee: "sip:carol@example.test"},
			&eventpb.LegAttempted{Leg: 1}, &eventpb.CallFailed{Reason: "rejected", SipStatus: 486, Q850Cause: 17}},
		"c3": {&eventpb.CallStarted{Caller: "sip:bob@example.test", Callee: "sip:alice@example.test"}},
	}
	for i, id := range []string{"c1", "c2", "c3"} {
		for j, m := range calls[id] {
			env, err := events.Wrap(m, t0.Add(time.Duration(i)*time.Minute+time.Duration(j)*time.Second), "n1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Append(context.Background(), "call-"+id, int64(j), []*eventpb.Envelope{env}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCDRCommandsOnADataDirectory(t *testing.T) {
	dir := dataDirWithCalls(t)
	if _, err := run("cdr", "export", "--data", dir); err == nil || !strings.Contains(err.Error(), "no CDR database") {
		t.Fatalf("export before any projection ran: %v", err)
	}
	if _, err := run("projections", "status", "--data", dir); err == nil || !strings.Contains(err.Error(), "no CDR database") {
		t.Fatalf("status before any projection ran: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "projections", "cdr.sqlite")); err == nil {
		t.Fatal("status created the CDR database")
	}
	out, err := run("projections", "rebuild", "cdr", "--data", dir)
	if err != nil || !strings.Contains(out, "rebuilt cdr: checkpoint 8 of 8 events") {
		t.Fatalf("rebuild: %q %v", out, err)
	}
	out, err = run("projections", "status", "--data", dir)
	if err != nil || !strings.Contains(out, "cdr") || !strings.Contains(out, " 8 ") {
		t.Fatalf("status: %q %v", out, err)
	}
	csv, err := run("cdr", "export", "--data", dir, "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "c1,") || !strings.Contains(lines[1], ",ANSWERED,") ||
		!strings.HasPrefix(lines[2], "c2,") || !strings.Contains(lines[2], ",BUSY,") {
		t.Fatalf("export:\n%s", csv)
	}
	// --from/--to select by start time; a file output.
	outFile := filepath.Join(t.TempDir(), "cdrs.json")
	if _, err := run("cdr", "export", "--data", dir, "--format", "json", "--from", "2026-11-22T09:00:30Z", "--to", "2026-11-23", "-o", outFile); err != nil {
		t.Fatal(err)
	}
	// c1 started at 09:00:00 (before --from), c3 is still ringing.
	if b, err := os.ReadFile(outFile); err != nil || !strings.Contains(string(b), `"call_id": "c2"`) ||
		strings.Contains(string(b), `"c1"`) || strings.Contains(string(b), `"c3"`) {
		t.Fatalf("--from/--to export to a file: %s %v", b, err)
	}
	// A rebuild again gives the same bytes.
	if _, err := run("projections", "rebuild", "cdr", "--data", dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := run("cdr", "export", "--data", dir, "--format", "csv"); again != csv {
		t.Fatalf("after a second rebuild:\n%s\nbefore:\n%s", again, csv)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cdr", "export"}, "--config FILE, --data DIR or --server URL"},
		{[]string{"cdr", "export", "--data", dir, "--server", "http://127.0.0.1:1"}, "exclude each other"},
		{[]string{"cdr", "export", "--data", dir, "--format", "xml"}, "--format"},
		{[]string{"cdr", "export", "--data", dir, "--from", "yesterday"}, "--from"},
		{[]string{"cdr", "export", "--data", dir, "--from", "2026-11-23", "--to", "2026-11-22"}, "is not before"},
		{[]string{"projections", "rebuild", "nope", "--data", dir}, `no projection "nope"`},
		{[]string{"cdr", "export", "--server", "ftp://x"}, "--server"},
	} {
		if _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want it to mention %q", tc.args, err, tc.want)
		}
	}

	// While a "node" holds the store, local commands are refused with advice.
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := run("projections", "status", "--data", dir); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("status beside a running node: %v", err)
	}
}

func TestCDRCommandsAgainstAServer(t *testing.T) {
	dir := dataDirWithCalls(t)
	ctx := context.Background()
	st, err := embedded.Open(embedded.Options{Dir: node.StoreDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sink, err := cdr.OpenSQLite(ctx, filepath.Join(dir, "projections", "cdr.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	bg := &projections.Background{R: &projections.Runner{Store: st, P: cdr.New(sink)}}
	srv := httptest.NewServer((&api.Server{Store: st, Projections: map[string]*projections.Background{"cdr": bg}, CDRs: sink}).Handler())
	defer srv.Close()

	out, err := run("projections", "rebuild", "cdr", "--server", srv.URL)
	if err != nil || !strings.Contains(out, "checkpoint 8 of 8") {
		t.Fatalf("remote rebuild: %q %v", out, err)
	}
	defer bg.Stop()
	out, err = run("cdr", "export", "--server", srv.URL, "--format", "csv", "--from", "2026-11-22")
	if err != nil || strings.Count(out, "\n") != 3 {
		t.Fatalf("remote export: %q %v", out, err)
	}
	out, err = run("projections", "status", "--server", srv.URL)
	if err != nil || !strings.Contains(out, "cdr") {
		t.Fatalf("remote status: %q %v", out, err)
	}
	if _, err := run("projections", "rebuild", "nope", "--server", srv.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("remote rebuild of an unknown projection: %v", err)
	}
	if _, err := run("cdr", "export", "--server", srv.URL, "--from", "nonsense"); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("bad --from: %v", err)
	}
}
