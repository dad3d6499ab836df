// Command replaybench measures how fast the event log is read back: it
// generates a store of -events events (call and registration histories
// shaped like the switch writes them), then times, on that store:
//
//	raw read   every event in global order through events.Store.ReadAll
//	           (checksummed, decoded envelopes): the physical limit the
//	           projections work against
//	rebuild    `tandem projections rebuild cdr`'s work: the CDR projection
//	           reset and folded from position 1 into a fresh SQLite sink
//	replay     every call stream read with ReadStream and folded with the
//	           call actor's own pure Apply, the work of `tandem replay call`
//	           for every call (on all cores)
//
// It prints events/s for each and, as the last line,
// "ratio=<rebuild events/s / raw read events/s>": how much of the read speed
// the fold keeps. Goals: rebuild >= 300,000 events/s, ratio >= 0.5.
//
//	make bench-replay
//	go run ./test/bench/replaybench [-events 1000000] [-dir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"

	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/cdr"
)

func main() {
	n := flag.Int("events", 1_000_000, "events to generate")
	parent := flag.String("dir", "", "directory for the benchmark's data (default os.TempDir()); removed at the end")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the measured phases (not the generation) to this file")
	flag.Parse()
	profilePath = *profile
	if err := run(*n, *parent); err != nil {
		fmt.Fprintln(os.Stderr, "replaybench:", err)
		fmt.Println("ratio=n/a")
		os.Exit(1)
	}
}

var profilePath string

func run(n int, parent string) error {
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "replaybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	fmt.Printf("replaybench: %d events, %d CPUs, data in %s (on disk)\n", n, runtime.NumCPU(), dir)

	st, err := embedded.Open(embedded.Options{Dir: filepath.Join(dir, "events")})
	if err != nil {
		return err
	}
	t0 := time.Now()
	calls, err := generate(ctx, st, n)
	if err != nil {
		st.Close()
		return err
	}
	head := st.Head()
	fmt.Printf("generated %d events (%d calls, the rest registrations) in %v\n", head, len(calls), time.Since(t0).Round(time.Millisecond))
	if err := st.Close(); err != nil {
		return err
	}
	// Measure on a store opened read-only, as the tools open it, with a
	// cold process cache of it (the OS page cache stays warm for all three).
	st, err = embedded.Open(embedded.Options{Dir: filepath.Join(dir, "events"), ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()

	if profilePath != "" {
		f, err := os.Create(profilePath)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// Raw read.
	t0 = time.Now()
	read := 0
	for pos := uint64(0); pos < head; {
		b, err := st.ReadAll(ctx, pos+1, 4096)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			return fmt.Errorf("nothing to read after %d of %d", pos, head)
		}
		read += len(b)
		pos = b[len(b)-1].GetPosition()
	}
	took := time.Since(t0)
	rawRate := float64(read) / took.Seconds()
	fmt.Printf("raw read:  %10.0f events/s  (%d events in %v)\n", rawRate, read, took.Round(time.Millisecond))

	// Rebuild of the CDR projection into SQLite.
	sink, err := cdr.OpenSQLite(ctx, filepath.Join(dir, "cdr.sqlite"))
	if err != nil {
		return err
	}
	defer sink.Close()
	r := &projections.Runner{Store: st, P: cdr.New(sink)}
	t0 = time.Now()
	cp, err := r.Rebuild(ctx)
	if err != nil {
		return err
	}
	took = time.Since(t0)
	rebuildRate := float64(cp) / took.Seconds()
	list, err := sink.Export(ctx, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	fmt.Printf("rebuild:   %10.0f events/s  (%d events, %d CDRs in %v)\n", rebuildRate, cp, len(list), took.Round(time.Millisecond))
	if len(list) != len(calls) {
		return fmt.Errorf("rebuild wrote %d CDRs for %d calls", len(list), len(calls))
	}

	// Replay of every call stream with the actor's Apply, on all cores.
	t0 = time.Now()
	var replayed atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for _, id := range calls {
		g.Go(func() error {
			k, err := replayCall(gctx, st, id)
			replayed.Add(int64(k))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	took = time.Since(t0)
	replayRate := float64(replayed.Load()) / took.Seconds()
	fmt.Printf("replay:    %10.0f events/s  (%d call streams, %d events in %v)\n", replayRate, len(calls), replayed.Load(), took.Round(time.Millisecond))

	fmt.Printf("goal: rebuild >= 300000 events/s: %v\n", rebuildRate >= 300000)
	fmt.Println("ratio = CDR rebuild events/s / raw read events/s, same store and run:")
	fmt.Printf("ratio=%.2f\n", rebuildRate/rawRate)
	return nil
}

// replayCall folds call id's stream with the call actor's Apply.
func replayCall(ctx context.Context, st events.Store, id string) (int, error) {
	evs, err := st.ReadStream(ctx, call.StreamName(id), 1, 1<<20)
	if err != nil {
		return 0, err
	}
	s := call.NewState(id)
	for _, env := range evs {
		msg, err := events.Unwrap(env)
		if err != nil {
			return 0, fmt.Errorf("call %s version %d: %w", id, env.GetVersion(), err)
		}
		if err := s.Apply(env.GetVersion(), env.GetTime().AsTime(), msg); err != nil {
			return 0, fmt.Errorf("call %s version %d: %w", id, env.GetVersion(), err)
		}
	}
	return len(evs), nil
}

// generate appends about n events: call histories of mixed outcomes and,
// in between, registrations and their refreshes, from 32 concurrent
// writers (one stream each at a time, as actors write). It returns the
// call ids.
func generate(ctx context.Context, st events.Store, n int) ([]string, error) {
	const writers = 32
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var written atomic.Int64
	var mu sync.Mutex
	var ids []string
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; written.Load() < int64(n); i++ {
				at := start.Add(time.Duration(w*1_000_003+i*977) * time.Millisecond)
				var stream string
				var msgs []proto.Message
				if rng.IntN(5) == 0 {
					user := fmt.Sprintf("user%05d", rng.IntN(20000))
					stream, msgs = "reg-sip:"+user+"@example.test", registration(user, at, rng)
				} else {
					id := fmt.Sprintf("w%02dc%07d", w, i)
					stream, msgs = call.StreamName(id), callHistory(rng)
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
				envs := make([]*eventpb.Envelope, len(msgs))
				for k, m := range msgs {
					env, err := events.Wrap(m, at.Add(time.Duration(k)*700*time.Millisecond), "bench", &eventpb.Cause{
						CallId: fmt.Sprintf("%x@10.0.0.%d", rng.Uint64(), w), Cseq: uint32(k + 1), Method: "INVITE",
						Branch: fmt.Sprintf("z9hG4bK%x", rng.Uint64()), Source: "udp:10.0.0.1:5060"})
					if err != nil {
						errs <- err
						return
					}
					envs[k] = env
				}
				if _, err := st.Append(ctx, stream, events.AnyVersion, envs); err != nil {
					errs <- err
					return
				}
				written.Add(int64(len(envs)))
			}
		}(w)
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return ids, nil
}

func registration(user string, at time.Time, rng *rand.Rand) []proto.Message {
	b := &eventpb.Binding{Contact: fmt.Sprintf("sip:%s@10.1.%d.%d:5060", user, rng.IntN(256), rng.IntN(256)),
		ExpiresAt: timestamppb.New(at.Add(time.Hour)), QMilli: -1, CallId: fmt.Sprintf("%x", rng.Uint64()),
		Cseq: uint32(rng.IntN(1000)), UserAgent: "Yealink SIP-T46U 108.86.0.20", Source: "udp:10.1.0.1:5060"}
	if rng.IntN(2) == 0 {
		return []proto.Message{&eventpb.BindingRefreshed{Aor: "sip:" + user + "@example.test", Binding: b}}
	}
	return []proto.Message{&eventpb.BindingAdded{Aor: "sip:" + user + "@example.test", Binding: b}}
}

// callHistory is one call's events: 70% answered and hung up, the rest
// busy, cancelled, unanswered or forked.
func callHistory(rng *rand.Rand) []proto.Message {
	sdp := []byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n")
	caller := fmt.Sprintf("sip:%05d@example.test", rng.IntN(20000))
	callee := fmt.Sprintf("sip:%05d@example.test", rng.IntN(20000))
	started := &eventpb.CallStarted{Caller: caller, Callee: callee, RequestUri: callee, Source: "udp:10.0.0.1:5060",
		Node: "bench", Offer: sdp, OfferType: "application/sdp", MaxForwards: 70,
		ALeg: &eventpb.ALeg{CallId: fmt.Sprintf("%x@10.0.0.1", rng.Uint64()), From: "<" + caller + ">;tag=a1",
			To: "<" + callee + ">", Cseq: 1, Via: []string{"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa"},
			Contact: "<sip:10.0.0.1:5060>", LocalTag: "t1", Source: "udp:10.0.0.1:5060", Branch: "z9hG4bKa"}}
	attempt := func(leg uint32) *eventpb.LegAttempted {
		return &eventpb.LegAttempted{Leg: leg, RequestUri: fmt.Sprintf("sip:%s@10.2.0.%d:5060", callee[4:9], leg),
			CallId: fmt.Sprintf("b%x", rng.Uint64()), LocalTag: "tb", Branch: fmt.Sprintf("z9hG4bKb%d", leg), Cseq: 1,
			Via: "SIP/2.0/UDP 10.9.0.1:5060;branch=z9hG4bKb", From: "<" + caller + ">;tag=tb", To: "<" + callee + ">"}
	}
	ring := func(leg uint32) *eventpb.LegProgress {
		return &eventpb.LegProgress{Leg: leg, Code: 180, Reason: "Ringing", RemoteTag: "rt"}
	}
	switch k := rng.IntN(100); {
	case k < 70:
		return []proto.Message{started, attempt(1), ring(1),
			&eventpb.LegAnswered{Leg: 1, Code: 200, RemoteTag: "rt", Contact: "<sip:10.2.0.1:5060>", Sdp: sdp, ContentType: "application/sdp"},
			&eventpb.CallAnswered{Leg: 1},
			&eventpb.CallEnded{By: "caller", Reason: "caller_bye", SipStatus: 200, Q850Cause: 16, ByeCseq: 2, BByeCseq: 2}}
	case k < 80:
		return []proto.Message{started, attempt(1), &eventpb.LegFailed{Leg: 1, Code: 486, Reason: "Busy Here"},
			&eventpb.CallFailed{Reason: "rejected", SipStatus: 486, SipReason: "Busy Here", Q850Cause: 17}}
	case k < 90:
		return []proto.Message{started, attempt(1), ring(1),
			&eventpb.CallFailed{Reason: "cancel", SipStatus: 487, SipReason: "Request Terminated", Q850Cause: 16}}
	case k < 95:
		return []proto.Message{started, attempt(1), ring(1),
			&eventpb.CallFailed{Reason: "no_answer", SipStatus: 480, SipReason: "Temporarily Unavailable", Q850Cause: 19}}
	default:
		return []proto.Message{started, attempt(1), attempt(2), ring(1), ring(2),
			&eventpb.LegAnswered{Leg: 2, Code: 200, RemoteTag: "rt2", Contact: "<sip:10.2.0.2:5060>", Sdp: sdp, ContentType: "application/sdp"},
			&eventpb.CallAnswered{Leg: 2}, &eventpb.LegFailed{Leg: 1, Code: 487, Reason: "Request Terminated"},
			&eventpb.CallEnded{By: "callee", Reason: "callee_bye", SipStatus: 200, Q850Cause: 16, ByeCseq: 1, AByeCseq: 2}}
	}
}
