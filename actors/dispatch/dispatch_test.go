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

// The worker that went idle last takes the next task (its stack is grown
// and warm), not the one idle longest.
func TestPoolTakesTheMostRecentlyIdleWorker(t *testing.T) {
	p := New(4, 10)
	defer p.Stop()
	top := func() *worker {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.idle[len(p.idle)-1]
	}
	waitIdle := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			p.mu.Lock()
			k := len(p.idle)
			p.mu.Unlock()
			if k == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d idle workers, want %d", k, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Two tasks at once; the one that ran on the bottom-most of the two
	// workers ends last, so its worker must be on top afterwards.
	first := top()
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	p.Schedule(func() { <-releaseA }) // takes first
	second := top()
	p.Schedule(func() { <-releaseB }) // takes second
	waitIdle(2)
	close(releaseB)
	waitIdle(3)
	close(releaseA)
	waitIdle(4)
	if top() != first || first == second {
		t.Fatal("the most recently idle worker is not the next to work")
	}
	ran := make(chan struct{})
	want := top()
	p.Schedule(func() { close(ran) })
	<-ran
	waitIdle(4)
	if top() != want {
		t.Fatal("the worker that just ran is not back on top")
	}
}
