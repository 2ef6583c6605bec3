package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The bounds of RunQuery.Limit.
const (
	// DefaultListLimit is the page size of a RunQuery whose Limit is 0.
	DefaultListLimit = 100
	// MaxListLimit is the largest Limit a RunQuery may ask for.
	MaxListLimit = 1000
)

// ErrBadCursor: RunQuery.Cursor is not of the form of the cursors the
// history gives out (a next of ListRuns): cut short, padded, re-encoded, or
// from another kind of history. A cursor carries no secret: one altered
// into another well-formed cursor lists from the place it names.
var ErrBadCursor = errors.New("not a cursor of this run history")

// RunQuery selects runs for ListRuns. Its zero value selects every run,
// the newest DefaultListLimit of them.
type RunQuery struct {
	Script string // only this script's runs; "" every script
	State  State  // only runs in this state; "" every state
	// Since and Until bound the time a run was queued (QueuedAt): from
	// Since on, Since included, and before Until. A zero time is no bound.
	// Times past what the history can store (StorableTime) are taken as
	// the nearest ones it can.
	Since, Until time.Time
	// Limit is the most runs a page holds: DefaultListLimit when 0, at most
	// MaxListLimit.
	Limit int
	// Cursor continues a listing after the page whose next it was; ""
	// starts at the newest run.
	Cursor string
}

// check is the ErrInvalid error of a query no history may take.
func (q RunQuery) check() error {
	switch {
	case q.Limit < 0 || q.Limit > MaxListLimit:
		return fmt.Errorf("limit %d is not between 0 and %d: %w", q.Limit, MaxListLimit, ErrInvalid)
	case q.State != "" && q.State != StateQueued && q.State != StateRunning && q.State != StateDone:
		return fmt.Errorf("state %q: %w", q.State, ErrInvalid)
	}
	return nil
}

// cursor is where a page ended: the order key of its last run.
type cursor struct {
	queuedAt int64 // UNIX nanoseconds
	seq      int64 // the run's rowid, the order of runs queued at the same time
}

// cursorVersion is the first byte of an encoded cursor, so that a later
// form can be told from this one.
const cursorVersion = 1

// cursorEncoding is URL-safe: a cursor goes into a query string as it is.
var cursorEncoding = base64.RawURLEncoding.Strict()

func (c cursor) String() string {
	var b [17]byte
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], uint64(c.queuedAt))
	binary.BigEndian.PutUint64(b[9:], uint64(c.seq))
	return cursorEncoding.EncodeToString(b[:])
}

// parseCursor reads a cursor made by cursor.String, and nothing else.
func parseCursor(s string) (cursor, error) {
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != cursorVersion || cursorEncoding.EncodeToString(b) != s {
		return cursor{}, ErrBadCursor
	}
	c := cursor{queuedAt: int64(binary.BigEndian.Uint64(b[1:])), seq: int64(binary.BigEndian.Uint64(b[9:]))}
	if c.seq <= 0 {
		return cursor{}, ErrBadCursor
	}
	return c, nil
}

// listQuery is the SELECT of ListRuns for q, continued after c when it is
// not nil, reading limit rows. Each combination of filters reads one range
// of one index (migration 4), in the order of the page; the tests hold the
// plans to it.
func listQuery(q RunQuery, c *cursor, limit int) (string, []any) {
	var where []string
	var args []any
	index := "runs_by_time"
	switch {
	case q.Script != "" && q.State != "":
		index = "runs_by_script_state"
	case q.Script != "":
		index = "runs_by_script"
	case q.State != "":
		index = "runs_by_state"
	}
	if q.Script != "" {
		where, args = append(where, "script = ?"), append(args, q.Script)
	}
	if q.State != "" {
		where, args = append(where, "state = ?"), append(args, string(q.State))
	}
	if !q.Since.IsZero() {
		where, args = append(where, "queued_at >= ?"), append(args, toNanos(ClampTime(q.Since)))
	}
	// Of Until and the cursor, the lower bound alone: with both, the
	// planner could seek to one and filter by the other, reading every run
	// between them.
	until, hasUntil := toNanos(ClampTime(q.Until)), !q.Until.IsZero()
	switch {
	case c != nil && (!hasUntil || c.queuedAt < until):
		// The cursor's runs were all queued before until.
		where, args = append(where, "(queued_at, seq) < (?, ?)"), append(args, c.queuedAt, c.seq)
	case hasUntil:
		// Runs queued before until sort after the cursor, if any.
		where, args = append(where, "queued_at < ?"), append(args, until)
	}
	query := `SELECT seq, ` + runColumns + ` FROM runs INDEXED BY ` + index
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY queued_at DESC, seq DESC LIMIT ?`
	return query, append(args, limit)
}

// ListRuns implements History. Runs are in the order of (queued_at, seq),
// latest first, where seq is the order in which the history took them; the
// cursor is the (queued_at, seq) of a page's last run, and the next page
// starts below it. One run more than the page is read, to know whether
// another page follows.
func (s *Store) ListRuns(ctx context.Context, q RunQuery) (_ []Run, next string, err error) {
	defer classifyTo(&err)
	if err := q.check(); err != nil {
		return nil, "", fmt.Errorf("store: list runs: %w", err)
	}
	var after *cursor
	if q.Cursor != "" {
		c, err := parseCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list runs: cursor %.40q: %w", q.Cursor, err)
		}
		after = &c
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	query, args := listQuery(q, after, limit+1)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list runs: %w", err)
	}
	defer rows.Close()
	runs := make([]Run, 0, min(limit, 64))
	var last cursor
	for rows.Next() {
		if len(runs) == limit {
			next = last.String() // one more run follows the page
			break
		}
		var seq int64
		r, err := scanRun(prefixed{rows, &seq})
		if err != nil {
			return nil, "", fmt.Errorf("store: list runs: %w", err)
		}
		runs = append(runs, r)
		last = cursor{queuedAt: toNanos(r.QueuedAt), seq: seq}
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list runs: %w", err)
	}
	for i := range runs {
		s.liveSize(&runs[i])
	}
	return runs, next, nil
}

// prefixed scans a row whose first column goes to first, the rest to the
// scanner's caller (scanRun).
type prefixed struct {
	sc    scanner
	first any
}

func (p prefixed) Scan(dest ...any) error { return p.sc.Scan(append([]any{p.first}, dest...)...) }
