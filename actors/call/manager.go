package call

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/internal/clock"
)

// Transport is what the call actor needs of the SIP layer (the gateway).
type Transport interface {
	// Request sends req in a client transaction (timers A/B or E/F, RFC
	// 3261 17.1). Every response, and a transaction failure as a nil
	// response with an error, is passed to on from another goroutine until
	// the transaction ends; for an INVITE, retransmitted 2xx too.
	Request(req *sip.Request, on func(res *sip.Response, err error)) error
	// Write sends a message outside any transaction: the ACK of a 2xx,
	// retransmissions of our 2xx, responses given after a restart.
	Write(m sip.Message) error
	// Local is the address Tandem's Via and Contact headers carry.
	Local() Local
}

// Responder answers one server transaction.
type Responder interface {
	Respond(res *sip.Response) error
}

// Metrics receives call counts. Called from actors, concurrently.
type Metrics interface {
	CallAttempt()
	CallAnswered(setup time.Duration)
	CallFailed(code int)
}

// Config wires call actors to their dependencies.
type Config struct {
	Store     events.Store
	Clock     clock.Clock
	Node      string
	Transport Transport
	// NoAnswerTimeout: a call not answered this long after it started is
	// cancelled with 480 (config calls.no_answer_timeout). Default 60 s.
	NoAnswerTimeout time.Duration
	// MaxForks bounds the B legs of one call. Default 8.
	MaxForks int
	// T1 is the SIP round-trip estimate (RFC 3261 17.1.1.1); 2xx
	// retransmissions start at T1 and double up to T2 = 8*T1, for 64*T1.
	T1 time.Duration
	// Linger: an ended call's actor stays this long (for late responses
	// and retransmissions) before it stops. Default 10 s.
	Linger time.Duration
	// NewBranch returns a fresh random token for Via branches
	// (invariant 8: randomness is injected). Default crypto/rand.
	NewBranch  func() string
	Metrics    Metrics
	Dispatcher actor.Dispatcher
	Logger     *slog.Logger
}

// Messages the gateway delivers to a call actor.
type (
	// Invite is an authenticated, routed initial INVITE from the caller
	// (or a retransmission of one). Done is closed when the actor needs
	// Tx no longer: the final response has been given.
	Invite struct {
		Req            *sip.Request
		Tx             Responder
		Caller, Callee string   // AORs, sip:user@domain
		Targets        []string // the callee's contacts, best first
		Done           chan struct{}
	}
	// InDialog is a request inside one of the call's dialogs: Side "a"
	// (from the caller) or "b" (from B leg Leg). An ACK comes with no Tx.
	InDialog struct {
		Req  *sip.Request
		Tx   Responder
		Side string
		Leg  uint32
		Done chan struct{}
	}
	// Cancel is the caller's CANCEL of its INVITE.
	Cancel struct {
		Req  *sip.Request
		Tx   Responder
		Done chan struct{}
	}
	// Stray is a response to one of the call's requests that no client
	// transaction claimed (a retransmission, or one arriving after a
	// restart). Leg is the B leg its From tag names (0 for leg A).
	Stray struct {
		Res  *sip.Response
		Side string
		Leg  uint32
	}
)

// ErrUnavailable: the call actors cannot take the message (stopped).
var ErrUnavailable = errors.New("call: unavailable")

// Manager finds and spawns call actors: one live activation per call, on a
// protoactor-go actor system. Routing and retirement share one mutex, so a
// message either reaches an activation before it retires (and is handled
// there, from its state) or finds the call gone and spawns a new
// activation, which replays the stream.
type Manager struct {
	system *actor.ActorSystem
	cfg    Config

	mu      sync.Mutex
	live    map[string]*actor.PID
	gen     uint64
	stopped bool

	spawned func(*callActor) // tests: sees each actor the producer makes
}

// NewManager creates a manager on system.
func NewManager(system *actor.ActorSystem, cfg Config) *Manager {
	if cfg.NoAnswerTimeout == 0 {
		cfg.NoAnswerTimeout = 60 * time.Second
	}
	if cfg.MaxForks == 0 {
		cfg.MaxForks = 8
	}
	if cfg.T1 == 0 {
		cfg.T1 = 500 * time.Millisecond
	}
	if cfg.Linger == 0 {
		cfg.Linger = 10 * time.Second
	}
	if cfg.NewBranch == nil {
		cfg.NewBranch = randomToken
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{system: system, cfg: cfg, live: map[string]*actor.PID{}}
}

func randomToken() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Deliver hands msg to call id's actor, activating it (by replay) when
// none is live.
func (m *Manager) Deliver(id string, msg any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return ErrUnavailable
	}
	pid, ok := m.live[id]
	if !ok {
		m.gen++
		var opts []actor.PropsOption
		if m.cfg.Dispatcher != nil {
			opts = append(opts, actor.WithDispatcher(m.cfg.Dispatcher))
		}
		props := actor.PropsFromProducer(func() actor.Actor {
			a := newCallActor(m, id)
			if m.spawned != nil {
				m.spawned(a)
			}
			return a
		}, opts...)
		var err error
		pid, err = m.system.Root.SpawnNamed(props, "call/"+id+"/"+strconv.FormatUint(m.gen, 10))
		if err != nil {
			return fmt.Errorf("%w: spawn %s: %v", ErrUnavailable, id, err)
		}
		m.live[id] = pid
	}
	if msg != nil {
		m.system.Root.Send(pid, msg)
	}
	return nil
}

// Activate starts call id's actor (recovery after a restart re-arms its
// timers, or ends a call that was ringing).
func (m *Manager) Activate(id string) error { return m.Deliver(id, &recoverMsg{}) }

// Has tells whether call id has a live activation on this node (the
// gateway's call admission does not count a call it already has).
func (m *Manager) Has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live[id]
	return ok
}

// Live is the number of live activations.
func (m *Manager) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

func (m *Manager) retire(id string, pid *actor.PID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.live[id]; ok && cur.Equal(pid) {
		delete(m.live, id)
	}
	m.system.Root.Poison(pid)
}

// Stop stops every call actor after the message it is handling and
// refuses new messages. Calls stay in the store; a restart recovers them.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	var futures []*actor.Future
	for id, pid := range m.live {
		futures = append(futures, m.system.Root.PoisonFuture(pid))
		delete(m.live, id)
	}
	m.mu.Unlock()
	for _, f := range futures {
		_, _ = f.Result()
	}
}

// after runs f as a message to call id after d (timers go through the
// manager, so that one firing after the actor retired re-activates it).
func (m *Manager) after(id string, d time.Duration, msg any) clock.Timer {
	return m.cfg.Clock.AfterFunc(d, func() { _ = m.Deliver(id, msg) })
}
