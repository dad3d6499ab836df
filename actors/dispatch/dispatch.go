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
package dispatch

import "sync"

// Pool is a Dispatcher backed by long-lived goroutines.
type Pool struct {
	work       chan func()
	quit       chan struct{}
	once       sync.Once
	throughput int
}

// New starts a pool of workers goroutines; throughput is how many messages
// a mailbox processes before yielding its goroutine (protoactor's default
// is 300).
func New(workers, throughput int) *Pool {
	p := &Pool{work: make(chan func()), quit: make(chan struct{}), throughput: throughput}
	for i := 0; i < workers; i++ {
		go p.worker()
	}
	return p
}

func (p *Pool) worker() {
	for {
		select {
		case fn := <-p.work:
			fn()
		case <-p.quit:
			return
		}
	}
}

// Schedule runs fn on an idle worker, or on a new goroutine when none is
// idle (or the pool is stopped).
func (p *Pool) Schedule(fn func()) {
	select {
	case p.work <- fn:
	default:
		go fn()
	}
}

// Throughput implements actor.Dispatcher.
func (p *Pool) Throughput() int { return p.throughput }

// Stop ends the idle workers; later work runs on new goroutines.
func (p *Pool) Stop() { p.once.Do(func() { close(p.quit) }) }
