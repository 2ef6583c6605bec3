package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeScriptsFile(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(tab, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a malformed file is refused at start-up with its line number", func(t *testing.T) {
		write("ok /bin/echo ok\n\n-z broken /bin/true\n")
		r := rexec(t, nil, nil, "serve", "-p", "0", "--scripts", tab)
		if r.code != exitUsage || !strings.Contains(r.stderr, tab+":3:") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("--scripts-only needs --scripts", func(t *testing.T) {
		r := rexec(t, nil, nil, "serve", "-p", "0", "--scripts-only")
		if r.code != exitUsage || !strings.Contains(r.stderr, "--scripts") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("SIGHUP reloads, and keeps the old file when the new one is bad", func(t *testing.T) {
		write("first /bin/echo one\n")
		srv, url := serverProcess(t, "--scripts", tab, "--scripts-only")
		run := func(script string) result {
			return rexec(t, nil, nil, "run", "--url", url, "--alias", "x", "--script", script)
		}
		if r := run("first"); r.code != 0 || r.stdout != "one\n" {
			t.Fatalf("first: %+v", r)
		}
		if r := rexec(t, nil, nil, "run", "--url", url, "--", "true"); r.code != 3 || !strings.Contains(r.stderr, "--scripts-only") {
			t.Fatalf("ad-hoc command under --scripts-only: %+v", r)
		}

		write("first /bin/echo one\n-z broken\n")
		srv.Process.Signal(syscall.SIGHUP)
		time.Sleep(200 * time.Millisecond)
		if r := run("first"); r.code != 0 || r.stdout != "one\n" {
			t.Fatalf("after a bad reload: %+v", r)
		}

		write("second /bin/echo two\n")
		srv.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := run("second")
			if r.code == 0 && r.stdout == "two\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("second never appeared: %+v", r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r := run("first"); r.code != 4 {
			t.Fatalf("a script removed by the reload still runs: %+v", r)
		}
	})
}
