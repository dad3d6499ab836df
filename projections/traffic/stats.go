package traffic

import (
	"sort"
	"strings"
	"time"
)

// Report is the answer to a Stats query: the figures of the minutes that
// overlap [From, To), in total and minute by minute, for all calls and
// for each domain.
type Report struct {
	// From is the start of the first minute reported and To the end of the
	// last (UTC). A query is cut to the minutes the projection keeps.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Domain is the query's domain filter ("" for none).
	Domain string `json:"domain"`
	// Totals and Series cover the calls of Domain (all calls without a
	// filter).
	Totals Totals   `json:"totals"`
	Series []Minute `json:"series"`
	// Domains breaks the figures down by caller domain, sorted by domain:
	// without a filter, every domain with calls in the range; with one,
	// that domain alone.
	Domains []DomainReport `json:"domains"`
}

// DomainReport is one domain's figures.
type DomainReport struct {
	Domain string   `json:"domain"`
	Totals Totals   `json:"totals"`
	Series []Minute `json:"series"`
}

// Totals sums a range of minutes.
type Totals struct {
	Attempts int64 `json:"attempts"`
	Answered int64 `json:"answered"`
	// ASR is Answered / Attempts; nil (null) without attempts.
	ASR *float64 `json:"asr"`
	// ACD is the mean billable seconds of the answered calls that ended in
	// the range; nil (null) when none did.
	ACD *float64 `json:"acd_seconds"`
	// ByDisposition counts the calls that ended in the range by their CDR
	// disposition (every one of Dispositions is present).
	ByDisposition map[string]int64 `json:"by_disposition"`
	// ConcurrentPeak is the most calls up at once in the range.
	ConcurrentPeak int64 `json:"concurrent_peak"`
	// Concurrent is the number of calls up now (after the last event
	// folded), whatever the range.
	Concurrent int64 `json:"concurrent_calls"`
}

// Minute is one minute's figures.
type Minute struct {
	Minute   time.Time `json:"minute"` // its start, UTC
	Attempts int64     `json:"attempts"`
	Answered int64     `json:"answered"`
	ASR      *float64  `json:"asr"`         // nil (null) without attempts
	ACD      *float64  `json:"acd_seconds"` // nil (null) when no answered call ended
	// Calls up: the most at once during the minute, and at its end.
	ConcurrentPeak int64 `json:"concurrent_peak"`
	ConcurrentEnd  int64 `json:"concurrent_end"`
}

// Last returns the range of the current minute of now and the n-1 before
// it, up to now: the range of "the last n minutes".
func Last(now time.Time, n int) (from, to time.Time) {
	return now.UTC().Truncate(time.Minute).Add(-time.Duration(n-1) * time.Minute), now
}

// Stats reports the minutes that overlap [from, to) for domain (compared
// lower-cased; "" for all domains). The range is cut to the newest
// KeepMinutes minutes of it and to the minutes the projection still keeps;
// a range that is empty (to not after from) or older than every kept
// minute has no series.
func (p *Projection) Stats(from, to time.Time, domain string) Report {
	domain = strings.ToLower(domain)
	p.mu.RLock()
	defer p.mu.RUnlock()
	first, last := minuteOf(from), minuteOf(to.Add(-time.Nanosecond))
	first = max(first, last-p.keep+1)
	if p.seen {
		first = max(first, p.newest-p.keep+1)
	}
	if !to.After(from) {
		first, last = minuteOf(from), minuteOf(from)-1
	}
	r := Report{Domain: domain, From: minuteTime(first), To: minuteTime(max(first, last+1))}
	if domain != "" {
		k := Key{Domain: domain}
		r.Totals, r.Series = p.view(first, last, k, true)
		r.Domains = []DomainReport{{Domain: domain, Totals: r.Totals, Series: r.Series}}
		return r
	}
	r.Totals, r.Series = p.view(first, last, Key{}, false)
	keys := make([]Key, 0, len(p.life))
	for k := range p.life {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	r.Domains = []DomainReport{}
	for _, k := range keys {
		t, s := p.view(first, last, k, true)
		if t.Attempts == 0 && t.Answered == 0 && t.ConcurrentPeak == 0 && sum(t.ByDisposition) == 0 {
			continue // no call of this domain in the range
		}
		r.Domains = append(r.Domains, DomainReport{Domain: k.Domain, Totals: t, Series: s})
	}
	return r
}

func minuteTime(m int64) time.Time { return time.Unix(m*60, 0).UTC() }

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// view computes the figures of minutes first..last for key k (byKey) or
// for all keys. Called with p.mu held for reading.
func (p *Projection) view(first, last int64, k Key, byKey bool) (Totals, []Minute) {
	get := func(m int64) *counts {
		b := p.buckets[m]
		switch {
		case b == nil:
			return nil
		case byKey:
			return b.keys[k]
		}
		return &b.all
	}
	// The calls up at the start of first: those up now, less every
	// change since (all kept: first is within the window).
	up := p.upAll
	if byKey {
		up = p.up[k]
	}
	now := up
	for _, m := range p.minutes[sort.Search(len(p.minutes), func(i int) bool { return p.minutes[i] >= first }):] {
		if c := get(m); c != nil {
			up -= c.delta
		}
	}
	var tc counts
	t := Totals{Concurrent: now, ConcurrentPeak: up}
	series := make([]Minute, 0, max(0, last-first+1))
	for m := first; m <= last; m++ {
		row := Minute{Minute: minuteTime(m), ConcurrentPeak: up, ConcurrentEnd: up}
		if c := get(m); c != nil {
			row.Attempts, row.Answered = c.attempts, c.answered
			row.ASR, row.ACD = rates(c)
			row.ConcurrentPeak = up + c.peak
			up += c.delta
			row.ConcurrentEnd = up
			tc.attempts += c.attempts
			tc.answered += c.answered
			tc.billable += c.billable
			for i, n := range c.ended {
				tc.ended[i] += n
			}
		}
		t.ConcurrentPeak = max(t.ConcurrentPeak, row.ConcurrentPeak)
		series = append(series, row)
	}
	if last < first {
		t.ConcurrentPeak = 0
	}
	t.Attempts, t.Answered = tc.attempts, tc.answered
	t.ASR, t.ACD = rates(&tc)
	t.ByDisposition = dispositionMap(&tc.ended)
	return t, series
}

// rates computes ASR and ACD from counts; nil where undefined.
func rates(c *counts) (asr, acd *float64) {
	if c.attempts > 0 {
		v := float64(c.answered) / float64(c.attempts)
		asr = &v
	}
	if n := c.ended[answeredIndex]; n > 0 {
		v := float64(c.billable) / float64(n)
		acd = &v
	}
	return asr, acd
}
