package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Durable is a projection whose output outlives the process: a pure fold
// over the global event order whose output and checkpoint are written
// together, atomically (one database transaction), so that a crash at any
// point neither loses nor duplicates a row. The Runner drives it.
//
// Methods are called from one goroutine at a time.
type Durable interface {
	// Name is the projection's name in `tandem projections ...`.
	Name() string
	// Load restores the checkpoint (the position of the last event folded
	// and committed; 0 for none) and whatever the fold keeps between
	// events (e.g. calls still in progress), from the output.
	Load(ctx context.Context) (uint64, error)
	// Apply folds one event into the pending batch. known is false for an
	// event type the projection does not know: it is skipped and counted,
	// never an error. An error stops the runner (the batch is discarded,
	// and the next run resumes from the last checkpoint).
	Apply(env *eventpb.Envelope) (known bool, err error)
	// Commit takes the pending batch (the fold goes on with an empty one)
	// and returns the function that writes it and the checkpoint in one
	// transaction. The runner calls those functions one at a time, in the
	// order Commit returned them, possibly while later events are being
	// folded; after a failed write it stops, and the next run Loads again.
	Commit(checkpoint uint64) func(context.Context) error
	// Reset deletes the projection's output and state: checkpoint 0.
	Reset(ctx context.Context) error
}

// Runner drives a Durable projection: it catches up from the checkpoint,
// then follows live events, in order, with no gap (events.Store.Subscribe
// guarantees the order; the checkpoint says where to resume).
type Runner struct {
	Store events.Store
	P     Durable
	// BatchEvents is the most events folded into one commit. Default 4096.
	BatchEvents int
	// CatchUpCommit is how many events catching up (and rebuilding)
	// folds into one commit. Default 65536: big transactions write each
	// database page once rather than once per batch (bench-replay).
	CatchUpCommit int
	// FlushInterval is how long a batch that is not full waits for more
	// events before it is committed. Default 250 ms: a CDR is written that
	// long after its call ended at most (plus the commit's own time), and
	// a steady stream of events costs one transaction each 250 ms. Against 50 ms,
	// the CDR projection's share of the server's CPU at 2,000 calls/s fell
	// from 8.8% to 5.3% (callbench -only tandem -cpuprofile, SQLite).
	FlushInterval time.Duration

	checkpoint atomic.Uint64
	skipped    atomic.Uint64
	running    atomic.Bool
}

func (r *Runner) defaults() {
	if r.BatchEvents <= 0 {
		r.BatchEvents = 4096
	}
	if r.CatchUpCommit <= 0 {
		r.CatchUpCommit = 65536
	}
	if r.FlushInterval <= 0 {
		r.FlushInterval = 250 * time.Millisecond
	}
}

// Checkpoint is the position of the last event committed.
func (r *Runner) Checkpoint() uint64 { return r.checkpoint.Load() }

// Skipped counts events of types the projection does not know.
func (r *Runner) Skipped() uint64 { return r.skipped.Load() }

// Running tells whether Run is following the store.
func (r *Runner) Running() bool { return r.running.Load() }

// Status is a projection's progress, for `tandem projections status`.
type Status struct {
	Name       string `json:"name"`
	Checkpoint uint64 `json:"checkpoint"`
	Head       uint64 `json:"head"`
	Lag        uint64 `json:"lag"`
	Skipped    uint64 `json:"skipped"`
	Running    bool   `json:"running"`
}

// Status reports the checkpoint against the store's head.
func (r *Runner) Status() Status {
	cp, head := r.Checkpoint(), r.Store.Head()
	s := Status{Name: r.P.Name(), Checkpoint: cp, Head: head, Skipped: r.Skipped(), Running: r.Running()}
	if head > cp {
		s.Lag = head - cp
	}
	return s
}

func (r *Runner) apply(env *eventpb.Envelope) error {
	known, err := r.P.Apply(env)
	if err != nil {
		return fmt.Errorf("projection %s: event at position %d (%s): %w", r.P.Name(), env.GetPosition(), env.GetType(), err)
	}
	if !known {
		r.skipped.Add(1)
	}
	return nil
}

func (r *Runner) commit(ctx context.Context, pos uint64) error {
	return r.write(ctx, r.P.Commit(pos), pos)
}

func (r *Runner) write(ctx context.Context, write func(context.Context) error, pos uint64) error {
	if err := write(ctx); err != nil {
		return fmt.Errorf("projection %s: commit at position %d: %w", r.P.Name(), pos, err)
	}
	r.checkpoint.Store(pos)
	return nil
}

// CatchUp folds every event after the checkpoint up to the store's head
// (at call time) and commits; it returns the new checkpoint. Reading runs
// on its own goroutine, one batch ahead of the fold, so that decoding and
// folding use both cores during a rebuild.
func (r *Runner) CatchUp(ctx context.Context) (uint64, error) {
	r.defaults()
	cp, err := r.P.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection %s: load: %w", r.P.Name(), err)
	}
	r.checkpoint.Store(cp)
	head := r.Store.Head()
	if cp >= head {
		return cp, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []*eventpb.Envelope, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		for pos := cp; pos < head; {
			b, err := r.Store.ReadAll(ctx, pos+1, min(r.BatchEvents, int(head-pos)))
			if err == nil && len(b) == 0 {
				err = fmt.Errorf("store head %d but nothing to read after %d", head, pos)
			}
			if err != nil {
				readErr <- err
				return
			}
			pos = b[len(b)-1].GetPosition()
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Writes run on a third goroutine, one behind the fold, so that
	// reading, folding and the database share the cores.
	type pending struct {
		write func(context.Context) error
		pos   uint64
	}
	writes := make(chan pending, 1)
	writeErr := make(chan error, 1)
	go func() {
		var err error
		for w := range writes {
			if err == nil {
				if err = r.write(ctx, w.write, w.pos); err != nil {
					cancel() // stop the reader and the fold
				}
			}
		}
		writeErr <- err
	}()
	folded, last := 0, uint64(0)
	var foldErr error
fold:
	for b := range batches {
		for _, env := range b {
			if foldErr = r.apply(env); foldErr != nil {
				break fold
			}
		}
		folded += len(b)
		last = b[len(b)-1].GetPosition()
		if folded >= r.CatchUpCommit {
			select {
			case writes <- pending{r.P.Commit(last), last}:
			case <-ctx.Done():
				break fold
			}
			folded = 0
		}
	}
	if foldErr == nil && folded > 0 && ctx.Err() == nil {
		writes <- pending{r.P.Commit(last), last}
	}
	close(writes)
	if err := <-writeErr; err != nil {
		return r.Checkpoint(), err
	}
	if foldErr != nil {
		return r.Checkpoint(), foldErr
	}
	select {
	case err := <-readErr:
		return r.Checkpoint(), fmt.Errorf("projection %s: catch up: %w", r.P.Name(), err)
	default:
	}
	return r.Checkpoint(), ctx.Err()
}

// Rebuild deletes the projection's output and folds the whole log again.
func (r *Runner) Rebuild(ctx context.Context) (uint64, error) {
	if err := r.P.Reset(ctx); err != nil {
		return 0, fmt.Errorf("projection %s: reset: %w", r.P.Name(), err)
	}
	r.checkpoint.Store(0)
	r.skipped.Store(0)
	return r.CatchUp(ctx)
}

// Run catches up, then follows live events until ctx is done or an error
// stops it. Live events are committed in batches of up to BatchEvents,
// each at most FlushInterval after its first event.
func (r *Runner) Run(ctx context.Context) error {
	if _, err := r.CatchUp(ctx); err != nil {
		return err
	}
	r.running.Store(true)
	defer r.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feed := make(chan *eventpb.Envelope, r.BatchEvents)
	subErr := make(chan error, 1)
	go func() {
		subErr <- r.Store.Subscribe(ctx, r.Checkpoint()+1, func(env *eventpb.Envelope) error {
			select {
			case feed <- env:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var env *eventpb.Envelope
		select {
		case env = <-feed:
		case err := <-subErr:
			return fmt.Errorf("projection %s: subscription: %w", r.P.Name(), err)
		case <-ctx.Done():
			return ctx.Err()
		}
		last := env.GetPosition()
		if err := r.apply(env); err != nil {
			return err
		}
		timer.Reset(r.FlushInterval)
	batch:
		for n := 1; n < r.BatchEvents; n++ {
			select {
			case env = <-feed:
				last = env.GetPosition()
				if err := r.apply(env); err != nil {
					timer.Stop()
					return err
				}
			case <-timer.C:
				break batch
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			}
		}
		timer.Stop()
		// Commit even when ctx is done meanwhile: what was folded is
		// committed whole or not at all.
		if err := r.commit(context.WithoutCancel(ctx), last); err != nil {
			return err
		}
	}
}

// ErrUnknownProjection names a projection that does not exist.
var ErrUnknownProjection = errors.New("unknown projection")

// Background runs a Runner's Run on its own goroutine and can stop it for
// a rebuild while the node keeps serving. Its methods are safe for
// concurrent use.
type Background struct {
	R *Runner
	// OnError is called when Run stops with an error other than the
	// context's (the projection falls behind until restarted).
	OnError func(error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs the projection until Stop.
func (b *Background) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.startLocked()
}

func (b *Background) startLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		if err := b.R.Run(ctx); err != nil && ctx.Err() == nil && b.OnError != nil {
			b.OnError(err)
		}
	}(b.done)
}

func (b *Background) stopLocked() {
	if b.cancel != nil {
		b.cancel()
		<-b.done
		b.cancel = nil
	}
}

// Stop stops the projection after its current batch.
func (b *Background) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
}

// Rebuild stops the projection, deletes its output, folds the whole log
// again and starts following live events again.
func (b *Background) Rebuild(ctx context.Context) (Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
	defer b.startLocked()
	_, err := b.R.Rebuild(ctx)
	return b.R.Status(), err
}
