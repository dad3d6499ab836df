// Package api serves Tandem's HTTP interface: health, the registrations
// listing, the live calls, traffic statistics, a stream's events, CDRs and
// the projections' status, the auditors' replay and point-in-time state
// (rendered by projections/replay, for the tools' --server mode), the audit
// of the event log, and Prometheus metrics. It only reads the projections
// and the event store, except that it can rebuild a projection; handlers
// run concurrently.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/actors/registrar"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/calls"
	"github.com/tandemswitch/tandem/projections/cdr"
	"github.com/tandemswitch/tandem/projections/location"
	"github.com/tandemswitch/tandem/projections/traffic"
)

// Server holds what the handlers read.
type Server struct {
	Store    events.Store
	Location *location.Index
	Calls    *calls.Live
	Traffic  *traffic.Projection // GET /api/v1/stats; nil: 503
	Clock    clock.Clock
	Metrics  http.Handler
	// Audit verifies the event log's hash chain (the embedded store's
	// Verify) for GET /api/v1/audit/verify; nil answers 501.
	Audit func(ctx context.Context) (*embedded.AuditReport, error)
	// Pprof mounts net/http/pprof under /debug/pprof/ (config http.pprof).
	Pprof bool
	// Projections are the durable projections by name (status, rebuild).
	Projections map[string]*projections.Background
	// CDRs is the CDR projection's output, for export.
	CDRs *cdr.Sink
	// Ready is set once SIP and the store are serving.
	Ready atomic.Bool
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/v1/registrations", s.registrations)
	mux.HandleFunc("GET /api/v1/registrations/{aor}/events", s.registrationEvents)
	mux.HandleFunc("GET /api/v1/calls", s.calls)
	mux.HandleFunc("GET /api/v1/calls/{id}/events", s.callEvents)
	mux.HandleFunc("GET /api/v1/projections", s.projectionStatus)
	mux.HandleFunc("POST /api/v1/projections/{name}/rebuild", s.rebuildProjection)
	mux.HandleFunc("GET /api/v1/cdrs", s.cdrs)
	mux.HandleFunc("GET /api/v1/stats", s.stats)
	mux.HandleFunc("GET /api/v1/replay/calls/{id}", s.replayCall)
	mux.HandleFunc("GET /api/v1/replay/registrations/{aor}", s.replayRegistration)
	mux.HandleFunc("GET /api/v1/state", s.stateAt)
	mux.HandleFunc("GET /api/v1/audit/verify", s.auditVerify)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// Registration is one binding in GET /api/v1/registrations.
type Registration struct {
	AOR       string `json:"aor"`
	Contact   string `json:"contact"`
	ExpiresAt string `json:"expires_at"` // RFC 3339, UTC, millisecond precision
	UserAgent string `json:"user_agent"`
	Source    string `json:"source"`
}

// timeFormat is RFC 3339 in UTC with milliseconds, as in every API answer.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func (s *Server) registrations(w http.ResponseWriter, _ *http.Request) {
	entries := s.Location.Entries(s.Clock.Now())
	out := make([]Registration, 0, len(entries))
	for _, e := range entries {
		out = append(out, Registration{
			AOR: e.AOR, Contact: e.Contact, ExpiresAt: e.ExpiresAt.UTC().Format(timeFormat),
			UserAgent: e.UserAgent, Source: e.Source,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// Event is one event in a stream listing.
type Event struct {
	Stream   string          `json:"stream"`
	Version  uint64          `json:"version"`
	Position uint64          `json:"position"`
	Time     string          `json:"time"`
	Node     string          `json:"node"`
	Type     string          `json:"type"`
	Cause    json.RawMessage `json:"cause,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

func (s *Server) registrationEvents(w http.ResponseWriter, r *http.Request) {
	aor := r.PathValue("aor")
	if aor == "" {
		writeError(w, http.StatusBadRequest, "missing aor")
		return
	}
	s.streamEvents(w, r, registrar.StreamName(aor))
}

func (s *Server) calls(w http.ResponseWriter, _ *http.Request) {
	if s.Calls == nil {
		writeJSON(w, http.StatusOK, []calls.Call{})
		return
	}
	writeJSON(w, http.StatusOK, s.Calls.List())
}

func (s *Server) callEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !call.ValidID(id) {
		writeError(w, http.StatusBadRequest, "id: not a call id (24 characters a-z, 2-7)")
		return
	}
	envs, err := s.Store.ReadStream(r.Context(), call.StreamName(id), 1, 1)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(envs) == 0 {
		writeError(w, http.StatusNotFound, "no such call: "+id)
		return
	}
	s.streamEvents(w, r, call.StreamName(id))
}

// auditVerify walks the whole event log and answers the report: 200 with
// "intact": false when it found tampering (a finding, not a failure), 500
// only when the walk itself failed.
func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	if s.Audit == nil {
		writeError(w, http.StatusNotImplemented, "this node's event store keeps no hash chain to verify")
		return
	}
	rep, err := s.Audit(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "audit verify: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// maxEvents bounds one listing.
const maxEvents = 10000

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, stream string) {
	envs, err := s.Store.ReadStream(r.Context(), stream, 1, maxEvents)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := make([]Event, 0, len(envs))
	for _, env := range envs {
		ev, err := EventJSON(env)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out = append(out, ev)
	}
	writeJSON(w, http.StatusOK, out)
}

// EventJSON renders an envelope; a payload of unknown type is shown without
// its data rather than failing the listing.
func EventJSON(env *eventpb.Envelope) (Event, error) {
	ev := Event{
		Stream: env.GetStream(), Version: env.GetVersion(), Position: env.GetPosition(),
		Time: env.GetTime().AsTime().UTC().Format(timeFormat), Node: env.GetNode(), Type: env.GetType(),
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	if env.GetCause() != nil {
		b, err := mo.Marshal(env.GetCause())
		if err != nil {
			return ev, err
		}
		ev.Cause = b
	}
	msg, err := events.Unwrap(env)
	switch {
	case errors.Is(err, events.ErrUnknownType):
	case err != nil:
		return ev, err
	default:
		b, err := mo.Marshal(msg)
		if err != nil {
			return ev, err
		}
		ev.Data = b
	}
	return ev, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
