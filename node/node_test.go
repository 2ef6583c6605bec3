package node_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

func writeExectab(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exectab")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A bad exectab is an error of the configuration, and nothing is left
// running (goleak checks the goroutines at the end).
func TestOpenBadExectab(t *testing.T) {
	n := node.New(node.Config{ScriptsFile: writeExectab(t, "-z bad /bin/true\n"), DataDir: t.TempDir(),
		Web: webapi.Config{Addr: "127.0.0.1:0"}})
	err := n.Open()
	var cerr *node.ConfigError
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "exectab:1:") {
		t.Fatalf("Open: %v, want a ConfigError naming the line", err)
	}
}

// An address already taken fails Open, and what Open started before (the
// broker, the history, the detached runs) is closed again.
func TestOpenAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	n := node.New(node.Config{ScriptsFile: writeExectab(t, "ok /bin/true\n"), DataDir: dir,
		Web: webapi.Config{Addr: ln.Addr().String()}})
	err = n.Open()
	var cerr *node.ConfigError
	if err == nil || errors.As(err, &cerr) {
		t.Fatalf("Open on a taken address: %v", err)
	}
	// The history was closed: another node can open it at once.
	s := testserver.Start(t, node.Config{ScriptsFile: writeExectab(t, "ok /bin/true\n"), DataDir: dir})
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz of the second node: %d", resp.StatusCode)
	}
}

// Reload takes a good file whole and keeps the old one on a bad file.
func TestReload(t *testing.T) {
	p := writeExectab(t, "one /bin/true\n")
	s := testserver.Start(t, node.Config{ScriptsFile: p})
	if _, ok := s.Scripts.Load().Lookup("one"); !ok {
		t.Fatal("script one not loaded")
	}
	os.WriteFile(p, []byte("two /bin/true\n"), 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Scripts.Load().Lookup("two"); !ok {
		t.Fatal("reload did not take the new file")
	}
	os.WriteFile(p, []byte("-z bad /bin/true\n"), 0o600)
	if err := s.Reload(); err == nil {
		t.Fatal("a bad file reloaded")
	}
	if _, ok := s.Scripts.Load().Lookup("two"); !ok {
		t.Fatal("a bad reload lost the scripts in force")
	}
	if !strings.Contains(s.Logs.String(), "exectab reload failed") {
		t.Fatalf("log:\n%s", s.Logs)
	}
	noFile := testserver.Start(t, node.Config{})
	if err := noFile.Reload(); !errors.Is(err, node.ErrNothingToReload) {
		t.Fatalf("reload without a file: %v", err)
	}
}

// Close ends a running stream with its trailers (the broker terminates
// the group), stops listening, and a second Close does nothing.
func TestClose(t *testing.T) {
	s := testserver.Start(t, node.Config{})
	exe, env := testchild.Command("hang")
	name, val, _ := strings.Cut(env, "=")
	body := `{"alias":"h","cmd":"` + exe + `","envs":{"` + name + `":"` + val + `"}}`
	resp, err := http.Post(s.URL+"/process", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	if sig := resp.Trailer.Get("Process-Signal"); sig != "SIGTERM" {
		t.Fatalf("Process-Signal %q after Close, want SIGTERM", sig)
	}
	if resp, err := http.Get(s.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("still listening after Close")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
