package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/rexec/rexec/cgroup"
)

// History is what the rest of rexec needs from a run history: package
// detached records runs through it (and webapi reads them through detached).
// *Store is the single-host implementation; one shared by several hosts can
// replace it, and must pass storetest.TestHistory.
type History interface {
	// Create records a new queued run: it fills in r.ID, r.QueuedAt and
	// r.State. Only Script, Args, Who, StartAt and Timeout are taken from
	// r. A StartAt the history cannot store (see StorableTime) or a
	// negative Timeout is ErrInvalid.
	Create(ctx context.Context, r *Run) error
	// Get returns the run with that ID, or ErrNotFound.
	Get(ctx context.Context, id string) (Run, error)
	// MarkStarted moves a queued run to running (ErrWrongState otherwise).
	MarkStarted(ctx context.Context, id string, pid int, startedAt time.Time) error
	// MarkDone moves a queued or running run to done (ErrWrongState when it
	// is done already), recording the Outcome. It closes the run's current
	// task: when Progress.Task > 0 and TaskStartedAt is not zero, that task
	// (Progress.TaskTitle, from TaskStartedAt) is appended to Tasks, ending
	// at the Outcome's EndedAt. TaskStartedAt and Progress stay as they were.
	MarkDone(ctx context.Context, id string, o Outcome) error
	// SetProgress replaces the run's progress; TaskStartedAt and Tasks
	// stay as they are.
	SetProgress(ctx context.Context, id string, p Progress) error
	// SetTaskProgress replaces, in one write, the run's progress (as
	// SetProgress does), TaskStartedAt and Tasks: the caller keeps the task
	// times of a run while it runs, and calls it when a task starts
	// (SetProgress when the task stays). Of tasks only the last
	// MaxTaskSpans are kept. A run that is done is ErrWrongState: MarkDone
	// closed its tasks. A time the history cannot store (see StorableTime)
	// is ErrInvalid. Titles are UTF-8: bytes that are not may come back as
	// U+FFFD.
	SetTaskProgress(ctx context.Context, id string, p Progress, taskStartedAt time.Time, tasks []TaskSpan) error
	// SetResult replaces the run's result: a JSON object, or nil for none.
	SetResult(ctx context.Context, id string, result json.RawMessage) error
	// ListActive returns the queued and running runs, oldest first.
	ListActive(ctx context.Context) ([]Run, error)
	// ListQueued returns the queued runs of a script (of every script when
	// script is empty), first in first out.
	ListQueued(ctx context.Context, script string) ([]Run, error)
	// ListRuns returns a page of the runs q selects, newest first: by
	// QueuedAt, the latest first, and runs queued at the same time in the
	// reverse of the order the history took them. next is the cursor that
	// continues after the page (q.Cursor), "" when no selected run
	// follows it; a page may hold fewer than q.Limit runs only when next is
	// "". Continuing with next lists exactly the runs that sort after the
	// page's last one, so a listing page by page skips and repeats no run,
	// however many are created between pages: a new run sorts first (unless
	// the clock went back) and is not listed. A run keeps its place when
	// its state changes; under a State filter it is listed if it is in that
	// state when its page is read. A Limit below 0 or above MaxListLimit,
	// or an unknown State, is ErrInvalid; a Cursor not of the form this
	// history gives out is ErrBadCursor.
	ListRuns(ctx context.Context, q RunQuery) (runs []Run, next string, err error)
	// Delete removes a done run and its output (ErrWrongState while the run
	// is queued or running).
	Delete(ctx context.Context, id string) error
	// DeleteEndedBefore removes the runs that ended before t, and their
	// output, and says how many.
	DeleteEndedBefore(ctx context.Context, t time.Time) (int, error)
	// Recover, called once at start-up before anything else is started,
	// ends every run left running by a crash as interrupted and returns
	// them, so the caller can kill their process groups if they survived.
	// Their current task is closed as MarkDone closes it. Queued runs stay
	// queued. A history shared by several hosts ends only the runs this
	// host started (Run.Host): the others' are still running.
	Recover(ctx context.Context) ([]Run, error)
}

// State is where a run is in its life.
type State string

const (
	StateQueued  State = "queued"  // waiting for its time or for a free slot
	StateRunning State = "running" // its process was started
	StateDone    State = "done"    // it ended; Ended says how
)

// Ended says how a run ended.
type Ended string

const (
	EndedExit        Ended = "exit"         // the process ended by itself (ExitCode or Signal)
	EndedCancelled   Ended = "cancelled"    // cancelled while queued or running
	EndedTimeout     Ended = "timeout"      // killed at its time limit
	EndedInterrupted Ended = "interrupted"  // rexec died while it ran (see Recover)
	EndedStartFailed Ended = "start_failed" // its process could not be started
	EndedOOM         Ended = "oom"          // the OOM killer killed it, at its memory limit
	EndedLost        Ended = "lost"         // the host running it stopped; it was not re-run
)

// Valid says whether e is one of the Ended values, which MarkDone takes.
func (e Ended) Valid() bool {
	switch e {
	case EndedExit, EndedCancelled, EndedTimeout, EndedInterrupted, EndedStartFailed, EndedOOM, EndedLost:
		return true
	}
	return false
}

// Progress is what the run's output last said about its progress
// ("[1/3] Title" sets the task, "[50%] Title" the subtask).
// It is also the progress of events (package feed) and of the callback API,
// with these JSON names.
type Progress struct {
	Task           int    `json:"task"`            // current task number, 0 before the first
	TaskTotal      int    `json:"task_total"`      // number of tasks, 0 when not told
	TaskTitle      string `json:"task_title"`      // title of the current task
	SubtaskPercent int    `json:"subtask_percent"` // percent done of the current subtask
	SubtaskTitle   string `json:"subtask_title"`   // title of the current subtask
}

// Outcome is how a run ended, for MarkDone.
type Outcome struct {
	ExitCode *int      // the exit status, nil when there is none (signal, never started)
	Signal   string    // the signal that killed it, e.g. "SIGKILL"; empty when none
	Ended    Ended     // required
	EndedAt  time.Time // zero: now
	// OutputTruncated says why the output was cut, "" when it was not: the
	// OutputWriter's TruncatedReason.
	OutputTruncated string
	// Usage is what its cgroup says it used; nil without one.
	Usage *cgroup.Report
}

// Run is one recorded run of a script.
type Run struct {
	ID       string   // random, URL-safe, unguessable; assigned by Create
	Script   string   // the script's name in the catalogue
	Args     []string // the arguments it was asked with
	Who      string   // ID of the key that asked (never the key); may be empty
	State    State
	QueuedAt time.Time // when it was recorded
	// StartAt is when it is scheduled to start; zero means as soon as a
	// slot is free.
	StartAt time.Time
	// Timeout is the run's time limit, 0 for none. It is stored in whole
	// milliseconds, rounded up.
	Timeout   time.Duration
	StartedAt time.Time // zero until it started
	EndedAt   time.Time // zero until it is done
	ExitCode  *int      // nil unless it exited with a status
	Signal    string    // the signal that ended it, empty when none
	Ended     Ended     // how it ended; empty until it is done
	Progress  Progress
	// TaskStartedAt is when the current task (Progress.Task) started; zero
	// before the first task. It stays once the run is done.
	TaskStartedAt time.Time
	// Tasks are the tasks of the run that have ended, oldest first: a task
	// ends when a task with a higher number starts, or when the run ends.
	// At most MaxTaskSpans, the latest; nil when none.
	Tasks  []TaskSpan
	Result json.RawMessage // a JSON object, or nil
	// Pid and Pgid are the process and process group it ran as (0 before
	// it started). A child leads its own group, so they are equal.
	Pid, Pgid int
	// OutputSize is the size of its output file in bytes, truncation
	// marker included; for a run that is not done it is read from the
	// file at the time of the call.
	OutputSize int64
	// OutputTruncated says why its output was cut, "" when it was not (or
	// not yet known: it is recorded by MarkDone).
	OutputTruncated string
	// Usage is what its cgroup says it used, recorded by MarkDone; nil
	// without a cgroup, or before its end.
	Usage *cgroup.Report
	// Host is the host of a fleet that started it (recorded with its
	// start, Entry.MarkStartedOn); "" on a single host, and before it
	// started.
	Host string `json:"host,omitempty"`
}

// idEncoding is lowercase base32 without padding: URL- and file-name-safe.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// idLen is the length of an ID: 16 random bytes (128 bits) in base32.
const idLen = 26

// NewID returns a new random run ID of the form Create gives, for a history
// that makes its runs' IDs itself (see Entry.CreateAs).
func NewID() string { return newID() }

func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return idEncoding.EncodeToString(b[:])
}

// ValidID says whether id has the form of a run's ID, so that it can be
// used in a file name (no "/", no ".."). A history has no run whose ID
// does not have it: ErrNotFound.
func ValidID(id string) bool { return validID(id) }

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

func notFound(id string) error { return fmt.Errorf("run %q: %w", id, ErrNotFound) }

// CheckNewRun is the ErrInvalid error Create refuses r with, nil when Create
// takes it: a run needs a script, a StartAt the history can store (see
// StorableTime) and no negative Timeout.
func CheckNewRun(r *Run) error {
	if r.Script == "" {
		return fmt.Errorf("no script name: %w", ErrInvalid)
	}
	if err := checkTime("start time", r.StartAt); err != nil {
		return err
	}
	if r.Timeout < 0 {
		return fmt.Errorf("negative timeout %v: %w", r.Timeout, ErrInvalid)
	}
	return nil
}

// Create implements History. The run's (empty) output file is created with
// the record, so ReadOutput of a queued run reads nothing rather than failing.
func (s *Store) Create(ctx context.Context, r *Run) (err error) {
	defer classifyTo(&err)
	if err := CheckNewRun(r); err != nil {
		return fmt.Errorf("store: create: %w", err)
	}
	id := newID()
	// The file first: a crash between the two leaves an empty file behind
	// rather than a run whose output cannot be opened.
	f, err := os.OpenFile(s.outputPath(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return fmt.Errorf("store: create output file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("store: create output file: %w", err)
	}
	n := Run{ID: id, Script: r.Script, Args: r.Args, Who: r.Who, StartAt: r.StartAt, Timeout: r.Timeout}
	err = s.write(ctx, 0, func(tx *sql.Tx) error {
		// QueuedAt is taken once this writer's turn has come, so the order
		// of QueuedAt is the order of seq.
		n.QueuedAt = time.Now()
		return insertRun(ctx, tx, &n, 0)
	})
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("store: create: %w", err)
	}
	r.ID, r.QueuedAt, r.State = id, n.QueuedAt, StateQueued
	return nil
}

// insertRun records the new queued run r: its ID, Script, Args, Who,
// QueuedAt, StartAt and Timeout. seq is its place in the order of runs, 0
// for the next one.
func insertRun(ctx context.Context, tx *sql.Tx, r *Run, seq int64) error {
	args := r.Args
	if args == nil {
		args = []string{}
	}
	argsJSON, err := json.Marshal(args)
	if err != nil {
		return err
	}
	var order sql.NullInt64
	if seq > 0 {
		order = sql.NullInt64{Int64: seq, Valid: true}
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO runs (seq, id, script, args, who, state, queued_at, start_at, timeout_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		order, r.ID, r.Script, string(argsJSON), r.Who, string(StateQueued), toNanos(r.QueuedAt), toNullNanos(r.StartAt),
		toMillis(r.Timeout))
	return err
}

// runColumns are the columns scanRun reads, in its order.
const runColumns = `id, script, args, who, state, queued_at, start_at, started_at, ended_at,
	exit_code, signal, ended, task, task_total, task_title, subtask_percent, subtask_title,
	result, pid, pgid, output_size, timeout_ms, output_truncated, task_started_ns, tasks, usage, host`

type scanner interface{ Scan(dest ...any) error }

func scanRun(sc scanner) (Run, error) {
	var (
		r                                   Run
		args, tasks, usage                  string
		startAt, startedAt, endedAt, exitCd sql.NullInt64
		result                              sql.NullString
		queuedAt, timeoutMs, taskStarted    int64
	)
	err := sc.Scan(&r.ID, &r.Script, &args, &r.Who, &r.State, &queuedAt, &startAt, &startedAt, &endedAt,
		&exitCd, &r.Signal, &r.Ended, &r.Progress.Task, &r.Progress.TaskTotal, &r.Progress.TaskTitle,
		&r.Progress.SubtaskPercent, &r.Progress.SubtaskTitle, &result, &r.Pid, &r.Pgid, &r.OutputSize,
		&timeoutMs, &r.OutputTruncated, &taskStarted, &tasks, &usage, &r.Host)
	if err != nil {
		return Run{}, err
	}
	if err := json.Unmarshal([]byte(args), &r.Args); err != nil {
		return Run{}, fmt.Errorf("run %q: args column: %w", r.ID, err)
	}
	if r.Tasks, err = decodeTasks(tasks); err != nil {
		return Run{}, fmt.Errorf("run %q: tasks column: %w", r.ID, err)
	}
	if usage != "" {
		r.Usage = new(cgroup.Report)
		if err := json.Unmarshal([]byte(usage), r.Usage); err != nil {
			return Run{}, fmt.Errorf("run %q: usage column: %w", r.ID, err)
		}
	}
	r.TaskStartedAt = fromTaskNanos(taskStarted)
	r.QueuedAt = time.Unix(0, queuedAt)
	r.Timeout = fromMillis(timeoutMs)
	r.StartAt, r.StartedAt, r.EndedAt = fromNullNanos(startAt), fromNullNanos(startedAt), fromNullNanos(endedAt)
	if exitCd.Valid {
		c := int(exitCd.Int64)
		r.ExitCode = &c
	}
	if result.Valid {
		r.Result = json.RawMessage(result.String)
	}
	return r, nil
}

// liveSize fills in the output size of a run that may still be writing.
func (s *Store) liveSize(r *Run) {
	if r.State == StateDone {
		return
	}
	if fi, err := os.Stat(s.outputPath(r.ID)); err == nil {
		r.OutputSize = fi.Size()
	}
}

// Get implements History.
func (s *Store) Get(ctx context.Context, id string) (_ Run, err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return Run{}, notFound(id)
	}
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, notFound(id)
	}
	if err != nil {
		return Run{}, fmt.Errorf("store: get %q: %w", id, err)
	}
	s.liveSize(&r)
	return r, nil
}

func (s *Store) list(ctx context.Context, query string, args ...any) (_ []Run, err error) {
	defer classifyTo(&err)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	defer rows.Close()
	var runs []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	for i := range runs {
		s.liveSize(&runs[i])
	}
	return runs, nil
}

// ListActive implements History.
func (s *Store) ListActive(ctx context.Context) ([]Run, error) {
	return s.list(ctx, `SELECT `+runColumns+` FROM runs WHERE state <> 'done' ORDER BY seq`)
}

// ListQueued implements History.
func (s *Store) ListQueued(ctx context.Context, script string) ([]Run, error) {
	if script == "" {
		return s.list(ctx, `SELECT `+runColumns+` FROM runs WHERE state = 'queued' ORDER BY seq`)
	}
	return s.list(ctx, `SELECT `+runColumns+` FROM runs WHERE state = 'queued' AND script = ? ORDER BY seq`, script)
}

// update runs one UPDATE of the run id whose WHERE clause also requires one
// of the states in want (any state when want is empty), and tells a missing
// run (ErrNotFound) from one in another state (ErrWrongState). seq is the
// log entry it applies, 0 for none (see write).
func (s *Store) update(ctx context.Context, seq uint64, op, id string, want []State, set string, args ...any) error {
	return s.modify(ctx, seq, op, id, want, func(*sql.Tx) (string, []any, error) { return set, args, nil })
}

// modify is update with the SET clause and its arguments made by change,
// inside the transaction, once the run is known to be in a wanted state.
func (s *Store) modify(ctx context.Context, seq uint64, op, id string, want []State,
	change func(tx *sql.Tx) (set string, args []any, err error)) (err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return fmt.Errorf("store: %s: %w", op, s.refuse(ctx, seq, notFound(id)))
	}
	err = s.write(ctx, seq, func(tx *sql.Tx) error {
		var state State
		err := tx.QueryRowContext(ctx, `SELECT state FROM runs WHERE id = ?`, id).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(id)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
		if len(want) > 0 && !hasState(want, state) {
			return fmt.Errorf("run %q is %s: %w", id, state, ErrWrongState)
		}
		set, args, err := change(tx)
		if err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET `+set+` WHERE id = ?`, append(args, id)...); err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

func hasState(states []State, s State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// MarkStarted implements History. The process group is taken to be pid:
// children lead their own group.
func (s *Store) MarkStarted(ctx context.Context, id string, pid int, startedAt time.Time) error {
	if startedAt.IsZero() {
		startedAt = time.Now()
	}
	return s.markStarted(ctx, 0, id, "", pid, startedAt)
}

func (s *Store) markStarted(ctx context.Context, seq uint64, id, host string, pid int, startedAt time.Time) (err error) {
	defer classifyTo(&err)
	if err := checkTime("start time", startedAt); err != nil {
		return fmt.Errorf("store: mark started %q: %w", id, s.refuse(ctx, seq, err))
	}
	return s.update(ctx, seq, "mark started", id, []State{StateQueued},
		`state = 'running', started_at = ?, pid = ?, pgid = ?, host = ?`, toNanos(startedAt), pid, pid, host)
}

// CheckOutcome is the ErrInvalid error MarkDone refuses o with, nil when it
// takes it: Ended must be one of the Ended values, and EndedAt a time the
// history can store (see StorableTime).
func CheckOutcome(o Outcome) error {
	if !o.Ended.Valid() {
		return fmt.Errorf("ended %q: %w", o.Ended, ErrInvalid)
	}
	return checkTime("end time", o.EndedAt)
}

// MarkDone implements History. It records the size of the output file, so
// close the run's OutputWriter first.
func (s *Store) MarkDone(ctx context.Context, id string, o Outcome) error {
	if o.EndedAt.IsZero() {
		o.EndedAt = time.Now()
	}
	var size int64
	if validID(id) {
		if fi, err := os.Stat(s.outputPath(id)); err == nil {
			size = fi.Size()
		}
	}
	return s.markDone(ctx, 0, id, o, size)
}

func (s *Store) markDone(ctx context.Context, seq uint64, id string, o Outcome, size int64) (err error) {
	defer classifyTo(&err)
	if err := CheckOutcome(o); err != nil {
		return fmt.Errorf("store: mark done %q: %w", id, s.refuse(ctx, seq, err))
	}
	var exit sql.NullInt64
	if o.ExitCode != nil {
		exit = sql.NullInt64{Int64: int64(*o.ExitCode), Valid: true}
	}
	usage := ""
	if o.Usage != nil {
		b, err := json.Marshal(o.Usage)
		if err != nil {
			return fmt.Errorf("store: mark done %q: %w", id, err)
		}
		usage = string(b)
	}
	err = s.modify(ctx, seq, "mark done", id, []State{StateQueued, StateRunning}, func(tx *sql.Tx) (string, []any, error) {
		set := `state = 'done', ended = ?, ended_at = ?, exit_code = ?, signal = ?, output_size = ?, output_truncated = ?, usage = ?`
		args := []any{string(o.Ended), toNanos(o.EndedAt), exit, o.Signal, size, o.OutputTruncated, usage}
		var p Progress
		var startedNs int64
		var col string
		err := tx.QueryRowContext(ctx, `SELECT task, task_title, task_started_ns, tasks FROM runs WHERE id = ?`, id).
			Scan(&p.Task, &p.TaskTitle, &startedNs, &col)
		if err != nil {
			return "", nil, err
		}
		tasks, err := decodeTasks(col)
		if err != nil {
			return "", nil, fmt.Errorf("tasks column: %w", err)
		}
		if tasks, closed := closeTask(tasks, p, fromTaskNanos(startedNs), o.EndedAt); closed {
			col, err := encodeTasks(tasks)
			if err != nil {
				return "", nil, err
			}
			set, args = set+`, tasks = ?`, append(args, col)
		}
		return set, args, nil
	})
	if err == nil {
		s.outputChanged(id) // its followers may end
	}
	return err
}

// SetProgress implements History.
func (s *Store) SetProgress(ctx context.Context, id string, p Progress) error {
	return s.setProgress(ctx, 0, id, p)
}

func (s *Store) setProgress(ctx context.Context, seq uint64, id string, p Progress) error {
	return s.update(ctx, seq, "set progress", id, nil,
		`task = ?, task_total = ?, task_title = ?, subtask_percent = ?, subtask_title = ?`,
		p.Task, p.TaskTotal, p.TaskTitle, p.SubtaskPercent, p.SubtaskTitle)
}

// CheckResult is the result as SetResult records it (white space around it
// trimmed), or ErrInvalid when it is not a JSON object. nil is none.
func CheckResult(result json.RawMessage) (json.RawMessage, error) {
	if result == nil {
		return nil, nil
	}
	t := bytes.TrimSpace(result)
	if !json.Valid(t) || len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("not a JSON object: %w", ErrInvalid)
	}
	return t, nil
}

// SetResult implements History.
func (s *Store) SetResult(ctx context.Context, id string, result json.RawMessage) error {
	return s.setResult(ctx, 0, id, result)
}

func (s *Store) setResult(ctx context.Context, seq uint64, id string, result json.RawMessage) (err error) {
	defer classifyTo(&err)
	t, err := CheckResult(result)
	if err != nil {
		return fmt.Errorf("store: set result %q: %w", id, s.refuse(ctx, seq, err))
	}
	var v sql.NullString
	if t != nil {
		v = sql.NullString{String: string(t), Valid: true}
	}
	return s.update(ctx, seq, "set result", id, nil, `result = ?`, v)
}

// Delete implements History. The output file goes first, inside the
// transaction: a crash between the two leaves a done run without output,
// which the next retention pass removes, never an output file nobody knows.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.delete(ctx, 0, id, true)
}

// delete removes the done run id, and its output file when files says so.
func (s *Store) delete(ctx context.Context, seq uint64, id string, files bool) (err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return fmt.Errorf("store: delete: %w", s.refuse(ctx, seq, notFound(id)))
	}
	err = s.write(ctx, seq, func(tx *sql.Tx) error {
		var state State
		err := tx.QueryRowContext(ctx, `SELECT state FROM runs WHERE id = ?`, id).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(id)
		}
		if err != nil {
			return err
		}
		if state != StateDone {
			return fmt.Errorf("run %q is %s: %w", id, state, ErrWrongState)
		}
		if files {
			if err := s.removeOutput(id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	s.outputChanged(id) // its followers end
	return nil
}

// retentionBatch is how many runs one retention transaction deletes, so the
// write lock is never held for long.
const retentionBatch = 256

// ClampTime is t, or the time the history can store (see StorableTime)
// nearest to it.
func ClampTime(t time.Time) time.Time {
	switch {
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
	}
	return t
}

// DeleteEndedBefore implements History. Runs that are not done are never
// deleted, however old. A t past the times the history can store (see
// StorableTime) is taken as the nearest one it can.
func (s *Store) DeleteEndedBefore(ctx context.Context, t time.Time) (_ int, err error) {
	defer classifyTo(&err)
	t = ClampTime(t)
	total := 0
	for {
		var ids []string
		err := s.write(ctx, 0, func(tx *sql.Tx) (err error) {
			ids, err = s.deleteBatch(ctx, tx, toNanos(t), true)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("store: retention: %w", err)
		}
		total += len(ids)
		if len(ids) < retentionBatch {
			if total > 0 {
				s.log.Info().Int("runs", total).Time("before", t).Msg("old runs deleted")
			}
			return total, nil
		}
	}
}

// deleteBatch deletes up to retentionBatch of the runs that ended before
// before, and their output files when files says so, and returns their IDs.
func (s *Store) deleteBatch(ctx context.Context, tx *sql.Tx, before int64, files bool) ([]string, error) {
	rows, err := tx.QueryContext(ctx,
		`SELECT id FROM runs WHERE state = 'done' AND ended_at < ? ORDER BY ended_at LIMIT ?`, before, retentionBatch)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if files {
			if err := s.removeOutput(id); err != nil {
				return nil, err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// Recover implements History. The returned runs are as recorded after the
// change: State done, Ended interrupted, Pid and Pgid as they were.
func (s *Store) Recover(ctx context.Context) (_ []Run, err error) {
	defer classifyTo(&err)
	runs, err := s.recover(ctx, 0, nil, time.Now(), func(r *Run) { s.liveSize(r) })
	if err != nil {
		return nil, fmt.Errorf("store: recover: %w", err)
	}
	return runs, nil
}

// recover ends as interrupted at endedAt the running runs (those started
// on host when host is not nil), their output sizes given by size, and
// returns them as recorded.
func (s *Store) recover(ctx context.Context, seq uint64, host *string, endedAt time.Time, size func(r *Run)) ([]Run, error) {
	var runs []Run
	err := s.write(ctx, seq, func(tx *sql.Tx) error {
		runs = nil
		query, args := `SELECT `+runColumns+` FROM runs WHERE state = 'running' ORDER BY seq`, []any(nil)
		if host != nil {
			query, args = `SELECT `+runColumns+` FROM runs WHERE state = 'running' AND host = ? ORDER BY seq`, []any{*host}
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			r, err := scanRun(rows)
			if err != nil {
				rows.Close()
				return err
			}
			runs = append(runs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range runs {
			r := &runs[i]
			size(r)
			r.State, r.Ended, r.EndedAt = StateDone, EndedInterrupted, endedAt
			r.Tasks, _ = closeTask(r.Tasks, r.Progress, r.TaskStartedAt, endedAt)
			tasks, err := encodeTasks(r.Tasks)
			if err != nil {
				return fmt.Errorf("run %q: %w", r.ID, err)
			}
			_, err = tx.ExecContext(ctx,
				`UPDATE runs SET state = 'done', ended = 'interrupted', ended_at = ?, output_size = ?, tasks = ? WHERE id = ?`,
				toNanos(endedAt), r.OutputSize, tasks, r.ID)
			if err != nil {
				return fmt.Errorf("run %q: %w", r.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		s.log.Warn().Str("run", r.ID).Str("script", r.Script).Int("pid", r.Pid).Str("host", r.Host).
			Msg("run was running when rexec stopped: marked interrupted")
	}
	return runs, nil
}

// Times are stored as UNIX nanoseconds; the zero time is NULL.

// minTime and maxTime are the first and last times UNIX nanoseconds in an
// int64 can hold.
var (
	minTime = time.Unix(0, math.MinInt64).UTC() // 1677-09-21T00:12:43.145224192Z
	maxTime = time.Unix(0, math.MaxInt64).UTC() // 2262-04-11T23:47:16.854775807Z
)

// StorableTime says whether the history can store t: whether t is between
// 1677-09-21T00:12:43.145224192Z and 2262-04-11T23:47:16.854775807Z, the
// times a count of nanoseconds since 1970 in an int64 can tell. The zero
// time, which the store keeps as "none" (e.g. a Run's StartAt or a Guest's
// Expires), is storable. Create, CreateGuest, MarkStarted and MarkDone
// refuse other times with ErrInvalid.
func StorableTime(t time.Time) bool {
	return t.IsZero() || !t.Before(minTime) && !t.After(maxTime)
}

// checkTime is an ErrInvalid error, naming the time as what, when t is not
// storable.
func checkTime(what string, t time.Time) error {
	switch {
	case StorableTime(t):
		return nil
	case t.Before(minTime):
		return fmt.Errorf("%s %s is before %s, the earliest time the history can store: %w",
			what, t.Format(time.RFC3339), minTime.Format(time.DateOnly), ErrInvalid)
	default:
		return fmt.Errorf("%s %s is after %s, the latest time the history can store: %w",
			what, t.Format(time.RFC3339), maxTime.Format(time.DateOnly), ErrInvalid)
	}
}

func toNanos(t time.Time) int64 { return t.UnixNano() }

// toMillis is d in whole milliseconds, rounded up so that a positive time
// limit never becomes 0 (none).
func toMillis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

// fromMillis is the Duration of ms milliseconds, the longest one past
// what a Duration holds.
func fromMillis(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

func toNullNanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64)
}

// outputPath is the output file of a run; id must be valid.
func (s *Store) outputPath(id string) string {
	return s.outDir + string(os.PathSeparator) + id + ".log"
}

func (s *Store) removeOutput(id string) error {
	if err := os.Remove(s.outputPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
