package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemswitch/tandem/internal/clock"
)

// rateLimitedHandler passes at most perSecond records a second to next and
// drops the rest; it guards the log against floods of malformed packets.
// Called concurrently.
type rateLimitedHandler struct {
	next      slog.Handler
	perSecond int
	clock     clock.Clock
	state     *rateState
}

type rateState struct {
	mu     sync.Mutex
	window time.Time
	count  int
}

func newRateLimitedHandler(next slog.Handler, perSecond int, clk clock.Clock) *rateLimitedHandler {
	return &rateLimitedHandler{next: next, perSecond: perSecond, clock: clk, state: &rateState{}}
}

func (h *rateLimitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.next.Enabled(ctx, l)
}

func (h *rateLimitedHandler) Handle(ctx context.Context, r slog.Record) error {
	now := h.clock.Now().Truncate(time.Second)
	h.state.mu.Lock()
	if !now.Equal(h.state.window) {
		h.state.window, h.state.count = now, 0
	}
	h.state.count++
	pass := h.state.count <= h.perSecond
	h.state.mu.Unlock()
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimitedHandler{next: h.next.WithAttrs(as), perSecond: h.perSecond, clock: h.clock, state: h.state}
}

func (h *rateLimitedHandler) WithGroup(name string) slog.Handler {
	return &rateLimitedHandler{next: h.next.WithGroup(name), perSecond: h.perSecond, clock: h.clock, state: h.state}
}
