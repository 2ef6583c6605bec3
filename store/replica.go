package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// A Store can be the local copy of a history replicated from a log (package
// fleet/jshistory): every host of a fleet applies the log's entries, in the
// log's order, to its own Store, and reads its own. Its runs and guest keys
// are made and changed only through Entry, whose methods take every value the single-host
// methods would take from the host (an ID, the clock, the size of an output
// file) from the entry instead, so every copy that applied the same entries
// holds the same runs, seq included. The replica row (migration 8) says which
// log the copy is of and the last entry it applied, recorded in the
// transaction that applied it.

// Error kinds of a replica.
var (
	// ErrNotReplica: the store is not a copy of the log asked about: it is
	// the copy of another log, or (MakeReplica) it holds runs of its own,
	// or (Entry) it is no copy at all.
	ErrNotReplica = errors.New("the history is not a copy of this log")
	// ErrApplied: the store applied the log's entry already.
	ErrApplied = errors.New("the log entry was applied already")
)

// Replica is what a store knows of the log it is a copy of.
type Replica struct {
	Log     string // the log's name, "" for a store that is no copy (a single host's)
	Applied uint64 // the last entry applied, 0 before the first
}

// Replica returns the log the store is a copy of and the last entry of it
// applied.
func (s *Store) Replica(ctx context.Context) (_ Replica, err error) {
	defer classifyTo(&err)
	var r Replica
	var applied int64
	if err := s.db.QueryRowContext(ctx, `SELECT log, applied FROM replica`).Scan(&r.Log, &applied); err != nil {
		return Replica{}, fmt.Errorf("store: replica: %w", err)
	}
	r.Applied = uint64(applied)
	return r, nil
}

// MakeReplica makes the store the copy of the log named log, which it must
// be already or, holding no run and no guest key, may become (ErrNotReplica
// otherwise). A log
// is named for what it is: one deleted and made again under the same name
// must take another.
func (s *Store) MakeReplica(ctx context.Context, log string) (err error) {
	defer classifyTo(&err)
	if log == "" {
		return fmt.Errorf("store: make replica: no log name: %w", ErrInvalid)
	}
	err = s.write(ctx, 0, func(tx *sql.Tx) error {
		var cur string
		if err := tx.QueryRowContext(ctx, `SELECT log FROM replica`).Scan(&cur); err != nil {
			return err
		}
		switch {
		case cur == log:
			return nil
		case cur != "":
			return fmt.Errorf("it is the copy of %q: %w", cur, ErrNotReplica)
		}
		var runs, guests bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM runs), EXISTS (SELECT 1 FROM guests)`).Scan(&runs, &guests); err != nil {
			return err
		}
		switch {
		case runs:
			return fmt.Errorf("it holds runs of its own: %w", ErrNotReplica)
		case guests:
			// The copies hold the log's keys alone: one made here before
			// would work on this host only.
			return fmt.Errorf("it holds guest keys of its own: %w", ErrNotReplica)
		}
		_, err := tx.ExecContext(ctx, `UPDATE replica SET log = ?`, log)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: make replica of %q: %w", log, err)
	}
	return nil
}

// Refused says whether err refuses an operation for what it asks, which is
// the same on every copy: ErrNotFound, ErrWrongState, ErrInvalid,
// ErrNoSuchGuest. An Entry that returns such an error was applied, as a
// no-op. Other errors (ErrBusy, ErrFull, a cancelled context...) are of
// this host: the Entry applied nothing.
func Refused(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrWrongState) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, ErrNoSuchGuest)
}

// write runs change in one write transaction and commits it.
//
// seq > 0 makes it the application of the log's entry seq: it is refused
// with ErrApplied when the store applied that entry already, and records
// seq as applied in the same transaction, also when change refuses the
// operation (see refused): a refused operation is applied as a no-op, on
// every copy alike. change must refuse before it writes anything.
func (s *Store) write(ctx context.Context, seq uint64, change func(tx *sql.Tx) error) error {
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer end()
	if seq > 0 {
		if err := recordEntry(ctx, tx, seq); err != nil {
			return err
		}
	}
	// A failure rolls back the entry's record with the rest.
	err = change(tx)
	if err != nil && (seq == 0 || !Refused(err)) {
		return err
	}
	if cerr := tx.Commit(); cerr != nil {
		return cerr
	}
	return err
}

// recordEntry records seq as the last entry applied, unless the store is no
// copy (ErrNotReplica) or applied it already (ErrApplied).
func recordEntry(ctx context.Context, tx *sql.Tx, seq uint64) error {
	if seq > math.MaxInt64 {
		return fmt.Errorf("log entry %d: past what the history can count", seq)
	}
	res, err := tx.ExecContext(ctx, `UPDATE replica SET applied = ? WHERE log <> '' AND applied < ?`, int64(seq), int64(seq))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var log string
	var applied int64
	if err := tx.QueryRowContext(ctx, `SELECT log, applied FROM replica`).Scan(&log, &applied); err != nil {
		return err
	}
	if log == "" {
		return fmt.Errorf("log entry %d: %w", seq, ErrNotReplica)
	}
	return fmt.Errorf("log entry %d, applied up to %d: %w", seq, applied, ErrApplied)
}

// refuse is err, a refusal of an operation found before its transaction;
// for a log entry (seq > 0) the entry is recorded as applied first (see
// write).
func (s *Store) refuse(ctx context.Context, seq uint64, err error) error {
	if seq == 0 {
		return err
	}
	return s.write(ctx, seq, func(*sql.Tx) error { return err })
}

// Entry applies the log's entry Seq to a store that is a copy of the log
// (MakeReplica). Each of its methods applies one operation, as the History
// method of the same name (or the Store's, for guest keys) would on a
// single host, in one transaction that also records Seq as the last entry
// applied (Replica), so an entry is applied once: a second time is
// ErrApplied. An operation refused for what it asks (see Refused, as a
// single host would refuse it) is applied too, as a no-op, and returns the
// refusal. Other errors (ErrBusy, ErrFull...) apply nothing; try again.
//
// Entries never touch output files: a fleet keeps outputs elsewhere.
type Entry struct {
	s   *Store
	Seq uint64 // the entry's place in the log, from 1
}

// Entry returns the store's applier of the log's entry seq.
func (s *Store) Entry(seq uint64) Entry { return Entry{s: s, Seq: seq} }

func (e Entry) check() error {
	if e.Seq == 0 {
		return fmt.Errorf("store: log entry 0: %w", ErrInvalid)
	}
	return nil
}

// Skip records the entry as applied without changing any run: an entry
// that holds no operation this store knows.
func (e Entry) Skip(ctx context.Context) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	if err := e.s.write(ctx, e.Seq, func(*sql.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store: skip log entry %d: %w", e.Seq, err)
	}
	return nil
}

// CreateAs records the new queued run r as Create does, with the r.ID and
// r.QueuedAt given (an ID of the form Create makes, see ValidID, and a
// storable time), and refuses what Create refuses. The run takes the
// entry's Seq as its seq, its place among the runs that ListActive,
// ListQueued and ListRuns (and its cursors) order by. Its QueuedAt is taken
// later when a run the store holds was queued later: the order of QueuedAt
// is the order of the log, whatever the clocks the log's times came from.
// r.QueuedAt and r.State are set to what was recorded.
func (e Entry) CreateAs(ctx context.Context, r *Run) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	verr := CheckNewRun(r)
	switch {
	case verr != nil:
	case !validID(r.ID):
		verr = fmt.Errorf("id %q is not of the form of a run's: %w", r.ID, ErrInvalid)
	case r.QueuedAt.IsZero():
		verr = fmt.Errorf("no queue time: %w", ErrInvalid)
	default:
		verr = checkTime("queue time", r.QueuedAt)
	}
	if verr != nil {
		return fmt.Errorf("store: create %q: %w", r.ID, e.s.refuse(ctx, e.Seq, verr))
	}
	n := Run{ID: r.ID, Script: r.Script, Args: r.Args, Who: r.Who, StartAt: r.StartAt, Timeout: r.Timeout, QueuedAt: r.QueuedAt}
	err = e.s.write(ctx, e.Seq, func(tx *sql.Tx) error {
		var taken bool
		var last sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE id = ? OR seq = ?), (SELECT max(queued_at) FROM runs)`,
			n.ID, int64(e.Seq)).Scan(&taken, &last)
		if err != nil {
			return err
		}
		if taken {
			return fmt.Errorf("a run with this id or seq %d exists: %w", e.Seq, ErrInvalid)
		}
		if last.Valid && last.Int64 > toNanos(n.QueuedAt) {
			n.QueuedAt = time.Unix(0, last.Int64)
		}
		return insertRun(ctx, tx, &n, int64(e.Seq))
	})
	if err != nil {
		return fmt.Errorf("store: create %q: %w", r.ID, err)
	}
	r.QueuedAt, r.State = n.QueuedAt, StateQueued
	return nil
}

// MarkStartedOn is MarkStarted, recording the host that started the run
// (Run.Host). A zero startedAt is ErrInvalid: the entry gives the time.
func (e Entry) MarkStartedOn(ctx context.Context, id, host string, pid int, startedAt time.Time) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	if startedAt.IsZero() {
		return fmt.Errorf("store: mark started %q: %w", id, e.s.refuse(ctx, e.Seq, fmt.Errorf("no start time: %w", ErrInvalid)))
	}
	return e.s.markStarted(ctx, e.Seq, id, host, pid, startedAt)
}

// MarkDoneAs is MarkDone, recording outputSize as the run's OutputSize
// rather than the size of a file. A zero o.EndedAt or a negative size is
// ErrInvalid: the entry gives them.
func (e Entry) MarkDoneAs(ctx context.Context, id string, o Outcome, outputSize int64) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	switch {
	case o.EndedAt.IsZero():
		return fmt.Errorf("store: mark done %q: %w", id, e.s.refuse(ctx, e.Seq, fmt.Errorf("no end time: %w", ErrInvalid)))
	case outputSize < 0:
		return fmt.Errorf("store: mark done %q: %w", id, e.s.refuse(ctx, e.Seq, fmt.Errorf("output size %d: %w", outputSize, ErrInvalid)))
	}
	return e.s.markDone(ctx, e.Seq, id, o, outputSize)
}

// SetProgress is History.SetProgress.
func (e Entry) SetProgress(ctx context.Context, id string, p Progress) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.s.setProgress(ctx, e.Seq, id, p)
}

// SetTaskProgress is History.SetTaskProgress.
func (e Entry) SetTaskProgress(ctx context.Context, id string, p Progress, taskStartedAt time.Time, tasks []TaskSpan) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.s.setTaskProgress(ctx, e.Seq, id, p, taskStartedAt, tasks)
}

// SetResult is History.SetResult.
func (e Entry) SetResult(ctx context.Context, id string, result json.RawMessage) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.s.setResult(ctx, e.Seq, id, result)
}

// Delete is History.Delete, of the run's record only.
func (e Entry) Delete(ctx context.Context, id string) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.s.delete(ctx, e.Seq, id, false)
}

// DeleteEndedBefore is History.DeleteEndedBefore, of the runs' records
// only, in one transaction; it returns the IDs of the runs it deleted.
func (e Entry) DeleteEndedBefore(ctx context.Context, t time.Time) (_ []string, err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return nil, err
	}
	before := toNanos(ClampTime(t))
	var deleted []string
	err = e.s.write(ctx, e.Seq, func(tx *sql.Tx) error {
		deleted = nil
		for {
			ids, err := e.s.deleteBatch(ctx, tx, before, false)
			if err != nil {
				return err
			}
			deleted = append(deleted, ids...)
			if len(ids) < retentionBatch {
				return nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("store: retention: %w", err)
	}
	if len(deleted) > 0 {
		e.s.log.Info().Int("runs", len(deleted)).Time("before", t).Msg("old runs deleted")
	}
	return deleted, nil
}

// RecoverOn is Recover of the runs running on host (Run.Host) alone: it
// ends them as interrupted at endedAt, their OutputSize taken from sizes
// (the recorded one for a run sizes does not name), and returns them as
// recorded. A zero endedAt is ErrInvalid.
func (e Entry) RecoverOn(ctx context.Context, host string, endedAt time.Time, sizes map[string]int64) (_ []Run, err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return nil, err
	}
	if verr := checkTime("end time", endedAt); verr != nil || endedAt.IsZero() {
		if verr == nil {
			verr = fmt.Errorf("no end time: %w", ErrInvalid)
		}
		return nil, fmt.Errorf("store: recover: %w", e.s.refuse(ctx, e.Seq, verr))
	}
	runs, err := e.s.recover(ctx, e.Seq, &host, endedAt, func(r *Run) {
		if n, ok := sizes[r.ID]; ok && n >= 0 {
			r.OutputSize = n
		}
	})
	if err != nil {
		return nil, fmt.Errorf("store: recover: %w", err)
	}
	return runs, nil
}

// CreateGuestAs records the new guest key g as CreateGuest does, with the
// g.ID and g.Created given (an ID of the form CreateGuest makes, see
// ValidID, and a storable time), and refuses what CreateGuest refuses: a
// key with no hash, an Expires the history cannot store, an ID or a key
// hash some key has already (ErrInvalid).
func (e Entry) CreateGuestAs(ctx context.Context, g *Guest) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	verr := CheckNewGuest(g)
	switch {
	case verr != nil:
	case !validID(g.ID):
		verr = fmt.Errorf("id %q is not of the form of a guest key's: %w", g.ID, ErrInvalid)
	case g.Created.IsZero():
		verr = fmt.Errorf("no creation time: %w", ErrInvalid)
	default:
		verr = checkTime("creation time", g.Created)
	}
	if verr != nil {
		return fmt.Errorf("store: create guest %q: %w", g.ID, e.s.refuse(ctx, e.Seq, verr))
	}
	n := *g
	if err := e.s.write(ctx, e.Seq, func(tx *sql.Tx) error { return insertGuest(ctx, tx, &n) }); err != nil {
		return fmt.Errorf("store: create guest %q: %w", g.ID, err)
	}
	return nil
}

// DeleteGuest is Store.DeleteGuest: ErrNoSuchGuest, a refusal, when there is
// no key with that id.
func (e Entry) DeleteGuest(ctx context.Context, id string) (err error) {
	defer classifyTo(&err)
	if err := e.check(); err != nil {
		return err
	}
	return e.s.deleteGuest(ctx, e.Seq, id)
}
