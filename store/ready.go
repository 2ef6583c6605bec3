package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Ready says whether the store can take writes now: nil when it can,
// otherwise an error of kind ErrFull when the file system of the data
// directory has less than Options.MinFree bytes available to unprivileged
// users, of kind ErrBusy when another process holds the database's write
// lock, or another error. It answers at once: it does not wait for the lock
// (nor for Options.BusyTimeout). A write of this process that is under way
// does not make the store unready. For a readiness probe.
func (s *Store) Ready(ctx context.Context) (err error) {
	defer classifyTo(&err)
	if s.minFree >= 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(s.dir, &st); err != nil {
			return fmt.Errorf("store: ready: free space of %s: %w", s.dir, err)
		}
		if avail := int64(st.Bavail) * int64(st.Bsize); avail < s.minFree {
			return fmt.Errorf("store: not ready: %d bytes available in %s, fewer than %d: %w",
				avail, s.dir, s.minFree, ErrFull)
		}
	}
	// This process's writers take the semaphore before the lock: one that
	// holds it is writing (or about to), so the lock is ours, not another
	// process's, and probing it would only find our own writer.
	select {
	case s.writer <- struct{}{}:
		defer func() { <-s.writer }()
	default:
		return nil
	}
	if err := s.probeLock(ctx); err != nil {
		return fmt.Errorf("store: not ready: %w", err)
	}
	return nil
}

// probeLock takes the database's write lock and gives it back at once, on a
// connection of its own with busy_timeout 0 for the time of the probe, so
// that a lock held elsewhere fails it at once with SQLITE_BUSY.
func (s *Store) probeLock(ctx context.Context) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	// A connection left in a state the others of the pool do not have
	// (another busy_timeout, maybe inside a transaction) is closed rather
	// than given back.
	clean := false
	defer func() {
		if !clean {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	var timeout int
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return err
	}
	// BEGIN IMMEDIATE that fails as busy leaves no transaction behind: the
	// connection stays clean. Any other failure may leave one.
	var txErr error
	if _, txErr = conn.ExecContext(ctx, "BEGIN IMMEDIATE"); txErr == nil {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			return err
		}
	} else if !errors.Is(classify(txErr), ErrBusy) {
		return txErr
	}
	// PRAGMA takes no bound parameters; timeout is an integer.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA busy_timeout = "+strconv.Itoa(timeout)); err != nil {
		return errors.Join(txErr, err)
	}
	clean = true
	return txErr
}
