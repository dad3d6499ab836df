package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/actors/call"
	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/embedded"
	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/internal/metrics"
	"github.com/tandemswitch/tandem/projections/calls"
	"github.com/tandemswitch/tandem/projections/location"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	st := memstore.New()
	aor := "sip:alice@example.test"
	env, _ := events.Wrap(&eventpb.BindingAdded{Aor: aor, Binding: &eventpb.Binding{
		Contact: "sip:alice@10.0.0.1", ExpiresAt: timestamppb.New(t0.Add(time.Hour)), UserAgent: "ua", Source: "udp:10.0.0.1:5060",
	}}, t0, "n1", &eventpb.Cause{CallId: "c1", Cseq: 2, Method: "REGISTER"})
	if _, err := st.Append(context.Background(), "reg-"+aor, 0, []*eventpb.Envelope{env}); err != nil {
		t.Fatal(err)
	}
	loc := location.New()
	if err := loc.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(func() float64 { return float64(loc.Active(t0)) })
	m.ProjectionSkipped("location", func() float64 { return float64(loc.Skipped()) })
	s := &Server{Store: st, Location: loc, Clock: clock.NewFake(t0), Metrics: m.Handler()}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	if code, _ := get(t, srv, "/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz before ready = %d", code)
	}
	s.Ready.Store(true)
	if code, _ := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz when ready = %d", code)
	}

	code, body := get(t, srv, "/api/v1/registrations")
	var regs []Registration
	if code != 200 || json.Unmarshal([]byte(body), &regs) != nil || len(regs) != 1 {
		t.Fatalf("registrations: %d %s", code, body)
	}
	want := Registration{AOR: aor, Contact: "sip:alice@10.0.0.1", ExpiresAt: "2026-11-22T11:00:00.000Z", UserAgent: "ua", Source: "udp:10.0.0.1:5060"}
	if regs[0] != want {
		t.Fatalf("got %+v\nwant %+v", regs[0], want)
	}

	code, body = get(t, srv, "/api/v1/registrations/"+url.PathEscape(aor)+"/events")
	var evs []Event
	if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 1 {
		t.Fatalf("events: %d %s", code, body)
	}
	if evs[0].Type != "tandem.events.v1.BindingAdded" || evs[0].Version != 1 || evs[0].Position != 1 ||
		!strings.Contains(string(evs[0].Data), "sip:alice@10.0.0.1") || !strings.Contains(string(evs[0].Cause), `"call_id": "c1"`) {
		t.Fatalf("event %+v", evs[0])
	}
	if code, body := get(t, srv, "/api/v1/registrations/"+url.PathEscape("sip:nobody@example.test")+"/events"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("events of an unknown AOR: %d %q", code, body)
	}

	m.SIPRequest("REGISTER")
	m.SIPRequest("BOGUS")
	m.SIPResponse(200)
	_, body = get(t, srv, "/metrics")
	for _, line := range []string{
		`tandem_registrations_active 1`,
		`tandem_sip_requests_total{method="REGISTER"} 1`,
		`tandem_sip_requests_total{method="OTHER"} 1`,
		`tandem_sip_responses_total{code="200"} 1`,
		`tandem_store_append_duration_seconds_bucket`,
		`tandem_projection_skipped_events_total{projection="location"} 0`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if code, _ := get(t, srv, "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof served while disabled: %d", code)
	}
}

func TestCallsAPI(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	st := memstore.New()
	id := call.IDFor("c1@h", "ft", 1)
	var envs []*eventpb.Envelope
	for _, e := range []proto.Message{
		&eventpb.CallStarted{Caller: "sip:alice@example.test", Callee: "sip:bob@example.test", ALeg: &eventpb.ALeg{CallId: "c1@h"}},
		&eventpb.LegAttempted{Leg: 1, RequestUri: "sip:bob@10.0.0.2"},
	} {
		env, _ := events.Wrap(e, t0, "n1", &eventpb.Cause{CallId: "c1@h", Cseq: 1, Method: "INVITE"})
		envs = append(envs, env)
	}
	if _, err := st.Append(context.Background(), call.StreamName(id), 0, envs); err != nil {
		t.Fatal(err)
	}
	live := calls.New()
	if err := live.CatchUp(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	s := &Server{Store: st, Location: location.New(), Calls: live, Clock: clock.NewFake(t0)}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	code, body := get(t, srv, "/api/v1/calls")
	var list []calls.Call
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 ||
		list[0].ID != id || list[0].State != "trying" || list[0].Caller != "sip:alice@example.test" || len(list[0].Legs) != 1 {
		t.Fatalf("calls: %d %s", code, body)
	}
	code, body = get(t, srv, "/api/v1/calls/"+id+"/events")
	var evs []Event
	if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 2 || evs[0].Type != "tandem.events.v1.CallStarted" {
		t.Fatalf("call events: %d %s", code, body)
	}
	if code, body := get(t, srv, "/api/v1/calls/not-an-id/events"); code != 400 || !strings.Contains(body, "id") {
		t.Fatalf("bad id: %d %s", code, body)
	}
	if code, _ := get(t, srv, "/api/v1/calls/"+call.IDFor("other", "x", 1)+"/events"); code != 404 {
		t.Fatalf("unknown call: %d", code)
	}
}

// TestAuditVerifyAPI: GET /api/v1/audit/verify answers the embedded
// store's report in snake_case; tampering is a 200 with intact false, a
// failed walk a 500, and a node without an audit a 501.
func TestAuditVerifyAPI(t *testing.T) {
	st, err := embedded.Open(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 2; i++ {
		env, _ := events.Wrap(&eventpb.CallAnswered{Leg: 1}, time.Unix(1700000000, 0), "n1", &eventpb.Cause{})
		if _, err := st.Append(context.Background(), "call-x", events.AnyVersion, []*eventpb.Envelope{env}); err != nil {
			t.Fatal(err)
		}
	}
	tampered := &embedded.AuditReport{EventsChecked: 4, HeadPosition: 9, HeadHash: strings.Repeat("ab", 32),
		FirstProblem: &embedded.Problem{Position: 3, Kind: embedded.ProblemAltered, Message: "position 3 hashes to ...", DetectedBy: 4}}
	for _, tc := range []struct {
		name  string
		audit func(context.Context) (*embedded.AuditReport, error)
		code  int
		want  []string
	}{
		{"intact", st.Verify, 200, []string{`"intact": true`, `"events_checked": 2`, `"head_position": 2`, `"head_hash": "`}},
		{"tampered", func(context.Context) (*embedded.AuditReport, error) { return tampered, nil }, 200,
			[]string{`"intact": false`, `"first_problem": {`, `"position": 3`, `"kind": "altered"`, `"detected_by": 4`, `"message": "position 3`}},
		{"walk failed", func(context.Context) (*embedded.AuditReport, error) { return nil, errors.New("disk on fire") }, 500,
			[]string{`"error": "audit verify: disk on fire"`}},
		{"no audit", nil, 501, []string{`"error": "this node's event store keeps no hash chain`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Store: st, Audit: tc.audit}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			code, body := get(t, srv, "/api/v1/audit/verify")
			if code != tc.code {
				t.Fatalf("code %d, want %d: %s", code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("answer lacks %s:\n%s", w, body)
				}
			}
		})
	}
}
