package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

// crashEnv, when set to a directory, makes the test binary the process that
// TestKill9 kills: it opens a store there, records runs, and prints a line
// for each write as soon as the write returned ("acknowledged").
const crashEnv = "STORE_CRASH_HELPER_DIR"

func crashHelper() {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return
	}
	if err := runCrashHelper(dir); err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		os.Exit(1)
	}
	os.Exit(0) // not reached: it waits for its kill
}

func runCrashHelper(dir string) error {
	ctx := context.Background()
	s, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return err
	}
	// Never closed: the process dies with it open.
	create := func(script string, args ...string) (store.Run, error) {
		r := store.Run{Script: script, Args: args, Who: "helper-key"}
		return r, s.Create(ctx, &r)
	}

	queued, err := create("later", "a", "b c")
	if err != nil {
		return err
	}
	fmt.Printf("queued %s\n", queued.ID)

	running, err := create("long")
	if err != nil {
		return err
	}
	if err := s.MarkStarted(ctx, running.ID, os.Getpid(), time.Now()); err != nil {
		return err
	}
	if err := s.SetProgress(ctx, running.ID, store.Progress{Task: 1, TaskTotal: 3, TaskTitle: "first"}); err != nil {
		return err
	}
	w, err := s.OpenOutput(running.ID)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, "partial output\n"); err != nil {
		return err
	}
	fmt.Printf("running %s\n", running.ID)

	done, err := create("quick")
	if err != nil {
		return err
	}
	if err := s.MarkStarted(ctx, done.ID, 1, time.Now()); err != nil {
		return err
	}
	if err := s.SetResult(ctx, done.ID, json.RawMessage(`{"answer":42}`)); err != nil {
		return err
	}
	if err := s.MarkDone(ctx, done.ID, store.Outcome{ExitCode: intp(7), Ended: store.EndedExit}); err != nil {
		return err
	}
	fmt.Printf("done %s\n", done.ID)
	fmt.Println("ok")

	// Keep writing until killed, acknowledging each write.
	for i := 0; ; i++ {
		r, err := create("more", strconv.Itoa(i))
		if err != nil {
			return err
		}
		fmt.Printf("more %s\n", r.ID)
		if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
			return err
		}
		fmt.Printf("output %d\n", w.Size())
		time.Sleep(time.Millisecond)
	}
}

func TestKill9(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir, "GORACE=atexit_sleep_ms=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	// Every complete line is an acknowledged write.
	var (
		acked   = map[string][]string{} // kind -> ids
		outSize int64
		lines   int
		killed  bool
	)
	br := bufio.NewReader(stdout)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break // EOF after the kill; a partial last line was never acknowledged
		}
		kind, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch kind {
		case "ok":
		case "output":
			outSize, _ = strconv.ParseInt(arg, 10, 64)
		default:
			acked[kind] = append(acked[kind], arg)
		}
		lines++
		if !killed && len(acked["more"]) >= 100 {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("helper: %v; stderr:\n%s", err, stderr.String())
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, not by SIGKILL; stderr:\n%s", err, stderr.String())
	}
	if len(acked["queued"]) != 1 || len(acked["running"]) != 1 || len(acked["done"]) != 1 {
		t.Fatalf("helper acknowledged %v", acked)
	}
	if _, err := os.Stat(filepath.Join(dir, "rexec.db-wal")); err != nil {
		t.Errorf("no WAL left by the killed process: %v", err)
	}
	t.Logf("%d acknowledged writes before the kill, %d runs", lines, len(acked["more"])+3)

	s := mustOpen(t, dir, store.Options{})
	interrupted, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	runningID := acked["running"][0]
	if len(interrupted) != 1 || interrupted[0].ID != runningID || interrupted[0].Pid != cmd.Process.Pid {
		t.Fatalf("Recover returned %+v, want only %s with pid %d", interrupted, runningID, cmd.Process.Pid)
	}

	got := mustGet(t, s, runningID)
	if got.State != store.StateDone || got.Ended != store.EndedInterrupted || got.Progress.TaskTitle != "first" {
		t.Errorf("running run after the crash: %+v", got)
	}
	if got.OutputSize < outSize {
		t.Errorf("output size %d, but %d bytes were acknowledged", got.OutputSize, outSize)
	}
	if out := outputFile(t, s, runningID); !bytes.HasPrefix(out, []byte("partial output\nline 0\n")) {
		t.Errorf("output %q", out)
	}

	got = mustGet(t, s, acked["queued"][0])
	if got.State != store.StateQueued || got.Script != "later" || strings.Join(got.Args, "|") != "a|b c" {
		t.Errorf("queued run after the crash: %+v", got)
	}
	got = mustGet(t, s, acked["done"][0])
	if got.State != store.StateDone || got.ExitCode == nil || *got.ExitCode != 7 || string(got.Result) != `{"answer":42}` {
		t.Errorf("done run after the crash: %+v", got)
	}
	for i, id := range acked["more"] {
		got, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged run %d (%s) lost: %v", i, id, err)
		}
		if got.State != store.StateQueued || got.Args[0] != strconv.Itoa(i) {
			t.Errorf("acknowledged run %d: %+v", i, got)
		}
	}
	queued, err := s.ListQueued(context.Background(), "more")
	if err != nil {
		t.Fatal(err)
	}
	// Runs created but not yet printed when the kill came may be there too.
	if len(queued) < len(acked["more"]) {
		t.Errorf("%d queued runs, %d acknowledged", len(queued), len(acked["more"]))
	}
}
