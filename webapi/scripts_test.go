package webapi_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/webapi"
)

// exectab builds a catalogue whose scripts run the test binary as the fake
// child named by their -e=TESTCHILD=mode (EXE stands for it).
func exectab(t *testing.T, lines ...string) *atomic.Pointer[catalog.Catalog] {
	return testserver.Exectab(t, lines...)
}

func TestScripts(t *testing.T) {
	scripts := exectab(t,
		"-e=TESTCHILD=args argv EXE fixed @@1 --opt=@@2",
		"-e=TESTCHILD=cat -i upper EXE",
		"-e=TESTCHILD=cat nostdin EXE",
		"-e=TESTCHILD=hang -s=2 limited EXE",
		"-e=TESTCHILD=env -e=GREETING=hi -d=/tmp where EXE",
		"-n notify @@1",
		"-d=/tmp dir /bin/pwd",
	)
	s := newServer(t, serverOpts{scripts: scripts})

	t.Run("arguments stay literal", func(t *testing.T) {
		resp, out := s.run(t, map[string]any{"alias": "a", "script": "argv", "args": []string{"; rm -rf /", "$(id) `id`"}})
		wantStatus(t, resp, out, 200)
		if want := "\"fixed\"\n\"; rm -rf /\"\n\"--opt=$(id) `id`\"\n"; string(out) != want {
			t.Fatalf("argv %q, want %q", out, want)
		}
	})
	t.Run("environment and directory from the exectab", func(t *testing.T) {
		resp, out := s.run(t, map[string]any{"alias": "w", "script": "where"})
		wantStatus(t, resp, out, 200)
		if !strings.Contains(string(out), "\nGREETING=hi\n") {
			t.Fatalf("env:\n%s", out)
		}
		resp, out = s.run(t, map[string]any{"alias": "d", "script": "dir"})
		if wantStatus(t, resp, out, 200); string(out) != "/tmp\n" {
			t.Fatalf("pwd %q", out)
		}
	})
	t.Run("stdin only with -i", func(t *testing.T) {
		resp, out := s.run(t, map[string]any{"alias": "u", "script": "upper", "stdin": "x\n"})
		if wantStatus(t, resp, out, 200); string(out) != "x\n" {
			t.Fatalf("out %q", out)
		}
		resp, out = s.run(t, map[string]any{"alias": "u", "script": "nostdin", "stdin": "x\n"})
		wantError(t, resp, out, 400, "no stdin")
		// As on /scripts/v1: an empty stdin is none, whatever the script.
		resp, out = s.run(t, map[string]any{"alias": "u", "script": "nostdin", "stdin": ""})
		if wantStatus(t, resp, out, 200); string(out) != "" {
			t.Fatalf("out %q", out)
		}
	})
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		msg    string
	}{
		{"missing argument", map[string]any{"alias": "a", "script": "argv", "args": []string{"one"}}, 400, "missing argument"},
		{"extra argument", map[string]any{"alias": "a", "script": "argv", "args": []string{"1", "2", "3"}}, 400, "too many arguments"},
		{"unknown script", map[string]any{"alias": "a", "script": "nope"}, 404, `"nope"`},
		{"no process", map[string]any{"alias": "a", "script": "notify", "args": []string{"x"}}, 400, "starts no process"},
		{"cmd and script", map[string]any{"alias": "a", "script": "argv", "cmd": "true"}, 400, "exclude each other"},
		{"cwd with script", map[string]any{"alias": "a", "script": "argv", "cwd": "/"}, 400, "cwd"},
		{"envs with script", map[string]any{"alias": "a", "script": "argv", "envs": map[string]string{"A": "b"}}, 400, "envs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := s.run(t, tc.body)
			wantError(t, resp, out, tc.status, tc.msg)
		})
	}
	t.Run("-s limits runs at once", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for i := range 2 {
			resp := s.post(t, ctx, map[string]any{"alias": fmt.Sprint("l", i), "script": "limited"})
			bufio.NewReader(resp.Body).ReadString('\n')
		}
		resp, out := s.run(t, map[string]any{"alias": "l2", "script": "limited"})
		wantError(t, resp, out, 429, "allows 2 at once")
	})
	t.Run("reload takes effect at once", func(t *testing.T) {
		old := scripts.Load()
		defer scripts.Store(old)
		scripts.Store(exectab(t, "-e=TESTCHILD=echo fresh EXE new").Load())
		resp, out := s.run(t, map[string]any{"alias": "f", "script": "fresh"})
		if wantStatus(t, resp, out, 200); string(out) != "new\n" {
			t.Fatalf("out %q", out)
		}
		resp, out = s.run(t, map[string]any{"alias": "a", "script": "argv", "args": []string{"1", "2"}})
		wantError(t, resp, out, 404, "argv")
	})
}

func TestScriptsOnly(t *testing.T) {
	scripts := exectab(t, "-e=TESTCHILD=echo ok EXE fine")
	s := newServer(t, serverOpts{scripts: scripts, cfg: webapi.Config{ScriptsOnly: true}})
	resp, out := s.run(t, fake("a", "echo", "x"))
	wantError(t, resp, out, 403, "--scripts-only")
	resp, out = s.run(t, map[string]any{"alias": "a", "script": "ok"})
	if wantStatus(t, resp, out, 200); string(out) != "fine\n" {
		t.Fatalf("out %q", out)
	}
}

func TestScriptRunsAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	scripts := exectab(t, "-u=nobody who /usr/bin/id -u")
	s := newServer(t, serverOpts{scripts: scripts})
	resp, out := s.run(t, map[string]any{"alias": "who", "script": "who"})
	if wantStatus(t, resp, out, 200); strings.TrimSpace(string(out)) != nobody.Uid {
		t.Fatalf("id -u = %q, want %s", out, nobody.Uid)
	}
}
