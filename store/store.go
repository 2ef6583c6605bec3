package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"modernc.org/sqlite" // registers the "sqlite" driver (pure Go, no cgo)
	sqlite3 "modernc.org/sqlite/lib"
)

// Error kinds. webapi maps them to HTTP statuses; test them with errors.Is.
var (
	// ErrNotFound: no run (or no output file) with that ID.
	ErrNotFound = errors.New("run not found")
	// ErrWrongState: the run's state does not allow the change, e.g.
	// starting a run that is not queued, ending a run that is done, or
	// deleting one that is still queued or running.
	ErrWrongState = errors.New("run is not in a state that allows this")
	// ErrInvalid: the caller passed a value the store refuses (no script
	// name, an unknown Ended, a result that is not a JSON object...).
	ErrInvalid = errors.New("invalid run data")
	// ErrBadOffset: an output offset below zero or beyond the output's size.
	ErrBadOffset = errors.New("offset beyond the output")
	// ErrSchemaTooNew: the database was written by a newer rexec.
	ErrSchemaTooNew = errors.New("database schema is newer than this program")
	// ErrNoSuchGuest: no guest key with that ID (DeleteGuest). It is not
	// ErrNotFound, which means that there is no run with the ID.
	ErrNoSuchGuest = errors.New("no guest key with this id")
)

// Error kinds of conditions of the server rather than of the request: the
// same request may succeed later, once the condition has passed. Every error
// of the store that comes from them has the kind (test with errors.Is), and
// still holds the original error in its chain.
var (
	// ErrBusy: the database is locked by another connection (SQLITE_BUSY,
	// SQLITE_LOCKED), for longer than Options.BusyTimeout.
	ErrBusy = errors.New("the history database is busy: another process holds its lock")
	// ErrFull: the file system of the history is full, or the quota is
	// used up (SQLITE_FULL, ENOSPC, EDQUOT), for the database or for an
	// output file.
	ErrFull = errors.New("no space left for the history: the disk or quota is full")
)

// kindError is an error of the store with the kind it was classified as.
// errors.Is and errors.As see both.
type kindError struct {
	kind error // ErrBusy or ErrFull
	err  error // the error as it happened
}

func (e *kindError) Error() string   { return e.err.Error() + " (" + e.kind.Error() + ")" }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// classify gives err the kind of the condition it comes from, if it is one
// of ErrBusy and ErrFull; other errors are returned as they are. It is
// applied once, where errors leave the package.
//
// SQLite reports ENOSPC on a write as SQLITE_FULL. EDQUOT, and ENOSPC in the
// few places SQLite reports as a SQLITE_IOERR, cannot be told from another
// I/O error: the driver does not expose the errno of a SQLITE_IOERR.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrBusy) || errors.Is(err, ErrFull) {
		return err
	}
	var kind error
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			kind = ErrBusy
		case sqlite3.SQLITE_FULL:
			kind = ErrFull
		}
	}
	if kind == nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		kind = ErrFull
	}
	if kind == nil {
		return err
	}
	return &kindError{kind: kind, err: err}
}

// classifyTo is classify for a deferred call on a named result.
func classifyTo(err *error) { *err = classify(*err) }

// DefaultMaxOutput is the output cap of a run when Options.MaxOutput is 0.
const DefaultMaxOutput = 16 << 20

// DefaultMinFree is the free space Ready wants when Options.MinFree is 0.
const DefaultMinFree = 1 << 20

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// MaxOutput caps the size of each run's output file in bytes; past it,
	// one truncation marker line is written and the rest is discarded.
	// 0 (or less) means DefaultMaxOutput.
	MaxOutput int64
	// BusyTimeout is how long a write waits for another connection's write
	// lock before failing. Default 5s.
	BusyTimeout time.Duration
	// FullSync sets synchronous=FULL: every commit is fsynced, so even a
	// power loss loses no acknowledged write. The default (NORMAL) already
	// loses nothing acknowledged when only the process dies (see the package
	// documentation).
	FullSync bool
	// Logger receives the store's log lines; the zero Logger discards them.
	Logger zerolog.Logger
	// MinFree is the space, in bytes, that must be available to
	// unprivileged users on the file system of the data directory for Ready
	// to report the store ready. 0 means DefaultMinFree; below 0, Ready
	// does not look at the free space.
	MinFree int64
}

func (o *Options) setDefaults() {
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	if o.MinFree == 0 {
		o.MinFree = DefaultMinFree
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
}

// Store is the single-host History: one SQLite file and a directory of
// output files. Its methods are safe for concurrent use. Create it with Open,
// release it with Close.
type Store struct {
	db        *sql.DB
	dir       string // the data directory
	outDir    string // dir/output
	maxOutput int64
	minFree   int64 // Options.MinFree
	log       zerolog.Logger

	// writer is a semaphore of one held around every write transaction:
	// writers of this process queue here, in order and cancellable, instead
	// of polling SQLite's lock with busy_timeout's growing sleeps (up to
	// 100 ms a try). busy_timeout still covers other processes (e.g. the
	// sqlite3 shell) holding the lock.
	writer chan struct{}
	// outs are the outputs written and followed in this process.
	outs outputs
}

var _ History = (*Store)(nil)

// File and directory modes: the history holds arguments, which may be
// private, so nothing is readable by others, whatever the umask and the mode
// of a data directory that existed before.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// Open opens (creating if needed) the store in dir: the directory, the
// database dir/rexec.db, its schema, and dir/output/. It does not recover
// runs that a crash left running; call Recover for that.
func Open(ctx context.Context, dir string, opts Options) (s *Store, err error) {
	defer classifyTo(&err)
	opts.setDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: data dir %q: %w", dir, err)
	}
	outDir := filepath.Join(abs, "output")
	if err := os.MkdirAll(outDir, dirMode); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}

	syncMode := "NORMAL"
	if opts.FullSync {
		syncMode = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+syncMode+")")
	q.Add("_pragma", "foreign_keys(1)")
	// Transactions take the write lock at BEGIN, so they wait through
	// busy_timeout instead of failing when a read lock cannot be upgraded.
	q.Set("_txlock", "immediate")
	dbPath := filepath.Join(abs, "rexec.db")
	dsn := (&url.URL{Scheme: "file", Path: dbPath, RawQuery: q.Encode()}).String()

	if err := makePrivate(dbPath); err != nil {
		return nil, fmt.Errorf("store: database file: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open database: %w", err)
	}
	s = &Store{db: db, dir: abs, outDir: outDir, maxOutput: opts.MaxOutput, minFree: opts.MinFree,
		log: opts.Logger.With().Str("component", "store").Logger(), writer: make(chan struct{}, 1)}
	if err := s.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// makePrivate creates the database file db with mode 0600 when it does not
// exist, before SQLite does it with 0644 less the umask: SQLite gives the
// -wal and -shm files it makes the mode of the database file. The database,
// -wal and -shm files that exist already (made by an older rexec, or under a
// lax umask) are made 0600. The process umask is never changed: the
// children of rexec would inherit it.
func makePrivate(db string) error {
	f, err := os.OpenFile(db, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	switch {
	case err == nil:
		// SQLite takes an empty file for a new database.
		if err := f.Close(); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrExist):
		return err
	}
	for _, name := range []string{db, db + "-wal", db + "-shm"} {
		fi, err := os.Stat(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		// Also a file just made: a umask such as 0277 removes bits of 0600.
		if fi.Mode().Perm() != fileMode {
			if err := os.Chmod(name, fileMode); err != nil {
				return err
			}
		}
	}
	return nil
}

// check verifies that the pragmas took: a journal mode silently left at
// DELETE (e.g. on a file system without shared memory) would change the
// durability and concurrency this package documents.
func (s *Store) check(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: open database: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("store: database journal mode is %q, want wal", mode)
	}
	return nil
}

// Close closes the database. Open OutputWriters stay usable until closed.
func (s *Store) Close() (err error) {
	defer classifyTo(&err)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// beginWrite waits for this process's turn to write and begins a write
// transaction (BEGIN IMMEDIATE). The returned end rolls back unless the
// transaction was committed, and gives the turn to the next writer.
func (s *Store) beginWrite(ctx context.Context) (tx *sql.Tx, end func(), err error) {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	tx, err = s.db.BeginTx(ctx, nil)
	if err != nil {
		<-s.writer
		return nil, nil, err
	}
	return tx, func() { tx.Rollback(); <-s.writer }, nil
}

// Dir returns the absolute data directory.
func (s *Store) Dir() string { return s.dir }

// migrations are applied in order; migration i brings the schema to
// PRAGMA user_version i+1. Never edit one that has shipped: append.
var migrations = []string{
	// 1: runs.
	`CREATE TABLE runs (
		seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order: FIFO
		id              TEXT    NOT NULL UNIQUE,
		script          TEXT    NOT NULL CHECK (script <> ''),
		args            TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(args) AND json_type(args) = 'array'),
		who             TEXT    NOT NULL DEFAULT '',     -- key id, never the key
		state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done')),
		queued_at       INTEGER NOT NULL,                -- times: UNIX nanoseconds
		start_at        INTEGER,                         -- scheduled start, NULL = now
		started_at      INTEGER,
		ended_at        INTEGER,
		exit_code       INTEGER,
		signal          TEXT    NOT NULL DEFAULT '',
		ended           TEXT    NOT NULL DEFAULT ''
		                CHECK (ended IN ('', 'exit', 'cancelled', 'timeout', 'interrupted', 'start_failed')),
		task            INTEGER NOT NULL DEFAULT 0,
		task_total      INTEGER NOT NULL DEFAULT 0,
		task_title      TEXT    NOT NULL DEFAULT '',
		subtask_percent INTEGER NOT NULL DEFAULT 0,
		subtask_title   TEXT    NOT NULL DEFAULT '',
		result          TEXT    CHECK (result IS NULL OR (json_valid(result) AND json_type(result) = 'object')),
		pid             INTEGER NOT NULL DEFAULT 0,
		pgid            INTEGER NOT NULL DEFAULT 0,
		output_size     INTEGER NOT NULL DEFAULT 0,
		CHECK ((state = 'done') = (ended <> ''))
	) STRICT;
	CREATE INDEX runs_active ON runs (state, script, seq) WHERE state <> 'done';
	CREATE INDEX runs_ended ON runs (ended_at) WHERE state = 'done';`,
	// 2: guest keys, stored as hashes only.
	`CREATE TABLE guests (
		id       TEXT    NOT NULL PRIMARY KEY,
		name     TEXT    NOT NULL DEFAULT '',  -- script scope, '' = all
		run      INTEGER NOT NULL CHECK (run IN (0, 1)),
		cancel   INTEGER NOT NULL CHECK (cancel IN (0, 1)),
		status   INTEGER NOT NULL CHECK (status IN (0, 1)),
		monitor  INTEGER NOT NULL CHECK (monitor IN (0, 1)),
		expires  INTEGER,                      -- UNIX nanoseconds, NULL = never
		created  INTEGER NOT NULL,
		key_hash BLOB    NOT NULL UNIQUE       -- SHA-256 of the key
	) STRICT;`,
	// 3: a run's time limit and why its output was cut; guest keys made by
	// a holder of the admin token. Keys made before have with_token 0: an
	// older rexec let anyone make keys on a server without a token, so
	// they no longer work (they are still listed, to be deleted).
	`ALTER TABLE runs ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0); -- 0 = none
	ALTER TABLE runs ADD COLUMN output_truncated TEXT NOT NULL DEFAULT '';                  -- '' = not cut
	ALTER TABLE guests ADD COLUMN with_token INTEGER NOT NULL DEFAULT 0 CHECK (with_token IN (0, 1));`,
	// 4: the run history newest first (ListRuns), for each filter it
	// takes. Every index ends in queued_at and, implicitly, seq (the
	// rowid), the order of a page, so a page is one range of one index
	// read backwards, however many runs the history holds.
	`CREATE INDEX runs_by_time ON runs (queued_at);
	CREATE INDEX runs_by_script ON runs (script, queued_at);
	CREATE INDEX runs_by_state ON runs (state, queued_at);
	CREATE INDEX runs_by_script_state ON runs (script, state, queued_at);`,
	// 5: when a run's current task started, and the tasks that have ended
	// (Run.TaskStartedAt, Run.Tasks; tasks.go). Runs recorded before have
	// neither.
	`ALTER TABLE runs ADD COLUMN task_started_ns INTEGER NOT NULL DEFAULT 0; -- UNIX nanoseconds, 0 = none
	ALTER TABLE runs ADD COLUMN tasks TEXT NOT NULL DEFAULT '[]'            -- [{"t": title, "s": start, "e": end}], ns
	    CHECK (json_valid(tasks) AND json_type(tasks) = 'array');`,
	// 6: the perms of a guest key, for plugin commands (Guest.Perms); keys
	// made before have none.
	`ALTER TABLE guests ADD COLUMN perms TEXT NOT NULL DEFAULT '[]' -- JSON array of strings
	    CHECK (json_valid(perms) AND json_type(perms) = 'array');`,
	// 7: a run ended by the OOM killer (ended 'oom'), and what a run used
	// by its cgroup (Run.Usage). SQLite cannot change a CHECK in place:
	// the table is made again, rows, sequence and indexes kept.
	`CREATE TABLE runs_new (
		seq             INTEGER PRIMARY KEY AUTOINCREMENT,
		id              TEXT    NOT NULL UNIQUE,
		script          TEXT    NOT NULL CHECK (script <> ''),
		args            TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(args) AND json_type(args) = 'array'),
		who             TEXT    NOT NULL DEFAULT '',
		state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done')),
		queued_at       INTEGER NOT NULL,
		start_at        INTEGER,
		started_at      INTEGER,
		ended_at        INTEGER,
		exit_code       INTEGER,
		signal          TEXT    NOT NULL DEFAULT '',
		ended           TEXT    NOT NULL DEFAULT ''
		                CHECK (ended IN ('', 'exit', 'cancelled', 'timeout', 'interrupted', 'start_failed', 'oom')),
		task            INTEGER NOT NULL DEFAULT 0,
		task_total      INTEGER NOT NULL DEFAULT 0,
		task_title      TEXT    NOT NULL DEFAULT '',
		subtask_percent INTEGER NOT NULL DEFAULT 0,
		subtask_title   TEXT    NOT NULL DEFAULT '',
		result          TEXT    CHECK (result IS NULL OR (json_valid(result) AND json_type(result) = 'object')),
		pid             INTEGER NOT NULL DEFAULT 0,
		pgid            INTEGER NOT NULL DEFAULT 0,
		output_size     INTEGER NOT NULL DEFAULT 0,
		timeout_ms      INTEGER NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0),
		output_truncated TEXT   NOT NULL DEFAULT '',
		task_started_ns INTEGER NOT NULL DEFAULT 0,
		tasks           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tasks) AND json_type(tasks) = 'array'),
		usage           TEXT    NOT NULL DEFAULT ''   -- cgroup.Report as JSON, '' = none
		                CHECK (usage = '' OR (json_valid(usage) AND json_type(usage) = 'object')),
		CHECK ((state = 'done') = (ended <> ''))
	) STRICT;
	INSERT INTO runs_new (seq, id, script, args, who, state, queued_at, start_at, started_at, ended_at, exit_code, signal,
		ended, task, task_total, task_title, subtask_percent, subtask_title, result, pid, pgid, output_size, timeout_ms,
		output_truncated, task_started_ns, tasks)
	SELECT seq, id, script, args, who, state, queued_at, start_at, started_at, ended_at, exit_code, signal,
		ended, task, task_total, task_title, subtask_percent, subtask_title, result, pid, pgid, output_size, timeout_ms,
		output_truncated, task_started_ns, tasks FROM runs;
	DROP TABLE runs;
	ALTER TABLE runs_new RENAME TO runs;
	CREATE INDEX runs_active ON runs (state, script, seq) WHERE state <> 'done';
	CREATE INDEX runs_ended ON runs (ended_at) WHERE state = 'done';
	CREATE INDEX runs_by_time ON runs (queued_at);
	CREATE INDEX runs_by_script ON runs (script, queued_at);
	CREATE INDEX runs_by_state ON runs (state, queued_at);
	CREATE INDEX runs_by_script_state ON runs (script, state, queued_at);`,
	// 8: the host that started a run (Run.Host), a run whose host stopped
	// (ended 'lost'), and the replica row: the log a replicated history's
	// copy (package fleet/jshistory) is made from, and the last entry of it
	// applied (replica.go). The table is made again for the CHECK, as in 7;
	// its AUTOINCREMENT sequence is carried over, so that a run's seq is
	// never one a deleted run had.
	`CREATE TABLE runs_new (
		seq             INTEGER PRIMARY KEY AUTOINCREMENT,
		id              TEXT    NOT NULL UNIQUE,
		script          TEXT    NOT NULL CHECK (script <> ''),
		args            TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(args) AND json_type(args) = 'array'),
		who             TEXT    NOT NULL DEFAULT '',
		state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done')),
		queued_at       INTEGER NOT NULL,
		start_at        INTEGER,
		started_at      INTEGER,
		ended_at        INTEGER,
		exit_code       INTEGER,
		signal          TEXT    NOT NULL DEFAULT '',
		ended           TEXT    NOT NULL DEFAULT ''
		                CHECK (ended IN ('', 'exit', 'cancelled', 'timeout', 'interrupted', 'start_failed', 'oom', 'lost')),
		task            INTEGER NOT NULL DEFAULT 0,
		task_total      INTEGER NOT NULL DEFAULT 0,
		task_title      TEXT    NOT NULL DEFAULT '',
		subtask_percent INTEGER NOT NULL DEFAULT 0,
		subtask_title   TEXT    NOT NULL DEFAULT '',
		result          TEXT    CHECK (result IS NULL OR (json_valid(result) AND json_type(result) = 'object')),
		pid             INTEGER NOT NULL DEFAULT 0,
		pgid            INTEGER NOT NULL DEFAULT 0,
		output_size     INTEGER NOT NULL DEFAULT 0,
		timeout_ms      INTEGER NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0),
		output_truncated TEXT   NOT NULL DEFAULT '',
		task_started_ns INTEGER NOT NULL DEFAULT 0,
		tasks           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tasks) AND json_type(tasks) = 'array'),
		usage           TEXT    NOT NULL DEFAULT ''
		                CHECK (usage = '' OR (json_valid(usage) AND json_type(usage) = 'object')),
		host            TEXT    NOT NULL DEFAULT '',  -- the host that started it, '' on a single host
		CHECK ((state = 'done') = (ended <> ''))
	) STRICT;
	INSERT INTO runs_new (seq, id, script, args, who, state, queued_at, start_at, started_at, ended_at, exit_code, signal,
		ended, task, task_total, task_title, subtask_percent, subtask_title, result, pid, pgid, output_size, timeout_ms,
		output_truncated, task_started_ns, tasks, usage)
	SELECT seq, id, script, args, who, state, queued_at, start_at, started_at, ended_at, exit_code, signal,
		ended, task, task_total, task_title, subtask_percent, subtask_title, result, pid, pgid, output_size, timeout_ms,
		output_truncated, task_started_ns, tasks, usage FROM runs;
	DELETE FROM sqlite_sequence WHERE name = 'runs_new';
	INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_new', seq FROM sqlite_sequence WHERE name = 'runs';
	DROP TABLE runs;
	ALTER TABLE runs_new RENAME TO runs;
	CREATE INDEX runs_active ON runs (state, script, seq) WHERE state <> 'done';
	CREATE INDEX runs_ended ON runs (ended_at) WHERE state = 'done';
	CREATE INDEX runs_by_time ON runs (queued_at);
	CREATE INDEX runs_by_script ON runs (script, queued_at);
	CREATE INDEX runs_by_state ON runs (state, queued_at);
	CREATE INDEX runs_by_script_state ON runs (script, state, queued_at);
	CREATE TABLE replica (
		one     INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
		log     TEXT    NOT NULL DEFAULT '',            -- the log this is a copy of, '' = none (a single host)
		applied INTEGER NOT NULL DEFAULT 0 CHECK (applied >= 0) -- its last entry applied
	) STRICT;
	INSERT INTO replica (one) VALUES (1);`,
}

// migrate brings the schema to len(migrations), one transaction per step,
// the version bump inside the step's transaction.
func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migrate: %w", err)
	}
	defer end()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("store: migrate: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("store: schema version %d, this program knows %d: %w", v, len(migrations), ErrSchemaTooNew)
	case v == len(migrations):
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("store: migrate to schema %d: %w", v+1, err)
	}
	// PRAGMA takes no bound parameters; v+1 is our own integer.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(v+1)); err != nil {
		return false, fmt.Errorf("store: migrate to schema %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: migrate to schema %d: %w", v+1, err)
	}
	s.log.Info().Int("schema", v+1).Msg("database schema migrated")
	return false, nil
}
