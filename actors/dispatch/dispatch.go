// Package dispatch provides a protoactor-go Dispatcher that runs mailboxes
// on a pool of long-lived goroutines.
//
// protoactor's default dispatcher starts a new goroutine each time an idle
// mailbox gets a message. Our actors decide, marshal and append on that
// goroutine, so its small initial stack grows (and is copied) every time:
// 9% of the CPU under registration load (pprof). Pool goroutines keep their
// grown stacks. Actors block on the event store's fsync, so the pool is
// large; when every worker is busy, Schedule falls back to a new goroutine,
// so a mailbox is never kept waiting. Schedule is called concurrently.
// The gateway runs its request handlers on a Pool too.
//
// Idle workers are taken last in, first out. The garbage collector halves
// the stack of a goroutine that sits idle using little of it, so the
// worker idle longest is the one most likely to grow its stack again;
// with workers waiting on one shared channel (first in, first out) that
// was the one every message got, and regrowing stacks was 4% of the CPU
// of a call (pprof, callbench at 2,000 calls/s). The most recently idle
// worker also has its stack in the CPU's cache.
package dispatch

import "sync"

// Pool is a Dispatcher backed by long-lived goroutines.
type Pool struct {
	mu         sync.Mutex
	idle       []*worker // a stack: the most recently idle on top
	stopped    bool
	throughput int
}

type worker struct{ work chan func() } // buffered (1)

// New starts a pool of workers goroutines; throughput is how many messages
// a mailbox processes before yielding its goroutine (protoactor's default
// is 300).
func New(workers, throughput int) *Pool {
	p := &Pool{throughput: throughput, idle: make([]*worker, 0, workers)}
	for i := 0; i < workers; i++ {
		w := &worker{work: make(chan func(), 1)}
		p.idle = append(p.idle, w)
		go p.run(w)
	}
	return p
}

func (p *Pool) run(w *worker) {
	for fn := range w.work {
		fn()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, w)
		p.mu.Unlock()
	}
}

// Schedule runs fn on the most recently idle worker, or on a new goroutine
// when none is idle (or the pool is stopped).
func (p *Pool) Schedule(fn func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 && !p.stopped {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.work <- fn // never blocks: an idle worker's buffer is empty
		return
	}
	p.mu.Unlock()
	go fn()
}

// Throughput implements actor.Dispatcher.
func (p *Pool) Throughput() int { return p.throughput }

// Stop ends the idle workers (busy ones end when their work is done);
// later work runs on new goroutines.
func (p *Pool) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	for _, w := range p.idle {
		close(w.work)
	}
	p.idle = nil
}
