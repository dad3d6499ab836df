package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tandemswitch/tandem/projections/traffic"
)

// statsDefaultMinutes is the range of GET /api/v1/stats without from: the
// current minute and the 59 before it.
const statsDefaultMinutes = 60

// maxDomainLen bounds the domain parameter (a DNS name's 253 characters,
// an IPv6 reference's brackets and then some).
const maxDomainLen = 255

// stats serves GET /api/v1/stats?from=&to=&domain=: the traffic report
// (traffic.Report) of the minutes that overlap [from, to), for one caller
// domain or for all with a breakdown by domain. from and to are RFC 3339;
// to defaults to now, from to the start of the minute 59 minutes before
// to's. The range may not be longer than the minutes the projection keeps.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if s.Traffic == nil {
		writeError(w, http.StatusServiceUnavailable, "traffic projection not running")
		return
	}
	q := r.URL.Query()
	for _, name := range []string{"from", "to", "domain"} {
		if len(q[name]) > 1 {
			writeError(w, http.StatusBadRequest, name+": given more than once")
			return
		}
	}
	to, err := timeParam(q, "to", s.Clock.Now().UTC())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	from, _ := traffic.Last(to, statsDefaultMinutes)
	if from, err = timeParam(q, "from", from); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("from: %s is not before to (%s)", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
		return
	}
	if keep := s.Traffic.KeepMinutes(); to.Sub(from) > time.Duration(keep)*time.Minute {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("from: the range from %s to %s is longer than the %d minutes kept",
			from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano), keep))
		return
	}
	domain := q.Get("domain")
	if len(domain) > maxDomainLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("domain: longer than %d characters", maxDomainLen))
		return
	}
	writeJSON(w, http.StatusOK, s.Traffic.Stats(from, to, domain))
}

// timeParam reads query parameter name as an RFC 3339 time; def when
// it is absent.
func timeParam(q url.Values, name string, def time.Time) (time.Time, error) {
	if !q.Has(name) {
		return def, nil
	}
	v := q.Get(name)
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		hint := ""
		if strings.Contains(v, " ") {
			hint = ` (a "+" in a query string reads as a space: write it %2B)`
		}
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time such as 2026-11-22T10:00:00Z%s", name, v, hint)
	}
	return t, nil
}
