package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
)

// dbFiles are the database file of the store in dir, its WAL and its
// shared memory index.
func dbFiles(dir string) []string {
	db := filepath.Join(dir, "rexec.db")
	return []string{db, db + "-wal", db + "-shm"}
}

func checkModes(t *testing.T, files []string, want os.FileMode) {
	t.Helper()
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(f), fi.Mode().Perm(), want)
		}
	}
}

// withUmask runs f with the process umask set to mask.
func withUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

// TestPrivateFiles: the database and the files SQLite makes beside it are
// readable by their owner only, whatever the umask and the mode of the data
// directory.
func TestPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var s *store.Store
	withUmask(0o022, func() { s = mustOpen(t, dir, store.Options{}) })
	mustCreate(t, s, "x") // a write: the WAL and its index exist
	checkModes(t, dbFiles(dir), 0o600)
}

// TestPrivateFilesExisting: the files of a database made by an older rexec,
// which left them as the umask made them, are made private at Open.
func TestPrivateFilesExisting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var old *sql.DB
	withUmask(0o022, func() {
		var err error
		old, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "rexec.db")+"?_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.ExecContext(ctx, `CREATE TABLE before (x INTEGER)`); err != nil {
			t.Fatal(err)
		}
	})
	defer old.Close() // open, so that its WAL and index stay
	checkModes(t, dbFiles(dir), 0o644)
	mustOpen(t, dir, store.Options{})
	checkModes(t, dbFiles(dir), 0o600)
}

// TestErrBusy: while another process holds the database's write lock for
// longer than BusyTimeout, writes fail with ErrBusy, the SQLite error kept
// in the chain; reads go on.
func TestErrBusy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := mustOpen(t, dir, store.Options{BusyTimeout: 100 * time.Millisecond})
	before := mustCreate(t, s, "x")

	other, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	err = s.Create(ctx, &store.Run{Script: "x"})
	if !errors.Is(err, store.ErrBusy) {
		t.Fatalf("Create while locked: %v, want ErrBusy", err)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		t.Errorf("Create while locked: %v: the SQLite error is not in the chain", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Create took %v with a busy timeout of 100ms", took)
	}
	for name, err := range map[string]error{
		"MarkDone":    s.MarkDone(ctx, before.ID, store.Outcome{Ended: store.EndedCancelled}),
		"CreateGuest": s.CreateGuest(ctx, &store.Guest{KeyHash: []byte("h"), WithToken: true}),
		"Ready":       s.Ready(ctx),
	} {
		if !errors.Is(err, store.ErrBusy) || errors.Is(err, store.ErrFull) {
			t.Errorf("%s while locked: %v, want ErrBusy", name, err)
		}
	}
	if got := mustGet(t, s, before.ID); got.State != store.StateQueued {
		t.Errorf("run is %s", got.State)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "output")); len(entries) != 1 {
		t.Errorf("%d output files, want 1: failed Creates left theirs", len(entries))
	}

	if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "x")
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready once the lock is free: %v", err)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it at the end of the test. It skips the test where mounting is not
// allowed (no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	return f
}

// TestFull: on a full disk, writes fail with ErrFull, output is cut saying
// why, Ready says ErrFull; once there is room again, all is well.
func TestFull(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, "2m")
	s := mustOpen(t, dir, store.Options{})
	r := mustCreate(t, s, "x")
	w := mustOpenOutput(t, s, r.ID)
	mustWrite(t, w, []byte("before\n"))
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready before the disk is full: %v", err)
	}

	filler := fill(t, dir)
	defer filler.Close()

	err := s.Create(ctx, &store.Run{Script: "x"})
	if !errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrBusy) {
		t.Errorf("Create on a full disk: %v, want ErrFull", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "output")); len(entries) != 1 {
		t.Errorf("%d output files, want 1: the failed Create left its own", len(entries))
	}
	err = s.CreateGuest(ctx, &store.Guest{KeyHash: []byte("h"), WithToken: true})
	if !errors.Is(err, store.ErrFull) {
		t.Errorf("CreateGuest on a full disk: %v, want ErrFull", err)
	}

	big := make([]byte, 3*os.Getpagesize())
	mustWrite(t, w, big) // fails underneath, reported done
	mustWrite(t, w, []byte("after\n"))
	const reason = "writing the output failed: no space left on device"
	if !w.Truncated() || w.TruncatedReason() != reason {
		t.Errorf("output: truncated %v, reason %q; want true, %q", w.Truncated(), w.TruncatedReason(), reason)
	}
	if err := w.Close(); err != nil {
		t.Errorf("closing the output: %v", err)
	}
	out := outputFile(t, s, r.ID)
	if len(out) != int(w.Size()) || string(out[:7]) != "before\n" {
		t.Errorf("output of %d bytes (size %d) starting %q", len(out), w.Size(), out[:min(len(out), 7)])
	}

	err = s.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), OutputTruncated: w.TruncatedReason()})
	if !errors.Is(err, store.ErrFull) {
		t.Errorf("MarkDone on a full disk: %v, want ErrFull", err)
	}
	if err := s.Ready(ctx); !errors.Is(err, store.ErrFull) {
		t.Errorf("Ready on a full disk: %v, want ErrFull", err)
	}
	if got := mustGet(t, s, r.ID); got.State != store.StateQueued {
		t.Errorf("run is %s after a failed MarkDone", got.State)
	}

	// Room again.
	filler.Close()
	if err := os.Remove(filler.Name()); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready once there is room: %v", err)
	}
	if err := s.MarkDone(ctx, r.ID, store.Outcome{Ended: store.EndedExit, ExitCode: intp(0), OutputTruncated: w.TruncatedReason()}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, r.ID); got.OutputTruncated != reason {
		t.Errorf("recorded OutputTruncated %q", got.OutputTruncated)
	}
	mustCreate(t, s, "x")
}

// TestFullOutputFile: an output file that cannot be made on a full file
// system (here: no inode left) fails Create with ErrFull.
func TestFullOutputFile(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, "2m,nr_inodes=16")
	s := mustOpen(t, dir, store.Options{})
	var err error
	for range 20 {
		if err = s.Create(ctx, &store.Run{Script: "x"}); err != nil {
			break
		}
	}
	var pe *fs.PathError
	if !errors.Is(err, store.ErrFull) || !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) {
		t.Errorf("Create without inodes: %v, want ErrFull from the output file", err)
	}
}
