//go:build linux

package main

import (
	"encoding/json"
	"net/http"
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
	t.Run("--status-dir needs --scripts", func(t *testing.T) {
		r := rexec(t, nil, nil, "serve", "-p", "0", "--status-dir", t.TempDir())
		if r.code != exitUsage || !strings.Contains(r.stderr, "--status-dir needs --scripts") {
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

// TestDetachedRunsSurviveKill9: after a kill -9 of rexec, the next start marks
// the run that was running as interrupted and runs the one that was queued;
// nothing acknowledged is lost.
func TestDetachedRunsSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "exectab")
	os.WriteFile(tab, []byte("-s=1 job /bin/sh -c \"echo started; sleep @@1; echo finished\"\n"), 0o644)
	data := filepath.Join(dir, "data")
	args := []string{"--scripts", tab, "--data-dir", data}

	srv, url := serverProcess(t, args...)
	submit := func(url, arg string) string {
		t.Helper()
		resp, err := http.Post(url+"/scripts/v1/run", "application/json", strings.NewReader(`{"name":"job","args":["`+arg+`"]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a struct {
			Success bool
			ID      string
		}
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || !a.Success {
			t.Fatalf("run: %d %v", resp.StatusCode, err)
		}
		return a.ID
	}
	status := func(url, id string) map[string]any {
		t.Helper()
		resp, err := http.Get(url + "/scripts/v1/status/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a map[string]any
		json.NewDecoder(resp.Body).Decode(&a)
		return a
	}
	wait := func(url, id, state string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			a := status(url, id)
			if a["state"] == state {
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s never %s: %v", id, state, a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := submit(url, "100")
	wait(url, first, "running")
	second := submit(url, "0")
	if a := status(url, second); a["state"] != "queued" {
		t.Fatalf("second: %v", a)
	}
	srv.Process.Kill() // kill -9
	srv.Wait()

	_, url = serverProcess(t, args...)
	if a := status(url, first); a["state"] != "done" || a["ended"] != "interrupted" {
		t.Fatalf("the run that was running: %v", a)
	}
	if a := wait(url, second, "done"); a["ended"] != "exit" || a["exit_code"] != float64(0) {
		t.Fatalf("the run that was queued: %v", a)
	}
}
