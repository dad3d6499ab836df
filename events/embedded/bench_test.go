package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// benchEnvelope is a realistic registration event, about 200 bytes once
// the store has added stream, version and position.
func benchEnvelope(tb testing.TB, i int) *eventpb.Envelope {
	tb.Helper()
	now := time.Date(2024, 5, 17, 9, 30, 0, 0, time.UTC)
	callID := fmt.Sprintf("a84b4c76e66710-%d@pc33.example.test", i)
	env, err := events.Wrap(&eventpb.BindingAdded{
		Aor: fmt.Sprintf("sip:user%d@example.test", i),
		Binding: &eventpb.Binding{
			Contact:   fmt.Sprintf("sip:user%d@192.0.2.4:5060;transport=udp", i),
			ExpiresAt: timestamppb.New(now.Add(time.Hour)),
			QMilli:    -1,
			CallId:    callID,
			Cseq:      314159,
			UserAgent: "baresip v3.10.1",
			Source:    "udp:192.0.2.4:5060",
		},
	}, now, "node-1", &eventpb.Cause{CallId: callID, Cseq: 314159, Method: "REGISTER", Branch: "z9hG4bK776asdhds", Source: "udp:192.0.2.4:5060"})
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// BenchmarkAppend measures durable single-event appends, each writer on its
// own stream; with 64 writers the committer groups them into shared fsyncs.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					env := benchEnvelope(b, w)
					stream := fmt.Sprintf("reg-sip:user%d@example.test", w)
					evs := []*eventpb.Envelope{env}
					for v := int64(0); next.Add(1) <= int64(b.N); v++ {
						if _, err := s.Append(ctx, stream, v, evs); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReadAll measures reading the global order in batches of 256.
func BenchmarkReadAll(b *testing.B) {
	const total, batch = 10_000, 256
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	evs := make([]*eventpb.Envelope, 100)
	for i := range evs {
		evs[i] = benchEnvelope(b, i)
	}
	for v := 0; v < total; v += len(evs) {
		if _, err := s.Append(ctx, "bench", int64(v), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	from := uint64(1)
	for i := 0; i < b.N; i++ {
		got, err := s.ReadAll(ctx, from, batch)
		if err != nil || len(got) == 0 {
			b.Fatalf("ReadAll(%d) = %d events, %v", from, len(got), err)
		}
		from += uint64(len(got))
		if from > total {
			from = 1
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
