package registrar

// A recorded registration history: the events this actor writes for one
// AOR through add, refresh, expiry and removal, kept as a fixture under
// projections/replay/testdata (events/history format) for the replay
// golden tests. The test checks that the fixture is still what the actor
// writes; after a change that is meant, re-record it with
//
//	go test ./actors/registrar -run TestRecordedHistory -record
//
// and review the ladders that change (go test ./projections/replay -update).

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/history"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
)

var record = flag.Bool("record", false, "rewrite the recorded registration history in projections/replay/testdata")

const recordedHistory = "../../projections/replay/testdata/registration-lifecycle.events.json"

func TestRecordedHistory(t *testing.T) {
	st := memstore.New()
	clk := clock.NewFake(t0)
	r := newRegistry(t, st, clk)
	register := func(callID string, cseq uint32, branch, ua, src, uri string, expires int64) {
		t.Helper()
		cmd := &Register{AOR: aor, CallID: callID, CSeq: cseq, Expires: -1, UserAgent: ua, Source: src,
			Contacts: []ContactSpec{contact(uri, expires)}}
		cause := &eventpb.Cause{CallId: callID, Cseq: cseq, Method: "REGISTER", Branch: branch, Source: src}
		if _, err := r.Register(context.Background(), cmd, cause); err != nil {
			t.Fatal(err)
		}
	}
	const deskPhone, softPhone = "sip:alice@10.0.0.1:5061", "sip:alice@10.0.0.2:5062"
	register("ra@10.0.0.1", 1, "z9hG4bKra1", "DeskPhone/2.1", "udp:10.0.0.1:5061", deskPhone, 600)
	clk.Advance(30 * time.Second)
	register("rb@10.0.0.2", 1, "z9hG4bKrb1", "SoftPhone/1.0", "tcp:10.0.0.2:5062", softPhone, 120)
	clk.Advance(120 * time.Second) // the soft phone's binding expires
	waitFor(t, "expiry", func() bool { return len(streamTypes(t, st, aor)) == 3 })
	clk.Advance(150 * time.Second)
	register("ra@10.0.0.1", 2, "z9hG4bKra2", "DeskPhone/2.1", "udp:10.0.0.1:5061", deskPhone, 600)
	clk.Advance(75 * time.Second)
	register("ra@10.0.0.1", 3, "z9hG4bKra3", "DeskPhone/2.1", "udp:10.0.0.1:5061", deskPhone, 0)

	envs, err := st.ReadAll(context.Background(), 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := history.CheckFile(recordedHistory, envs, *record); err != nil {
		t.Fatalf("%v\nIf the change is meant, re-record with -record and review the replay goldens.", err)
	}
}
