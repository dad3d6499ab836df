package cdr

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	// Drivers, chosen for being well kept and free of cgo: modernc.org's
	// SQLite is SQLite translated to Go (the binary stays static), and
	// pgx is the PostgreSQL driver Go projects standardise on.
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Sink is where CDRs, the calls in progress and the checkpoint live: one
// SQL database, written only in transactions that carry all three.
type Sink struct {
	db      *sql.DB
	dialect dialect
	where   string // for messages: the file or the server
}

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// timeType is the column type of a time; times are stored as
	// timestamptz in PostgreSQL and as RFC 3339 text with milliseconds in
	// SQLite (which sorts and compares correctly as text).
	timeType string
	// numbered placeholders ($1) rather than ?.
	numbered bool
}

var (
	sqliteDialect   = dialect{name: "sqlite", timeType: "TEXT"}
	postgresDialect = dialect{name: "postgres", timeType: "TIMESTAMPTZ", numbered: true}
)

// timeText is the SQLite representation of a time.
const timeText = "2006-01-02T15:04:05.000Z"

// q rewrites ? placeholders for the dialect.
func (d dialect) q(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// tv is the value stored for time t.
func (d dialect) tv(t time.Time) any {
	if d.numbered {
		return t.UTC()
	}
	return t.UTC().Format(timeText)
}

// OpenSQLite opens (creating it and its directory when missing) the SQLite
// database at path. The database runs in WAL mode with synchronous=NORMAL:
// a commit is atomic, and a power cut may lose the latest commits, which
// the projection then folds again from its older checkpoint (never a gap,
// never a duplicate). Its page cache is 64 MiB (SQLite's default is 2 MiB):
// a rebuild inserts into the middle of the call-id index all the time.
func OpenSQLite(ctx context.Context, path string) (*Sink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cdr: sqlite %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("cdr: sqlite %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and readers on other
	// connections would need the same pragmas.
	db.SetMaxOpenConns(1)
	s := &Sink{db: db, dialect: sqliteDialect, where: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a libpq
// connection string or URL) and creates the tables when missing.
func OpenPostgres(ctx context.Context, dsn string) (*Sink, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("cdr: postgres: %w", err)
	}
	db.SetMaxOpenConns(4)
	s := &Sink{db: db, dialect: postgresDialect, where: "postgres"}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Sink) Close() error { return s.db.Close() }

// Dialect is "sqlite" or "postgres".
func (s *Sink) Dialect() string { return s.dialect.name }

func (s *Sink) migrate(ctx context.Context) error {
	tt := s.dialect.timeType
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS cdr (
			call_id TEXT PRIMARY KEY,
			caller TEXT NOT NULL, callee TEXT NOT NULL, request_uri TEXT NOT NULL, source TEXT NOT NULL,
			start_time ` + tt + ` NOT NULL, answer_time ` + tt + `, end_time ` + tt + ` NOT NULL,
			duration BIGINT NOT NULL, billable BIGINT NOT NULL, disposition TEXT NOT NULL,
			sip_status INTEGER NOT NULL, q850_cause INTEGER NOT NULL, hangup_side TEXT NOT NULL,
			legs INTEGER NOT NULL, nodes TEXT NOT NULL, end_position BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS cdr_start ON cdr (start_time, call_id)`,
		`CREATE TABLE IF NOT EXISTS cdr_open (call_id TEXT PRIMARY KEY, state TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS tandem_projections (name TEXT PRIMARY KEY, checkpoint BIGINT NOT NULL)`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("cdr: %s: create tables: %w", s.where, err)
		}
	}
	return nil
}

// load returns the checkpoint and the calls in progress.
func (s *Sink) load(ctx context.Context, name string) (uint64, map[string]*open, error) {
	var cp int64
	err := s.db.QueryRowContext(ctx, s.dialect.q(`SELECT checkpoint FROM tandem_projections WHERE name = ?`), name).Scan(&cp)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("cdr: %s: read checkpoint: %w", s.where, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT call_id, state FROM cdr_open`)
	if err != nil {
		return 0, nil, fmt.Errorf("cdr: %s: read calls in progress: %w", s.where, err)
	}
	defer rows.Close()
	opens := map[string]*open{}
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			return 0, nil, fmt.Errorf("cdr: %s: read calls in progress: %w", s.where, err)
		}
		o := &open{}
		if err := json.Unmarshal([]byte(state), o); err != nil {
			return 0, nil, fmt.Errorf("cdr: %s: call %s in progress does not decode: %w", s.where, id, err)
		}
		opens[id] = o
	}
	return uint64(cp), opens, rows.Err()
}

// write commits one batch: new CDRs, the calls in progress that changed
// (nil: ended, delete), and the checkpoint, in one transaction.
func (s *Sink) write(ctx context.Context, name string, cdrs []CDR, opens map[string]*open, deletes []string, checkpoint uint64) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cdr: %s: begin: %w", s.where, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	d := s.dialect
	if err := s.insertCDRs(ctx, tx, cdrs); err != nil {
		return err
	}
	if len(opens) > 0 {
		ids := make([]string, 0, len(opens))
		for id := range opens {
			ids = append(ids, id)
		}
		err := s.batched(ctx, tx, len(ids), stateRows, func(n int) string {
			return "INSERT INTO cdr_open (call_id, state) VALUES " + rows(n, 2) +
				" ON CONFLICT (call_id) DO UPDATE SET state = excluded.state"
		}, func(i int, args []any) []any {
			b, _ := json.Marshal(opens[ids[i]])
			return append(args, ids[i], string(b))
		})
		if err != nil {
			return fmt.Errorf("cdr: %s: store %d calls in progress (%s...): %w", s.where, len(ids), ids[0], err)
		}
	}
	if len(deletes) > 0 {
		err := s.batched(ctx, tx, len(deletes), stateRows, func(n int) string {
			return "DELETE FROM cdr_open WHERE call_id IN " + rows(1, n)
		}, func(i int, args []any) []any { return append(args, deletes[i]) })
		if err != nil {
			return fmt.Errorf("cdr: %s: drop %d calls in progress (%s...): %w", s.where, len(deletes), deletes[0], err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO tandem_projections (name, checkpoint) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET checkpoint = excluded.checkpoint`), name, int64(checkpoint)); err != nil {
		return fmt.Errorf("cdr: %s: write checkpoint: %w", s.where, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cdr: %s: commit: %w", s.where, err)
	}
	return nil
}

// cdrColumns are the columns of an inserted CDR, in order.
const cdrColumns = `call_id, caller, callee, request_uri, source, start_time, answer_time, end_time,
	duration, billable, disposition, sip_status, q850_cause, hangup_side, legs, nodes, end_position`

// insertRows is how many CDRs one INSERT carries: a statement per row cost
// about 19 us a row in SQLite (bench-replay's profile); 64 rows of 17
// values stay far below both databases' parameter limits. stateRows is the
// same for the calls in progress (two values a row), stored and dropped by
// the hundred a batch at a few thousand calls/s: a statement each is a
// round trip each to PostgreSQL. In SQLite it changed nothing measurable
// (the sink's share of a 2,000 calls/s profile went from 5.3% to 6.3%,
// within noise): there the rows' own work dominates.
const (
	insertRows = 64
	stateRows  = 256
)

// rows is n parenthesized groups of k placeholders: (?,?),(?,?).
func rows(n, k int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", k), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// batched runs the statement query(n) for items [0, total) in chunks of at
// most per, with the arguments add appends for item i; full chunks share
// one prepared statement.
func (s *Sink) batched(ctx context.Context, tx *sql.Tx, total, per int, query func(n int) string, add func(i int, args []any) []any) error {
	var full *sql.Stmt
	var args []any
	for done := 0; done < total; {
		n := min(total-done, per)
		args = args[:0]
		for i := done; i < done+n; i++ {
			args = add(i, args)
		}
		var err error
		if n == per {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, s.dialect.q(query(n))); err != nil {
					return fmt.Errorf("prepare: %w", err)
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, s.dialect.q(query(n)), args...)
		}
		if err != nil {
			return err
		}
		done += n
	}
	return nil
}

// insertCDRs inserts cdrs with multi-row INSERTs in tx. A call id that is
// already there fails the whole batch (the primary key): a CDR is never
// doubled.
func (s *Sink) insertCDRs(ctx context.Context, tx *sql.Tx, cdrs []CDR) error {
	d := s.dialect
	err := s.batched(ctx, tx, len(cdrs), insertRows, func(n int) string {
		return "INSERT INTO cdr (" + cdrColumns + ") VALUES " + rows(n, 17)
	}, func(i int, args []any) []any {
		c := cdrs[i]
		var answer any
		if c.Answer != nil {
			answer = d.tv(*c.Answer)
		}
		return append(args, c.CallID, c.Caller, c.Callee, c.RequestURI, c.Source,
			d.tv(c.Start), answer, d.tv(c.End), c.Duration, c.Billable, c.Disposition,
			int64(c.SIPStatus), int64(c.Q850Cause), c.HangupSide, c.Legs, c.Nodes, int64(c.Position))
	})
	if err != nil && len(cdrs) > 0 {
		return fmt.Errorf("cdr: %s: insert %d CDRs (calls %s...): %w", s.where, len(cdrs), cdrs[0].CallID, err)
	}
	return nil
}

// reset deletes every CDR, call in progress and the checkpoint.
func (s *Sink) reset(ctx context.Context, name string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cdr: %s: begin: %w", s.where, err)
	}
	for _, q := range []string{`DELETE FROM cdr`, `DELETE FROM cdr_open`, s.dialect.q(`DELETE FROM tandem_projections WHERE name = ?`)} {
		var args []any
		if strings.Contains(q, "name =") {
			args = append(args, name)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("cdr: %s: reset: %w", s.where, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cdr: %s: reset: %w", s.where, err)
	}
	return nil
}

// Export returns the CDRs of calls that started in [from, to) (a zero
// bound is open), ordered by start time, then call id.
func (s *Sink) Export(ctx context.Context, from, to time.Time) ([]CDR, error) {
	d := s.dialect
	q := `SELECT ` + cdrColumns + ` FROM cdr WHERE 1 = 1`
	var args []any
	if !from.IsZero() {
		q += ` AND start_time >= ?`
		args = append(args, d.tv(from))
	}
	if !to.IsZero() {
		q += ` AND start_time < ?`
		args = append(args, d.tv(to))
	}
	q += ` ORDER BY start_time, call_id`
	rows, err := s.db.QueryContext(ctx, d.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("cdr: %s: export: %w", s.where, err)
	}
	defer rows.Close()
	var out []CDR
	for rows.Next() {
		var c CDR
		var start, answer, end any
		var status, q850, pos int64
		if err := rows.Scan(&c.CallID, &c.Caller, &c.Callee, &c.RequestURI, &c.Source, &start, &answer, &end,
			&c.Duration, &c.Billable, &c.Disposition, &status, &q850, &c.HangupSide, &c.Legs, &c.Nodes, &pos); err != nil {
			return nil, fmt.Errorf("cdr: %s: export: %w", s.where, err)
		}
		c.SIPStatus, c.Q850Cause, c.Position = uint32(status), uint32(q850), uint64(pos)
		if c.Start, err = scanTime(start); err == nil {
			c.End, err = scanTime(end)
		}
		if err == nil && answer != nil {
			var a time.Time
			if a, err = scanTime(answer); err == nil {
				c.Answer = &a
			}
		}
		if err != nil {
			return nil, fmt.Errorf("cdr: %s: export: call %s: %w", s.where, c.CallID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// scanTime reads a time column in either dialect.
func scanTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), nil
	case string:
		return time.Parse(timeText, t)
	case []byte:
		return time.Parse(timeText, string(t))
	}
	return time.Time{}, fmt.Errorf("time column holds %T", v)
}
