package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/clock"
)

// Config wires registration actors to their dependencies.
type Config struct {
	Store  events.Store
	Clock  clock.Clock
	Node   string // node_id written into every event
	Limits Limits
	// IdleTimeout: an actor with no bindings stops after this long without
	// messages (it is re-activated, by replay, on the next REGISTER).
	// Default 1 minute.
	IdleTimeout time.Duration
	// RequestTimeout bounds how long Register waits for the actor.
	// Default 5 s.
	RequestTimeout time.Duration
	// SnapshotEvery: an actor writes a snapshot of its state (stream
	// regsnap-<aor>) once this many events followed the last one, so that
	// an activation replays only what came after it instead of a stream
	// that grows by an event per refresh for as long as the phone is
	// registered. Default 100; negative disables snapshots.
	SnapshotEvery int
	// Dispatcher runs the actors' mailboxes; default protoactor's (a new
	// goroutine per schedule). The node passes a dispatch.Pool.
	Dispatcher actor.Dispatcher
	Logger     *slog.Logger
}

// Result is what the registrar answers a successful REGISTER with.
type Result struct {
	Bindings []Binding // active bindings, for the 200 OK's Contact list
	Now      time.Time // the time the request was decided at
}

// Messages of the registration actor.
type (
	// Requests carry their own reply channel (buffered, 1) rather than
	// going through protoactor futures: a future is a registered process
	// and a timer per request, which showed in profiles; the caller's
	// context already bounds the wait.
	registerMsg struct {
		cmd   *Register
		cause *eventpb.Cause
		reply chan *registerReply
	}
	registerReply struct {
		res *Result
		err error
	}
	activateMsg struct{ reply chan *registerReply }
	expireMsg   struct{}
)

// Registry finds and spawns registration actors: one live activation per
// AOR, on a protoactor-go actor system. It is safe for concurrent use; its
// methods are called concurrently by the gateway.
//
// Routing and retirement share one mutex so that no message can be queued
// behind a retiring actor's poison pill: a request either reaches the
// activation before it retires (and is answered, possibly with errRetired,
// which makes the registry retry on a fresh activation) or it finds the AOR
// gone from the map and spawns a new activation. Each activation has its own
// actor name ("reg/<aor>/<n>"), so a new one never waits for the old to stop.
type Registry struct {
	system *actor.ActorSystem
	cfg    Config

	mu      sync.RWMutex // guards live, gen and stopped; held (read, at least) while enqueueing
	live    map[string]*actor.PID
	gen     uint64
	stopped bool

	snaps sync.WaitGroup // snapshots being written (maybeSnapshot)
}

// errRetired answers a message that reached an activation after it retired
// (fenced or passivated); the registry retries it on a fresh activation.
var errRetired = errors.New("registrar: activation retired")

// NewRegistry creates a registry on system.
func NewRegistry(system *actor.ActorSystem, cfg Config) *Registry {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Registry{system: system, cfg: cfg, live: map[string]*actor.PID{}}
}

// send enqueues msg for aor's activation, spawning one when needed. With
// an activation live it holds the routing lock only for reading, so that
// the gateway's concurrent requests do not queue on it (retire and Stop
// take it for writing, which still orders them against every send).
func (r *Registry) send(aor string, msg any) error {
	r.mu.RLock()
	if pid, ok := r.live[aor]; ok && !r.stopped {
		r.system.Root.Send(pid, msg)
		r.mu.RUnlock()
		return nil
	}
	r.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return fmt.Errorf("%w: registry stopped", ErrUnavailable)
	}
	pid, ok := r.live[aor]
	if !ok {
		r.gen++
		var opts []actor.PropsOption
		if r.cfg.Dispatcher != nil {
			opts = append(opts, actor.WithDispatcher(r.cfg.Dispatcher))
		}
		props := actor.PropsFromProducer(func() actor.Actor { return &regActor{r: r, aor: aor} }, opts...)
		var err error
		pid, err = r.system.Root.SpawnNamed(props, fmt.Sprintf("reg/%s/%d", aor, r.gen))
		if err != nil {
			return fmt.Errorf("%w: spawn activation of %s: %v", ErrUnavailable, aor, err)
		}
		r.live[aor] = pid
	}
	r.system.Root.Send(pid, msg)
	return nil
}

// retire removes pid as aor's activation and queues its poison pill, under
// the routing lock (see Registry). Called from the actor itself.
func (r *Registry) retire(aor string, pid *actor.PID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.live[aor]; ok && cur.Equal(pid) {
		delete(r.live, aor)
	}
	r.system.Root.Poison(pid)
}

// timers holds the stopped timers of finished requests.
var timers sync.Pool

// request sends a message built by mk (around a fresh reply channel) to
// aor's activation and waits for its answer, retrying on a fresh activation
// when the message reached a retired one (it was not processed, so this
// cannot apply it twice).
func (r *Registry) request(ctx context.Context, aor string, mk func(chan *registerReply) any) (*registerReply, error) {
	// A pooled timer rather than context.WithTimeout: a context, a timer
	// and a goroutine-safe cancel per registration showed in profiles (2%
	// of the CPU at 16,000 REGISTER/s). Since Go 1.23 a stopped timer can
	// be reset without draining its channel.
	timer, _ := timers.Get().(*time.Timer)
	if timer == nil {
		timer = time.NewTimer(r.cfg.RequestTimeout)
	} else {
		timer.Reset(r.cfg.RequestTimeout)
	}
	defer func() { timer.Stop(); timers.Put(timer) }()
	for attempt := 0; attempt < 3; attempt++ {
		reply := make(chan *registerReply, 1)
		if err := r.send(aor, mk(reply)); err != nil {
			return nil, err
		}
		select {
		case rep := <-reply:
			if errors.Is(rep.err, errRetired) {
				continue
			}
			return rep, nil
		case <-timer.C:
			return nil, fmt.Errorf("%w: activation of %s: %v", ErrUnavailable, aor, context.DeadlineExceeded)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: activation of %s: %v", ErrUnavailable, aor, ctx.Err())
		}
	}
	return nil, fmt.Errorf("%w: activations of %s kept retiring", ErrUnavailable, aor)
}

// Register hands an authenticated REGISTER to its AOR's actor and returns the
// bindings to answer with. The events are durable before it returns.
func (r *Registry) Register(ctx context.Context, cmd *Register, cause *eventpb.Cause) (*Result, error) {
	rep, err := r.request(ctx, cmd.AOR, func(reply chan *registerReply) any {
		return &registerMsg{cmd: cmd, cause: cause, reply: reply}
	})
	if err != nil {
		return nil, err
	}
	return rep.res, rep.err
}

// Activate makes sure aor's actor is running: it replays the stream and
// re-arms the expiry timer (expiring at once what expired while down).
func (r *Registry) Activate(ctx context.Context, aor string) error {
	rep, err := r.request(ctx, aor, func(reply chan *registerReply) any { return &activateMsg{reply: reply} })
	if err != nil {
		return err
	}
	return rep.err
}

// Stop stops every actor (after the message it is handling) and refuses
// new requests.
func (r *Registry) Stop() {
	r.mu.Lock()
	r.stopped = true
	pids := make([]*actor.PID, 0, len(r.live))
	for _, pid := range r.live {
		pids = append(pids, pid)
	}
	r.mu.Unlock()
	futures := make([]*actor.Future, 0, len(pids))
	for _, pid := range pids {
		futures = append(futures, r.system.Root.PoisonFuture(pid))
	}
	for _, f := range futures {
		_ = f.Wait()
	}
	r.snaps.Wait() // before the node closes the store under them
}

// regActor is one activation of an AOR's registration actor. Receive is
// called serially.
type regActor struct {
	r       *Registry
	aor     string
	state   State
	loadErr error
	timer   clock.Timer
	armedAt time.Time // when timer fires
	retired bool      // fenced, failed or passivated: answers errRetired
	// snapAt is the stream version of the last snapshot read or written;
	// snapping is set while one is being written.
	snapAt   uint64
	snapping atomic.Bool
}

func (a *regActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.loadErr = a.load()
		if a.loadErr != nil {
			a.r.cfg.Logger.Error("registration actor failed to load", "aor", a.aor, "err", a.loadErr)
		}
		ctx.SetReceiveTimeout(a.r.cfg.IdleTimeout)
		a.arm(ctx)
	case *registerMsg:
		if a.retired {
			m.reply <- &registerReply{err: errRetired}
			return
		}
		m.reply <- a.handleRegister(ctx, m)
	case *activateMsg:
		if a.retired {
			m.reply <- &registerReply{err: errRetired}
			return
		}
		if a.loadErr != nil {
			a.retire(ctx)
		}
		m.reply <- &registerReply{err: a.loadErr}
	case *expireMsg:
		if !a.retired {
			a.handleExpire(ctx)
		}
	case *actor.ReceiveTimeout:
		if len(a.state.Binds) == 0 && !a.retired {
			a.retire(ctx)
		}
	case *actor.Stopping:
		a.disarm()
	}
}

// retire stops this activation: nothing more is routed to it, queued
// messages are answered errRetired, then it stops.
func (a *regActor) retire(ctx actor.Context) {
	a.retired = true
	a.disarm()
	a.r.retire(a.aor, ctx.Self())
}

// load replays the AOR's stream into the state: from its newest snapshot
// on when there is one.
func (a *regActor) load() error {
	stream := StreamName(a.aor)
	from := uint64(1)
	if snap := a.readSnapshot(); snap != nil {
		a.state.Restore(snap)
		a.snapAt = snap.GetVersion()
		from = a.state.Version + 1
	}
	for {
		evs, err := a.r.cfg.Store.ReadStream(context.Background(), stream, from, 512)
		if err != nil {
			return fmt.Errorf("%w: read %s: %v", ErrUnavailable, stream, err)
		}
		for _, env := range evs {
			msg, err := events.Unwrap(env)
			if err != nil && !errors.Is(err, events.ErrUnknownType) {
				return fmt.Errorf("%w: replay %s: %v", ErrUnavailable, stream, err)
			}
			if msg != nil {
				a.state.Apply(msg)
			}
			a.state.Version = env.GetVersion()
		}
		if len(evs) < 512 {
			return nil
		}
		from = a.state.Version + 1
	}
}

func (a *regActor) handleRegister(ctx actor.Context, m *registerMsg) *registerReply {
	if a.loadErr != nil {
		a.retire(ctx)
		return &registerReply{err: a.loadErr}
	}
	now := a.r.cfg.Clock.Now()
	evs, err := DecideRegister(&a.state, m.cmd, now, a.r.cfg.Limits)
	if err != nil {
		return &registerReply{err: err}
	}
	if err := a.persist(ctx, evs, now, m.cause); err != nil {
		return &registerReply{err: err}
	}
	return &registerReply{res: &Result{Bindings: a.state.Active(now), Now: now}}
}

func (a *regActor) handleExpire(ctx actor.Context) {
	if a.loadErr != nil {
		return
	}
	// The timer has fired (or an older one, stopped too late, has): arm
	// afresh below for whatever is due next.
	a.disarm()
	now := a.r.cfg.Clock.Now()
	evs := DecideExpire(&a.state, now)
	if len(evs) == 0 {
		a.arm(ctx) // fired early: a refresh moved the expiry on
		return
	}
	if err := a.persist(ctx, evs, now, &eventpb.Cause{Method: "timer"}); err != nil {
		a.r.cfg.Logger.Warn("binding expiry not persisted; retrying", "aor", a.aor, "err", err)
		// persist retired this activation; the next one re-reads the
		// stream and re-arms. Make sure there is a next one.
		if !errors.Is(err, ErrFenced) {
			aor := a.aor
			a.r.cfg.Clock.AfterFunc(time.Second, func() { _ = a.r.Activate(context.Background(), aor) })
		}
	}
}

// persist appends evs with the expected version, applies them, and re-arms
// the expiry timer. On a version conflict the actor has been superseded: it
// stops at once without acting (invariant 1). On any other append error the
// outcome is unknown, so it also stops and the next activation re-reads.
func (a *regActor) persist(ctx actor.Context, evs []proto.Message, now time.Time, cause *eventpb.Cause) error {
	if len(evs) == 0 {
		return nil
	}
	envs := make([]*eventpb.Envelope, 0, len(evs))
	for _, e := range evs {
		env, err := events.Wrap(e, now, a.r.cfg.Node, cause)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		envs = append(envs, env)
	}
	res, err := a.r.cfg.Store.Append(context.Background(), StreamName(a.aor), int64(a.state.Version), envs)
	if err != nil {
		a.retire(ctx)
		if errors.Is(err, events.ErrVersionConflict) {
			a.r.cfg.Logger.Error("registration actor fenced", "aor", a.aor, "err", err)
			return fmt.Errorf("%w: %v", ErrFenced, err)
		}
		return fmt.Errorf("%w: append: %v", ErrUnavailable, err)
	}
	for _, e := range evs {
		a.state.Apply(e)
	}
	a.state.Version = res.Version
	a.arm(ctx)
	a.maybeSnapshot()
	return nil
}

// readSnapshot returns the AOR's newest snapshot, or nil when there is none
// or it cannot be used: the activation then replays the whole stream.
func (a *regActor) readSnapshot() *eventpb.RegistrationSnapshot {
	if a.r.cfg.SnapshotEvery < 0 {
		return nil
	}
	ctx := context.Background()
	st, name := a.r.cfg.Store, SnapshotStreamName(a.aor)
	v, err := st.StreamVersion(ctx, name)
	if err != nil || v == 0 {
		if err != nil {
			a.r.cfg.Logger.Warn("registration snapshot not read; replaying the whole stream", "aor", a.aor, "err", err)
		}
		return nil
	}
	evs, err := st.ReadStream(ctx, name, v, 1)
	if err != nil || len(evs) != 1 {
		a.r.cfg.Logger.Warn("registration snapshot not read; replaying the whole stream", "aor", a.aor, "err", err)
		return nil
	}
	msg, err := events.Unwrap(evs[0])
	snap, ok := msg.(*eventpb.RegistrationSnapshot)
	if err != nil || !ok || snap.GetAor() != a.aor {
		a.r.cfg.Logger.Warn("registration snapshot unusable; replaying the whole stream", "aor", a.aor, "type", evs[0].GetType(), "err", err)
		return nil
	}
	return snap
}

// maybeSnapshot writes a snapshot once SnapshotEvery events followed the
// last, off the actor's goroutine (the REGISTER that crossed the mark is
// not kept waiting for a second fsync), one at a time. A snapshot is
// derived from events already durable, so any writer's is right: it is
// appended at any version, and one that fails is only logged (the next
// activation replays a little more).
func (a *regActor) maybeSnapshot() {
	every := a.r.cfg.SnapshotEvery
	if every < 0 || a.state.Version < a.snapAt+uint64(every) || !a.snapping.CompareAndSwap(false, true) {
		return
	}
	a.snapAt = a.state.Version
	env, err := events.Wrap(a.state.Snapshot(), a.r.cfg.Clock.Now(), a.r.cfg.Node, nil)
	if err != nil {
		a.snapping.Store(false)
		return
	}
	a.r.snaps.Add(1)
	go func() {
		defer a.r.snaps.Done()
		defer a.snapping.Store(false)
		if _, err := a.r.cfg.Store.Append(context.Background(), SnapshotStreamName(a.aor), events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			a.r.cfg.Logger.Warn("registration snapshot not written", "aor", a.aor, "err", err)
		}
	}()
}

// arm makes sure the expiry timer fires no later than the earliest
// binding expiry. A timer already due at or before that is left alone, and
// re-arms when it fires (handleExpire): a refresh moves the expiry later
// on nearly every REGISTER, and stopping and starting a timer for each
// showed in profiles under REGISTER load (with refreshes every few
// minutes, an hour-long binding costs one early wake-up an hour, not one
// timer per refresh).
func (a *regActor) arm(ctx actor.Context) {
	next, ok := a.state.NextExpiry()
	if !ok {
		a.disarm()
		return
	}
	if a.timer != nil && !a.armedAt.After(next) {
		return
	}
	a.disarm()
	d := next.Sub(a.r.cfg.Clock.Now())
	if d < 0 {
		d = 0
	}
	self := ctx.Self()
	a.armedAt = next
	a.timer = a.r.cfg.Clock.AfterFunc(d, func() { a.r.system.Root.Send(self, &expireMsg{}) })
}

// disarm stops the expiry timer, if any.
func (a *regActor) disarm() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}
