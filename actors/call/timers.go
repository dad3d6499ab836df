package call

// The call's timers (no answer, session, 2xx retransmission, linger) and
// retirement.

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emiago/sipgo/sip"
)

func (a *callActor) arm(kind string, d time.Duration) {
	a.disarm(kind)
	a.timerGen++
	a.timers[kind] = a.m.after(a.id, d, &timerMsg{kind: kind, gen: a.timerGen})
}

func (a *callActor) disarm(kind string) {
	if t := a.timers[kind]; t != nil {
		t.Stop()
		delete(a.timers, kind)
	}
}

func (a *callActor) stopTimers() {
	for k := range a.timers {
		a.disarm(k)
	}
	for s := range a.retx {
		a.stopRetx(s)
	}
}

// armSession arms the session timer (RFC 4028 10): with no refresh by
// interval - min(32 s, interval/3) after the last one, the call is ended.
func (a *callActor) armSession() {
	st := a.state
	if st.Phase != PhaseAnswered || st.SessionInterval == 0 {
		return
	}
	iv := time.Duration(st.SessionInterval) * time.Second
	slack := min(32*time.Second, iv/3)
	due := st.RefreshedAt.Add(iv - slack)
	a.arm("session", max(0, due.Sub(a.cfg.Clock.Now())))
}

func (a *callActor) onTimer(ctx actor.Context, m *timerMsg) {
	switch m.kind {
	case "noanswer":
		if a.state.Phase == PhaseTrying && a.broken == nil {
			a.fail(ctx, "no_answer", 480, "Temporarily Unavailable", CauseNoAnswer, "no answer", timerCause("noanswer"))
		}
	case "relay":
		a.relayGivenUp()
	case "session":
		if a.state.Phase != PhaseAnswered || a.broken != nil {
			return
		}
		iv := time.Duration(a.state.SessionInterval) * time.Second
		slack := min(32*time.Second, iv/3)
		if a.cfg.Clock.Now().Before(a.state.RefreshedAt.Add(iv - slack)) {
			a.armSession() // refreshed meanwhile (a stale timer)
			return
		}
		a.endBySystem("session_expired", CauseRecoveryTimer, "session timer expired without a refresh")
	case "retx-a", "retx-b":
		a.onRetx(m.kind[5:], m.gen)
	case "linger":
		delete(a.timers, "linger") // maybeRetire decides
	}
}

// startRetx starts retransmitting a 2xx to side until its ACK (13.3.1.4).
func (a *callActor) startRetx(side string, res *sip.Response) {
	a.stopRetx(side)
	a.timerGen++
	r := &retx{res: res, interval: a.cfg.T1, deadline: a.cfg.Clock.Now().Add(64 * a.cfg.T1), gen: a.timerGen}
	r.timer = a.m.after(a.id, r.interval, &timerMsg{kind: "retx-" + side, gen: r.gen})
	a.retx[side] = r
}

func (a *callActor) stopRetx(side string) {
	if r := a.retx[side]; r != nil {
		r.timer.Stop()
		delete(a.retx, side)
	}
}

func (a *callActor) onRetx(side string, gen uint64) {
	r := a.retx[side]
	if r == nil || r.gen != gen {
		return
	}
	if !a.cfg.Clock.Now().Before(r.deadline) {
		delete(a.retx, side)
		// No ACK in 64*T1: the dialog is dead (13.3.1.4): end the call.
		a.endBySystem("timeout", CauseRecoveryTimer, "no ACK for the 2xx")
		return
	}
	_ = a.cfg.Transport.Write(r.res)
	r.interval = min(2*r.interval, 8*a.cfg.T1)
	r.timer = a.m.after(a.id, r.interval, &timerMsg{kind: "retx-" + side, gen: gen})
}

// maybeRetire stops an actor whose call is over once it has been quiet
// for Linger (or at once when broken).
func (a *callActor) maybeRetire(ctx actor.Context) {
	if a.retired {
		return
	}
	if a.broken != nil {
		a.finishA()
		a.retired = true
		a.stopTimers()
		a.m.retire(a.id, ctx.Self())
		return
	}
	if !a.state.Phase.Over() && a.state.Phase != PhaseNone {
		return
	}
	if a.relay != nil || len(a.retx) > 0 {
		return
	}
	quiet := a.cfg.Clock.Now().Sub(a.lastMsg)
	if a.state.Phase == PhaseNone || quiet >= a.cfg.Linger {
		a.retired = true
		a.stopTimers()
		a.m.retire(a.id, ctx.Self())
		return
	}
	if a.timers["linger"] == nil {
		a.arm("linger", a.cfg.Linger-quiet)
	}
}

// ------------------------------------------------------------ responses
