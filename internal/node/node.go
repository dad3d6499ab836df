// Package node wires one Tandem node together from its configuration: the
// embedded event store, the actor system with the registration and call
// actors, the location, live-calls, traffic and CDR projections, the SIP gateway and the
// HTTP API. It owns start-up
// order (store, projection catch-up, actor re-activation, then listeners)
// and graceful shutdown in the reverse order. cmd/tandem stays thin by
// calling it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/actors/dispatch"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/gateway"
	"github.com/tandemswitch/tandem/gateway/digest"
	"github.com/tandemswitch/tandem/internal/api"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/internal/config"
	"github.com/tandemswitch/tandem/internal/metrics"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/calls"
	"github.com/tandemswitch/tandem/projections/cdr"
	"github.com/tandemswitch/tandem/projections/location"
	"github.com/tandemswitch/tandem/projections/traffic"
)

// OpenCDRSink opens the CDR projection's database named by cfg.cdr.
func OpenCDRSink(ctx context.Context, cfg *config.Config) (*cdr.Sink, error) {
	if cfg.CDR.Sink == "postgres" {
		return cdr.OpenPostgres(ctx, cfg.CDR.PostgresDSN)
	}
	return cdr.OpenSQLite(ctx, cfg.CDRSQLitePath())
}

// StoreDir is where a node keeps its event store under data_dir.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "events") }

// Node is one running Tandem node.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	clock   clock.Clock
	version string // in the Server header

	store    events.Store
	system   *actor.ActorSystem
	registry *registrar.Registry
	pool     *dispatch.Pool
	loc      *location.Index
	live     *calls.Live
	traffic  *traffic.Projection
	memory   *projections.Fanout // location, live calls and traffic
	calls    *call.Manager
	gw       *gateway.Gateway
	api      *api.Server
	httpSrv  *http.Server
	httpLn   net.Listener
	metrics  *metrics.Set
	cdrSink  *cdr.Sink
	cdrs     *projections.Background

	cancel context.CancelFunc
	bg     sync.WaitGroup
}

// New prepares a node running version; Start brings it up.
func New(cfg *config.Config, log *slog.Logger, version string) *Node {
	return &Node{cfg: cfg, log: log, clock: clock.Real{}, version: version}
}

// Start brings the node up. On error everything started is stopped again.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = n.Shutdown(context.Background())
		}
	}()
	n.loc = location.New()
	n.metrics = metrics.New(func() float64 { return float64(n.loc.Active(n.clock.Now())) })
	n.metrics.ProjectionSkipped("location", func() float64 { return float64(n.loc.Skipped()) })
	n.live = calls.New()
	n.metrics.ActiveCalls(func() float64 { return float64(n.live.Count()) })
	n.metrics.ProjectionSkipped("calls", func() float64 { return float64(n.live.Skipped()) })
	n.traffic = traffic.New()
	n.metrics.Traffic(n.traffic, n.clock.Now)

	st, err := embedded.Open(embedded.Options{
		Dir:      StoreDir(n.cfg.DataDir),
		OnAppend: n.metrics.StoreAppend,
		// Under concurrent load, gather appends before each fsync
		// (store.commit_window_us): fewer fsyncs, less CPU, at the price
		// of that much latency.
		CommitWindow: n.cfg.Store.CommitWindow(),
		Logger:       n.log.With("component", "store"),
	})
	if err != nil {
		return fmt.Errorf("open event store: %w", err)
	}
	n.store = st
	n.metrics.StoreFsync(st.WALFsyncLatency())

	n.cdrSink, err = OpenCDRSink(ctx, n.cfg)
	if err != nil {
		return err
	}
	n.cdrs = &projections.Background{R: &projections.Runner{Store: st, P: cdr.New(n.cdrSink)}}
	n.metrics.ProjectionSkipped(cdr.Name, func() float64 { return float64(n.cdrs.R.Skipped()) })

	// HTTP first, so that /healthz answers "starting" during recovery.
	n.api = &api.Server{Store: st, Location: n.loc, Calls: n.live, Traffic: n.traffic, Clock: n.clock, Metrics: n.metrics.Handler(), Pprof: n.cfg.HTTP.Pprof,
		Projections: map[string]*projections.Background{cdr.Name: n.cdrs}, CDRs: n.cdrSink, Audit: st.Verify}
	n.httpLn, err = net.Listen("tcp", n.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", n.cfg.HTTP.Listen, err)
	}
	n.httpSrv = &http.Server{Handler: n.api.Handler(), ReadHeaderTimeout: 5 * time.Second}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()

	// Recovery: fold the log into the location index, then re-activate
	// every AOR that has bindings so that expiry timers are re-armed (and
	// what expired while we were down is expired now, with its event).
	// The in-memory projections share one read of the log.
	t0 := time.Now()
	n.memory = &projections.Fanout{
		Members: []projections.Member{
			{Name: "location", Apply: n.loc.Apply, Critical: true},
			{Name: "live-calls", Apply: n.live.Apply, Critical: true},
			// Stats go stale without it; calls are not affected.
			{Name: "traffic", Apply: n.traffic.Apply},
		},
		OnError: func(name string, err error) {
			n.log.Error(name+" projection stopped; /api/v1/stats and tandem_traffic_* are stale", "err", err)
		},
	}
	if err := n.memory.CatchUp(ctx, st); err != nil {
		return err
	}
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return n.log.With("component", "actors")
	}))
	s := n.cfg.SIP
	// Actors block their worker while an append is made durable; under
	// load an fsync stall of tens of milliseconds holds hundreds of them
	// at once. With 256 workers bench-calls stalled at 1,800 calls/s,
	// with 2,048 it ran clean at 2,200 (idle workers cost only a stack).
	n.pool = dispatch.New(2048, 300)
	n.registry = registrar.NewRegistry(n.system, registrar.Config{
		Dispatcher: n.pool,
		Store:      st, Clock: n.clock, Node: n.cfg.NodeID, Logger: n.log.With("component", "registrar"),
		Limits: registrar.Limits{
			MinExpires: int64(s.MinExpires), MaxExpires: int64(s.MaxExpires),
			DefaultExpires: int64(s.DefaultExpires), MaxContacts: s.MaxContacts,
		},
		RequestTimeout: time.Duration(s.RequestTimeoutMS) * time.Millisecond,
	})
	if err := n.reactivate(ctx, n.loc.AORs()); err != nil {
		return err
	}
	n.log.Info("recovered", "events", st.Head(), "aors", len(n.loc.AORs()), "took", time.Since(t0).Round(time.Millisecond))

	// The CDR projection catches up in the background (it may have a long
	// way to go after a rebuild or a restore) and then follows; a failure
	// shows in /healthz like the in-memory projections'.
	n.cdrs.OnError = func(err error) {
		n.api.Ready.Store(false)
		n.log.Error("CDR projection stopped; node reports unhealthy", "err", err)
	}
	n.cdrs.Start()

	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.memory.Run(runCtx, st); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, events.ErrClosed) {
			// The registrations and calls APIs (and call recovery) would
			// go stale without a word: say so where the operator looks,
			// in /healthz.
			n.api.Ready.Store(false)
			n.log.Error("in-memory projections stopped; node reports unhealthy", "err", err)
		}
	}()

	users := make(map[string]config.User, len(n.cfg.Users))
	// Each user's HA1s, worked out once here rather than per request (a
	// password hashed on every REGISTER cost 1% of the server's CPU).
	type ha1s struct {
		md5, sha256     string
		hasMD5, hasSHA2 bool
	}
	ha1 := make(map[string]ha1s, len(n.cfg.Users))
	for _, u := range n.cfg.Users {
		users[u.User] = u
		var h ha1s
		h.md5, h.hasMD5 = u.HA1For("MD5", s.Domain)
		h.sha256, h.hasSHA2 = u.HA1For("SHA-256", s.Domain)
		ha1[u.User] = h
	}
	auth, err := digest.New(digest.Options{
		Realm: s.Domain, Algorithms: s.DigestAlgorithms, Clock: n.clock,
		NonceTTL: time.Duration(s.NonceTTL) * time.Second, MaxTrackedNonces: s.MaxTrackedNonces,
		Users: func(user, alg string) (string, bool) {
			h, ok := ha1[user]
			switch {
			case !ok:
				return "", false
			case alg == "MD5":
				return h.md5, h.hasMD5
			case alg == "SHA-256":
				return h.sha256, h.hasSHA2
			}
			return "", false
		},
	})
	if err != nil {
		return err
	}
	n.gw, err = gateway.New(gateway.Options{
		Listen: s.Listen, Domain: s.Domain, Aliases: s.Aliases,
		MaxMessageBytes: s.MaxMessageBytes, MaxHeaders: s.MaxHeaders,
		ServerName: "Tandem/" + n.version,
		Auth:       auth, Registrar: n.registry, Metrics: n.metrics, Clock: n.clock,
		Logger: n.log.With("component", "sip"),
		Locate: func(aor string) []string {
			bs := n.loc.Lookup(aor, n.clock.Now())
			out := make([]string, 0, len(bs))
			for _, b := range bs {
				out = append(out, b.Contact)
			}
			return out
		},
		KnownUser:          func(user string) bool { _, ok := users[user]; return ok },
		MaxCallRate:        n.cfg.Calls.MaxRate,
		MaxActiveCalls:     n.cfg.Calls.MaxActive,
		ActiveCalls:        n.live.Count,
		OverloadRetryAfter: time.Duration(n.cfg.Calls.OverloadRetryAfter) * time.Second,
	})
	if err != nil {
		return err
	}
	n.calls = call.NewManager(n.system, call.Config{
		Store: st, Clock: n.clock, Node: n.cfg.NodeID, Transport: n.gw,
		NoAnswerTimeout: time.Duration(n.cfg.Calls.NoAnswerTimeout) * time.Second,
		MaxForks:        n.cfg.Calls.MaxForks,
		Metrics:         n.metrics, Dispatcher: n.pool, Logger: n.log.With("component", "calls"),
	})
	n.gw.SetCalls(n.calls)
	if err := n.gw.Start(); err != nil {
		return err
	}
	// Calls that were live when the node stopped: answered ones re-arm
	// their timers, ringing ones are ended cleanly (CANCEL, 487).
	live := n.live.IDs()
	for _, id := range live {
		if err := n.calls.Activate(id); err != nil {
			return fmt.Errorf("re-activate call %s: %w", id, err)
		}
	}
	if len(live) > 0 {
		n.log.Info("calls recovered", "calls", len(live))
	}
	n.api.Ready.Store(true)
	n.log.Info("tandem node ready", "node", n.cfg.NodeID, "sip", n.gw.Addrs(), "http", n.httpLn.Addr().String())
	return nil
}

// reactivate starts the actors of aors with bounded parallelism.
func (n *Node) reactivate(ctx context.Context, aors []string) error {
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for aor := range work {
				if err := n.registry.Activate(ctx, aor); err != nil {
					select {
					case errs <- fmt.Errorf("re-activate %s: %w", aor, err):
					default:
					}
				}
			}
		}()
	}
	for _, aor := range aors {
		work <- aor
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// Shutdown stops the node: SIP first (no new work), then actors (after the
// message each is handling), the projection, HTTP, and last the store.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	if n.api != nil {
		n.api.Ready.Store(false)
	}
	if n.gw != nil {
		errs = append(errs, n.gw.Shutdown(ctx))
	}
	if n.registry != nil {
		n.registry.Stop()
	}
	if n.calls != nil {
		n.calls.Stop()
	}
	if n.system != nil {
		n.system.Shutdown()
	}
	if n.pool != nil {
		n.pool.Stop()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.cdrs != nil {
		n.cdrs.Stop()
	}
	if n.cdrSink != nil {
		errs = append(errs, n.cdrSink.Close())
	}
	if n.httpSrv != nil {
		errs = append(errs, n.httpSrv.Shutdown(ctx))
	}
	n.bg.Wait()
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}
