package history

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
)

func TestRoundTripIsStable(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var envs []*eventpb.Envelope
	for i, ev := range []proto.Message{
		&eventpb.BindingAdded{Aor: "sip:alice@example.test", Binding: &eventpb.Binding{Contact: "sip:alice@10.0.0.1"}},
		&eventpb.BindingRemoved{Aor: "sip:alice@example.test", Contact: "sip:alice@10.0.0.1"},
	} {
		env, err := events.Wrap(ev, t0.Add(time.Duration(i)*time.Second), "n1", &eventpb.Cause{Method: "REGISTER", Cseq: uint32(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		env.Stream, env.Version, env.Position = "reg-sip:alice@example.test", uint64(i+1), uint64(i+1)
		envs = append(envs, env)
	}
	var a, b bytes.Buffer
	if err := Write(&a, envs); err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !proto.Equal(got[0], envs[0]) || !proto.Equal(got[1], envs[1]) {
		t.Fatalf("round trip changed the history:\n%s", a.String())
	}
	if err := Write(&b, got); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatalf("Write is not stable:\n%s\n%s", a.String(), b.String())
	}
	if n := strings.Count(a.String(), "\n"); n != 4 {
		t.Fatalf("want one envelope a line, got %d lines:\n%s", n, a.String())
	}
}

func TestReadRejectsWhatIsNotAHistory(t *testing.T) {
	for _, in := range []string{``, `{}`, `[{"version":"x"}]`, `[{"bogus":1}]`} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("Read(%q) succeeded", in)
		}
	}
}

func TestAppendKeepsStreamVersions(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	env := func(stream string, v uint64) *eventpb.Envelope {
		e, _ := events.Wrap(&eventpb.BindingRemoved{Contact: "sip:x@y"}, t0, "n1", nil)
		e.Stream, e.Version = stream, v
		return e
	}
	st := memstore.New()
	if err := Append(ctx, st, []*eventpb.Envelope{env("reg-a", 1), env("reg-b", 1), env("reg-a", 2)}); err != nil {
		t.Fatal(err)
	}
	got, _ := st.ReadStream(ctx, "reg-a", 1, 10)
	if len(got) != 2 || got[1].Position != 3 {
		t.Fatalf("reg-a = %v", got)
	}
	if err := Append(ctx, st, []*eventpb.Envelope{env("reg-a", 1)}); !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("a history over an existing stream: %v", err)
	}
	if _, err := ReadFile("missing.json"); err == nil {
		t.Fatal("ReadFile of a missing file succeeded")
	}
}
