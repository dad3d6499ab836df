package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events/eventpb"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/projections/traffic"
	"github.com/tandemswitch/tandem/projections/traffic/traffictest"
)

// trafficOf folds two calls: a.test answered at 10:00:05 for 30 s, b.test
// busy at 10:01:10.
func trafficOf(t *testing.T, t0 time.Time) *traffic.Projection {
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	return traffictest.Folded(t,
		traffictest.Event{At: sec(0), Call: "a", Msg: &eventpb.CallStarted{Caller: "sip:alice@a.test"}},
		traffictest.Event{At: sec(5), Call: "a", Msg: &eventpb.CallAnswered{Leg: 1}},
		traffictest.Event{At: sec(35), Call: "a", Msg: &eventpb.CallEnded{By: "caller"}},
		traffictest.Event{At: sec(70), Call: "b", Msg: &eventpb.CallStarted{Caller: "sip:bob@B.test"}},
		traffictest.Event{At: sec(71), Call: "b", Msg: &eventpb.CallFailed{Reason: "rejected", SipStatus: 486}},
	)
}

func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func TestStatsAPI(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	s := &Server{Traffic: trafficOf(t, t0), Clock: clock.NewFake(t0.Add(3*time.Minute + 30*time.Second))}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	// Default: the current minute (10:03) and the 59 before it.
	code, body := get(t, srv, "/api/v1/stats")
	var r traffic.Report
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
		t.Fatalf("default: %d %s", code, body)
	}
	if len(r.Series) != 60 || !r.From.Equal(t0.Add(-56*time.Minute)) || !r.To.Equal(t0.Add(4*time.Minute)) ||
		r.Totals.Attempts != 2 || len(r.Domains) != 2 || r.Domains[0].Domain != "a.test" || r.Domains[1].Domain != "b.test" {
		t.Fatalf("default range: %d minutes %s..%s, totals %+v, %d domains", len(r.Series), r.From, r.To, r.Totals, len(r.Domains))
	}

	// A range and a domain; the JSON keys are the contract.
	code, body = get(t, srv, "/api/v1/stats?from=2026-11-22T10:00:00Z&to=2026-11-22T10:02:00Z&domain=A.TEST")
	var raw map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &raw) != nil {
		t.Fatalf("range: %d %s", code, body)
	}
	totals := raw["totals"].(map[string]any)
	series := raw["series"].([]any)
	for what, got := range map[string]string{
		"report": keysOf(raw),
		"totals": keysOf(totals),
		"minute": keysOf(series[0].(map[string]any)),
		"domain": keysOf(raw["domains"].([]any)[0].(map[string]any)),
	} {
		want := map[string]string{
			"report": "domain,domains,from,series,to,totals",
			"totals": "acd_seconds,answered,asr,attempts,by_disposition,concurrent_calls,concurrent_peak",
			"minute": "acd_seconds,answered,asr,attempts,concurrent_end,concurrent_peak,minute",
			"domain": "domain,series,totals",
		}[what]
		if got != want {
			t.Errorf("%s keys %s, want %s", what, got, want)
		}
	}
	if raw["from"] != "2026-11-22T10:00:00Z" || raw["to"] != "2026-11-22T10:02:00Z" || raw["domain"] != "a.test" ||
		totals["attempts"] != 1.0 || totals["asr"] != 1.0 || totals["acd_seconds"] != 30.0 ||
		totals["by_disposition"].(map[string]any)["ANSWERED"] != 1.0 || len(series) != 2 ||
		series[0].(map[string]any)["minute"] != "2026-11-22T10:00:00Z" || series[1].(map[string]any)["asr"] != nil {
		t.Fatalf("a.test 10:00-10:02:\n%s", body)
	}

	// A "+" offset, escaped, works.
	if code, body := get(t, srv, "/api/v1/stats?from=2026-11-22T11:01:00%2B01:00&to=2026-11-22T11:02:00%2B01:00"); code != 200 ||
		!strings.Contains(body, `"from": "2026-11-22T10:01:00Z"`) || !strings.Contains(body, `"BUSY": 1`) {
		t.Fatalf("offset: %d %s", code, body)
	}

	// Bad input: 400 with a JSON error naming the parameter.
	for _, tc := range []struct{ query, param string }{
		{"from=yesterday", "from:"},
		{"to=2026-11-22", "to:"},
		{"from=", "from:"},
		{"from=2026-11-22T11:00:00+01:00", `write it %2B`},
		{"from=2026-11-22T10:05:00Z&to=2026-11-22T10:00:00Z", "from:"},
		{"from=2026-11-22T10:00:00Z&to=2026-11-22T10:00:00Z", "from:"},
		{"from=2026-11-01T00:00:00Z&to=2026-11-22T10:00:00Z", "10080 minutes"},
		{"to=2026-11-22T10:00:00Z&to=2026-11-22T10:01:00Z", "to: given more than once"},
		{"domain=" + strings.Repeat("x", 256), "domain:"},
	} {
		code, body := get(t, srv, "/api/v1/stats?"+tc.query)
		var e map[string]string
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], tc.param) {
			t.Errorf("?%s: %d %s, want 400 naming %q", tc.query, code, body, tc.param)
		}
	}

	// Without a projection: 503, not a panic.
	bare := httptest.NewServer((&Server{Clock: clock.NewFake(t0)}).Handler())
	defer bare.Close()
	if code, body := get(t, bare, "/api/v1/stats"); code != http.StatusServiceUnavailable || !strings.Contains(body, "traffic") {
		t.Fatalf("no projection: %d %s", code, body)
	}
}

// The handler answers requests built by hand too (httptest.NewRecorder),
// with a JSON content type.
func TestStatsContentType(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	s := &Server{Traffic: trafficOf(t, t0), Clock: clock.NewFake(t0)}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/stats?domain=b.test", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
}
