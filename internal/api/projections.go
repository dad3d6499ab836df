package api

import (
	"net/http"
	"sort"
	"strconv"

	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/cdr"
)

// projectionStatus answers GET /api/v1/projections: each durable
// projection's checkpoint against the store's head.
func (s *Server) projectionStatus(w http.ResponseWriter, _ *http.Request) {
	out := make([]projections.Status, 0, len(s.Projections))
	for _, b := range s.Projections {
		out = append(out, b.R.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

// rebuildProjection answers POST /api/v1/projections/{name}/rebuild: it
// deletes the projection's output and folds the log again from position 1,
// answering when it has caught up.
func (s *Server) rebuildProjection(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, ok := s.Projections[name]
	if !ok {
		writeError(w, http.StatusNotFound, "name: no projection "+strconv.Quote(name)+" (see GET /api/v1/projections)")
		return
	}
	st, err := b.Rebuild(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// cdrs answers GET /api/v1/cdrs?from=&to=&format=csv|json with the CDRs of
// calls that started in [from, to).
func (s *Server) cdrs(w http.ResponseWriter, r *http.Request) {
	if s.CDRs == nil {
		writeError(w, http.StatusServiceUnavailable, "the CDR projection is not running")
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "csv" && format != "json" {
		writeError(w, http.StatusBadRequest, "format: want csv or json, got "+strconv.Quote(format))
		return
	}
	from, err := cdr.ParseBound(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	to, err := cdr.ParseBound(q.Get("to"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	list, err := s.CDRs.Export(r.Context(), from, to)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_ = cdr.Write(w, format, list)
}
