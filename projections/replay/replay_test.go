package replay

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/history"
	"github.com/tandemswitch/tandem/events/memstore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// loadHistory reads a recorded history into a new memory store.
func loadHistory(t *testing.T, path string) (*memstore.Store, []*eventpb.Envelope) {
	t.Helper()
	envs, err := history.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	if err := history.Append(context.Background(), st, envs); err != nil {
		t.Fatal(err)
	}
	return st, envs
}

// golden compares got with testdata/name (or rewrites it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (rewrite with -update if meant); got:\n%s", path, got)
	}
}

// checkXML fails unless b is well-formed XML.
func checkXML(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
	}
}

// goldenLadder renders l in every format and compares each with its
// golden file.
func goldenLadder(t *testing.T, name string, l *Ladder) {
	t.Helper()
	for _, f := range []Format{Text, JSON, SVG} {
		var b bytes.Buffer
		if err := l.Render(&b, f); err != nil {
			t.Fatal(err)
		}
		if f == SVG {
			checkXML(t, b.Bytes())
		}
		golden(t, name+".golden."+map[Format]string{Text: "txt", JSON: "json", SVG: "svg"}[f], b.Bytes())
	}
}

// Every recorded history (written by the actors' own tests) replays to
// its golden ladders, read through the store as the tools read it.
func TestGoldenLadders(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.events.json")
	if err != nil || len(paths) < 10 {
		t.Fatalf("recorded histories: %v %v", paths, err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".events.json")
		t.Run(name, func(t *testing.T) {
			st, envs := loadHistory(t, path)
			var l *Ladder
			var err error
			if aor, ok := strings.CutPrefix(envs[0].GetStream(), "reg-"); ok {
				l, err = ReadRegistration(context.Background(), st, aor)
			} else {
				l, err = ReadCall(context.Background(), st, strings.TrimPrefix(envs[0].GetStream(), "call-"))
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Rows) != len(envs) {
				t.Fatalf("%d rows for %d events", len(l.Rows), len(envs))
			}
			goldenLadder(t, name, l)
		})
	}
}

// A history with an event of a type this binary does not know and one
// that contradicts the stream: both are shown, marked skipped, and leave
// the state as it was; the replay goes on.
func TestUnknownAndContradictoryEventsAreShownAndSkipped(t *testing.T) {
	_, envs := loadHistory(t, "testdata/call-answered-caller-bye.events.json")
	future := &eventpb.Envelope{Stream: envs[0].Stream, Time: envs[4].Time, Node: "n3",
		Cause: &eventpb.Cause{Method: "timer", Source: "audit"}, Type: "tandem.events.v9.CallRecorded", Data: []byte{1, 2, 3}}
	again, err := events.Wrap(&eventpb.CallAnswered{Leg: 1}, envs[4].Time.AsTime(), "n1", envs[4].Cause)
	if err != nil {
		t.Fatal(err)
	}
	again.Stream = envs[0].Stream
	hist := append(append(append([]*eventpb.Envelope{}, envs[:5]...), future, again), envs[5:]...)
	for i, env := range hist {
		env.Version, env.Position = uint64(i+1), uint64(i+1)
	}
	l := CallLadder(strings.TrimPrefix(envs[0].Stream, "call-"), hist)
	u, c := l.Rows[5], l.Rows[6]
	if u.Event != "unknown" || !u.Skipped || u.State != "answered by leg 1" || u.Direction != "timer" {
		t.Errorf("unknown event row %+v", u)
	}
	if c.Event != "CallAnswered" || !c.Skipped || !strings.Contains(c.State, "not applied") {
		t.Errorf("contradictory event row %+v", c)
	}
	if last := l.Rows[len(l.Rows)-1]; last.Skipped || last.State != "ended by caller (normal clearing, Q.850 16)" {
		t.Errorf("the replay did not go on: %+v", last)
	}
	goldenLadder(t, "call-unknown-and-contradictory", l)
}

func TestReadUnknownStreamsAndBadNames(t *testing.T) {
	st := memstore.New()
	ctx := context.Background()
	if _, err := ReadCall(ctx, st, "aaaaaaaaaaaaaaaaaaaaaaaa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown call: %v", err)
	}
	if _, err := ReadRegistration(ctx, st, "sip:nobody@example.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown AOR: %v", err)
	}
	for _, id := range []string{"", "x", "AAAAAAAAAAAAAAAAAAAAAAAA", "aaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaaaa"} {
		if _, err := ReadCall(ctx, st, id); !errors.Is(err, ErrBadInput) {
			t.Errorf("call id %q: %v", id, err)
		}
	}
	for _, aor := range []string{"", "alice@example.test", "sip:alice", "sip:@example.test", "sip:alice@", "tel:+123", "sip:a b@x"} {
		if _, err := ReadRegistration(ctx, st, aor); !errors.Is(err, ErrBadInput) {
			t.Errorf("AOR %q: %v", aor, err)
		}
	}
	for _, s := range []string{"", "xml", "TEXT", "svg "} {
		if _, err := ParseStateFormat(s + "x"); !errors.Is(err, ErrBadInput) {
			t.Errorf("state format %q accepted", s+"x")
		}
	}
	if _, err := ParseStateFormat("svg"); err == nil {
		t.Error("a state as SVG accepted")
	}
	for _, s := range []string{"", "text", "json", "svg"} {
		if _, err := ParseLadderFormat(s); err != nil {
			t.Errorf("ladder format %q: %v", s, err)
		}
	}
	for _, s := range []string{"2026-11-22", "10:00", "2026-11-22 10:00:00", "yesterday"} {
		if _, err := ParseTime(s); !errors.Is(err, ErrBadInput) {
			t.Errorf("time %q accepted", s)
		}
	}
	if at, err := ParseTime("2026-11-22T11:00:00.5+01:00"); err != nil || !at.Equal(time.Date(2026, 11, 22, 10, 0, 0, 5e8, time.UTC)) {
		t.Errorf("ParseTime: %v %v", at, err)
	}
}
