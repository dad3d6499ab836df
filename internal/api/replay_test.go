package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tandemswitch/tandem/events/history"
	"github.com/tandemswitch/tandem/events/memstore"
	"github.com/tandemswitch/tandem/internal/clock"
	"github.com/tandemswitch/tandem/projections/location"
)

const replayTestdata = "../../projections/replay/testdata/"

// The replay endpoints answer with the same renderings as the golden
// files of projections/replay, and name the parameter on bad input.
func TestReplayAPI(t *testing.T) {
	call := serveHistories(t, "call-fork-leg2-wins")
	reg := serveHistories(t, "registration-lifecycle")
	both := serveHistories(t, "call-fork-leg2-wins", "registration-lifecycle")

	id := "o54t4qtdfqwvbscm7sszwbxq"
	aor := url.PathEscape("sip:alice@example.test")
	for _, tc := range []struct {
		srv                 *httptest.Server
		path, golden, ctype string
	}{
		{call, "/api/v1/replay/calls/" + id, "call-fork-leg2-wins.golden.txt", "text/plain; charset=utf-8"},
		{call, "/api/v1/replay/calls/" + id + "?format=json", "call-fork-leg2-wins.golden.json", "application/json"},
		{call, "/api/v1/replay/calls/" + id + "?format=svg", "call-fork-leg2-wins.golden.svg", "image/svg+xml"},
		{reg, "/api/v1/replay/registrations/" + aor + "?format=text", "registration-lifecycle.golden.txt", "text/plain; charset=utf-8"},
		{reg, "/api/v1/replay/registrations/" + aor + "?format=svg", "registration-lifecycle.golden.svg", "image/svg+xml"},
	} {
		res, err := http.Get(tc.srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		want, err := os.ReadFile(replayTestdata + tc.golden)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.ctype || body != string(want) {
			t.Errorf("GET %s: %d %s\n%s", tc.path, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}

	// The registration was gone by 10:06:15; the call was up from 10:00.
	code, body := get(t, both, "/api/v1/state?at=2026-11-22T10:00:20Z&format=json")
	var snap struct {
		Registrations []struct{ Contact string }   `json:"registrations"`
		Calls         []struct{ ID, State string } `json:"calls"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &snap) != nil || len(snap.Registrations) != 1 || len(snap.Calls) != 1 ||
		snap.Calls[0].ID != id || snap.Calls[0].State != "answered" {
		t.Errorf("state: %d %s", code, body)
	}
	if code, body := get(t, both, "/api/v1/state?at=2026-11-22T11:00:00%2B01:00"); code != 200 ||
		!strings.Contains(body, "registrations bound: 1") || !strings.Contains(body, "calls up: 1") {
		t.Errorf("state as text: %d %s", code, body)
	}

	for _, tc := range []struct {
		path string
		code int
		says string
	}{
		{"/api/v1/replay/calls/not-an-id", 400, `"id: \"not-an-id\" is not a call id`},
		{"/api/v1/replay/calls/" + id + "?format=xml", 400, `"format: \"xml\" is not a format: want text, json or svg"`},
		{"/api/v1/replay/calls/aaaaaaaaaaaaaaaaaaaaaaaa", 404, `"no such call: aaaaaaaaaaaaaaaaaaaaaaaa"`},
		{"/api/v1/replay/registrations/alice", 400, `"aor: \"alice\" is not an address of record`},
		{"/api/v1/replay/registrations/" + url.PathEscape("sip:bob@example.test"), 404, `"no registration events for sip:bob@example.test"`},
		{"/api/v1/state", 400, `"at: missing`},
		{"/api/v1/state?at=yesterday", 400, `"at: \"yesterday\" is not an RFC 3339 time`},
		{"/api/v1/state?at=2026-11-22T10:00:00Z&format=svg", 400, `"format: \"svg\" is not a format: want text or json"`},
	} {
		code, body := get(t, both, tc.path)
		if code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("GET %s: %d %s, want %d with %s", tc.path, code, body, tc.code, tc.says)
		}
	}
}

// serveHistories serves an API over a store holding the recorded
// histories named, in that order.
func serveHistories(t *testing.T, names ...string) *httptest.Server {
	t.Helper()
	st := memstore.New()
	for _, name := range names {
		if err := history.AppendFiles(context.Background(), st, replayTestdata+name+".events.json"); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Store: st, Location: location.New(), Clock: clock.NewFake(time.Now())}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, res.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
