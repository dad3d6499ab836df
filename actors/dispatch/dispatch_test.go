package dispatch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoolRunsEverythingEvenWhenBusy(t *testing.T) {
	p := New(2, 10)
	defer p.Stop()
	block := make(chan struct{})
	var ran atomic.Int32
	var wg sync.WaitGroup
	// More blocked tasks than workers: the rest must still run.
	for i := 0; i < 10; i++ {
		wg.Add(1)
		p.Schedule(func() { defer wg.Done(); ran.Add(1); <-block })
	}
	// Every task starts although only 2 workers exist.
	deadline := time.Now().Add(5 * time.Second)
	for ran.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 10 tasks started", ran.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(block)
	wg.Wait()
	p.Stop()
	p.Stop() // idempotent
	done := make(chan struct{})
	p.Schedule(func() { close(done) }) // after Stop: still runs
	<-done
	if p.Throughput() != 10 {
		t.Fatal("throughput")
	}
}
