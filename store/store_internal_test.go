package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
)

// TestPragmas checks the settings the package documentation promises, on
// every connection of the pool, not just the first.
func TestPragmas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		wantSync int // 1 NORMAL, 2 FULL
	}{{"default", Options{}, 1}, {"full sync", Options{FullSync: true}, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, t.TempDir(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var conns []interface{ Close() error }
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for range 3 { // hold several connections at once
				c, err := s.db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				var journal string
				var sync, fk, busy, version int
				for q, dst := range map[string]any{
					"PRAGMA journal_mode": &journal, "PRAGMA synchronous": &sync, "PRAGMA foreign_keys": &fk,
					"PRAGMA busy_timeout": &busy, "PRAGMA user_version": &version,
				} {
					if err := c.QueryRowContext(ctx, q).Scan(dst); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				if journal != "wal" || sync != tc.wantSync || fk != 1 || busy != 5000 || version != len(migrations) {
					t.Errorf("journal_mode %s, synchronous %d, foreign_keys %d, busy_timeout %d, user_version %d",
						journal, sync, fk, busy, version)
				}
			}
		})
	}
}

// FuzzOutputCap: however the output is split into writes, the file holds
// its first max bytes, then the marker if anything was cut, and nothing else.
func FuzzOutputCap(f *testing.F) {
	f.Add([]byte("hello, world\n"), uint8(3), uint16(5))
	f.Add([]byte("exactly"), uint8(6), uint16(7))
	f.Add([]byte{}, uint8(0), uint16(0))
	f.Add(bytes.Repeat([]byte("x"), 1000), uint8(255), uint16(999))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, max16 uint16) {
		max := int64(max16)
		path := filepath.Join(t.TempDir(), "out.log")
		file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
		if err != nil {
			t.Fatal(err)
		}
		w := &fileOutput{id: "fuzz", max: max, f: file, store: &Store{}}
		step := int(chunk) + 1
		for rest := data; len(rest) > 0; {
			n := min(step, len(rest))
			if got, err := w.Write(rest[:n]); got != n || err != nil {
				t.Fatalf("Write(%d) = %d, %v", n, got, err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want := data
		if int64(len(data)) > max {
			want = append(append([]byte{}, data[:max]...), TruncationMarker(max)...)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || w.Size() != int64(len(want)) || w.Truncated() != (int64(len(data)) > max) {
			t.Fatalf("file %q (size %d, truncated %v), want %q", got, w.Size(), w.Truncated(), want)
		}
	})
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no kind
	}{
		{"nil", nil, nil},
		{"other", errors.New("boom"), nil},
		{"ENOSPC", fmt.Errorf("store: x: %w", &fs.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}), ErrFull},
		{"EDQUOT", &fs.PathError{Op: "close", Path: "f", Err: syscall.EDQUOT}, ErrFull},
		{"EIO", &fs.PathError{Op: "write", Path: "f", Err: syscall.EIO}, nil},
		{"invalid", fmt.Errorf("store: %w", ErrInvalid), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if tc.want == nil {
				if got != tc.err {
					t.Errorf("classify(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) = %v: not both %v and the original", tc.err, got, tc.want)
			}
			if again := classify(got); again != got {
				t.Errorf("classified twice: %v", again)
			}
		})
	}
}

// holdWriteLock takes the write lock of the database in dir on a connection
// of its own, as another process would, until the test ends.
func holdWriteLock(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ExecContext(context.Background(), "ROLLBACK") })
}

func TestReady(t *testing.T) {
	ctx := context.Background()

	t.Run("ready", func(t *testing.T) {
		s, err := Open(ctx, t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	})

	t.Run("locked by another process", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(ctx, dir, Options{}) // busy_timeout 5 s
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		holdWriteLock(t, dir)
		start := time.Now()
		err = s.Ready(ctx)
		if took := time.Since(start); took > time.Second {
			t.Errorf("Ready took %v while the lock was held", took)
		}
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("Ready: %v, want ErrBusy", err)
		}
		var se *sqlite.Error
		if !errors.As(err, &se) {
			t.Errorf("Ready: %v: the SQLite error is not in the chain", err)
		}
		// The probe's connection went back to the pool as it was.
		var conns []*sql.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 3 {
			c, err := s.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var busy int
			if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
				t.Fatal(err)
			}
			if busy != 5000 {
				t.Errorf("busy_timeout %d after Ready, want 5000", busy)
			}
		}
	})

	t.Run("own writer", func(t *testing.T) {
		s, err := Open(ctx, t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		tx, end, err := s.beginWrite(ctx) // holds the semaphore and the lock
		if err != nil {
			t.Fatal(err)
		}
		defer end()
		if _, err := tx.ExecContext(ctx, `DELETE FROM runs`); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := s.Ready(ctx); err != nil {
			t.Errorf("Ready while this process writes: %v", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Ready took %v", took)
		}
	})

	t.Run("min free", func(t *testing.T) {
		s, err := Open(ctx, t.TempDir(), Options{MinFree: math.MaxInt64})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Ready(ctx); !errors.Is(err, ErrFull) {
			t.Errorf("Ready wanting more space than any disk has: %v, want ErrFull", err)
		}
		s.minFree = -1 // no check
		if err := s.Ready(ctx); err != nil {
			t.Errorf("Ready without the free space check: %v", err)
		}
	})
}

// writerFd is the descriptor of w's file.
func writerFd(t *testing.T, w *fileOutput) int {
	t.Helper()
	var fd int
	rc, err := w.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// newRunOutput is a store with one run and its output writer open.
func newRunOutput(t *testing.T) (*Store, Run, *fileOutput) {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := Run{Script: "x"}
	if err := s.Create(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	w, err := s.OpenOutput(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return s, r, w.(*fileOutput)
}

// TestOutputWriteFails: a write error cuts the output, once, and the writer
// keeps accepting (and discarding) writes. The file is made unwritable under
// the writer by putting a read-only /dev/null in its descriptor's place.
func TestOutputWriteFails(t *testing.T) {
	ctx := context.Background()
	s, r, w := newRunOutput(t)
	if n, err := w.Write([]byte("before\n")); n != 7 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := unix.Dup2(int(null.Fd()), writerFd(t, w)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"after\n", "and more\n"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want all, no error", p, n, err)
		}
	}
	const reason = "writing the output failed: bad file descriptor"
	if !w.Truncated() || w.TruncatedReason() != reason || w.Size() != 7 {
		t.Errorf("truncated %v, reason %q, size %d; want true, %q, 7", w.Truncated(), w.TruncatedReason(), w.Size(), reason)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.outputPath(r.ID)); string(b) != "before\n" {
		t.Errorf("file %q", b)
	}
	if err := s.MarkDone(ctx, r.ID, Outcome{Ended: EndedExit, OutputTruncated: w.TruncatedReason()}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, r.ID); err != nil || got.OutputTruncated != reason {
		t.Errorf("recorded OutputTruncated %q, %v", got.OutputTruncated, err)
	}
}

// TestOutputFailureMarker: after a failed write the marker line is written
// when it can be. The writer's descriptor is replaced by a non-blocking pipe
// of one page that has room for the marker but not for the write that fails
// (EAGAIN, nothing written: it would need a second page).
func TestOutputFailureMarker(t *testing.T) {
	_, _, w := newRunOutput(t)

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	const page = 4096
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, page); err != nil {
		t.Skipf("pipe size: %v", err)
	}
	marker := failureMarker("resource temporarily unavailable")
	fill := bytes.Repeat([]byte("f"), page-len(marker))
	if n, err := unix.Write(p[1], fill); n != len(fill) || err != nil {
		t.Fatalf("filling the pipe: %d, %v", n, err)
	}
	if err := unix.Dup2(p[1], writerFd(t, w)); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), len(marker)+1)
	if n, err := w.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v; want all, no error", n, err)
	}
	if got, want := w.TruncatedReason(), "writing the output failed: resource temporarily unavailable"; got != want {
		t.Fatalf("reason %q, want %q", got, want)
	}
	if n, err := w.Write([]byte("later")); n != 5 || err != nil {
		t.Fatalf("Write after the failure = %d, %v", n, err)
	}
	buf := make([]byte, 2*page)
	n, err := unix.Read(p[0], buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[n-len(marker) : n]); n != page || got != marker {
		t.Errorf("pipe holds %d bytes ending in %q, want %d ending in %q", n, got, page, marker)
	}
	if w.Size() != int64(len(marker)) {
		t.Errorf("size %d, want %d (the marker)", w.Size(), len(marker))
	}
}

// schema2 makes, in dir, the database of a rexec whose schema was version 2,
// with one run and one guest key.
func schema2(t *testing.T, dir string) (runID string, keyHash []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runID = newID()
	h := sha256.Sum256([]byte("old key"))
	keyHash = h[:]
	now := time.Now().UnixNano()
	for _, q := range []string{migrations[0], migrations[1], "PRAGMA user_version = 2"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO runs (id, script, args, who, state, queued_at, ended_at, exit_code, ended)
		VALUES (?, 'old', '["a"]', 'k', 'done', ?, ?, 0, 'exit')`, runID, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO guests (id, name, run, cancel, status, monitor, created, key_hash)
		VALUES ('oldguest', '', 1, 1, 1, 1, ?, ?)`, now, keyHash); err != nil {
		t.Fatal(err)
	}
	return runID, keyHash
}

func TestMigration3(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	runID, keyHash := schema2(t, dir)
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("user_version %d, %v; want %d", version, err, len(migrations))
	}
	for table, cols := range map[string][]string{"runs": {"timeout_ms", "output_truncated"}, "guests": {"with_token"}} {
		for _, col := range cols {
			var n int
			err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ? AND "notnull" = 1`,
				table, col).Scan(&n)
			if err != nil || n != 1 {
				t.Errorf("%s.%s: %d, %v", table, col, n, err)
			}
		}
	}

	r, err := s.Get(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Script != "old" || r.Timeout != 0 || r.OutputTruncated != "" || r.State != StateDone {
		t.Errorf("old run %+v", r)
	}

	gs, err := s.ListGuests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 1 || gs[0].ID != "oldguest" || gs[0].WithToken || !gs[0].Run {
		t.Fatalf("guests after the migration: %+v", gs)
	}
	if _, err := s.GuestByKeyHash(ctx, keyHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("key made before the migration: %v, want ErrNotFound", err)
	}
	if n, err := s.CountGuestsWithoutToken(ctx); n != 1 || err != nil {
		t.Errorf("CountGuestsWithoutToken = %d, %v; want 1", n, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE guests SET with_token = 2`); err == nil {
		t.Error("with_token accepts 2")
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE runs SET timeout_ms = -1`); err == nil {
		t.Error("timeout_ms accepts -1")
	}
	if err := s.DeleteGuest(ctx, "oldguest"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountGuestsWithoutToken(ctx); n != 0 || err != nil {
		t.Errorf("CountGuestsWithoutToken after deleting = %d, %v", n, err)
	}
}
