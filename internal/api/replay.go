package api

import (
	"bytes"
	"errors"
	"net/http"

	"github.com/tandemswitch/tandem/projections/replay"
)

// The auditors' endpoints: the same renderings the tools make from a data
// directory, made here from the running node's store.
//
//	GET /api/v1/replay/calls/{id}?format=text|json|svg
//	GET /api/v1/replay/registrations/{aor}?format=text|json|svg
//	GET /api/v1/state?at=<RFC 3339>&format=text|json
//
// Bad input is a 400 whose JSON error names the parameter; a stream with no
// events is a 404.

func (s *Server) replayCall(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := replay.CheckCallID(id); err != nil {
		writeError(w, http.StatusBadRequest, "id: "+err.Error())
		return
	}
	s.replayStream(w, r, func() (*replay.Ladder, error) { return replay.ReadCall(r.Context(), s.Store, id) })
}

func (s *Server) replayRegistration(w http.ResponseWriter, r *http.Request) {
	aor := r.PathValue("aor")
	if err := replay.CheckAOR(aor); err != nil {
		writeError(w, http.StatusBadRequest, "aor: "+err.Error())
		return
	}
	s.replayStream(w, r, func() (*replay.Ladder, error) { return replay.ReadRegistration(r.Context(), s.Store, aor) })
}

func (s *Server) replayStream(w http.ResponseWriter, r *http.Request, read func() (*replay.Ladder, error)) {
	f, err := replay.ParseLadderFormat(r.URL.Query().Get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "format: "+err.Error())
		return
	}
	l, err := read()
	switch {
	case errors.Is(err, replay.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRendered(w, f, func(b *bytes.Buffer) error { return l.Render(b, f) })
}

func (s *Server) stateAt(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("at") == "" {
		writeError(w, http.StatusBadRequest, "at: missing: give the moment as an RFC 3339 time such as 2026-11-22T10:00:00Z")
		return
	}
	at, err := replay.ParseTime(q.Get("at"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "at: "+err.Error())
		return
	}
	f, err := replay.ParseStateFormat(q.Get("format"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "format: "+err.Error())
		return
	}
	snap, err := replay.StateAt(r.Context(), s.Store, at)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRendered(w, f, func(b *bytes.Buffer) error { return snap.Render(b, f) })
}

// writeRendered renders whole before answering, so that a failure is a 500
// rather than half a document.
func writeRendered(w http.ResponseWriter, f replay.Format, render func(*bytes.Buffer) error) {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", f.ContentType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
