package contract_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testhttp"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// A server of the walk: its URL, and its data directory (with scripts).
type walkServer struct {
	url, dir string
}

// newDetachedNode starts a node with nc and the exectab lines (EXE: the
// test binary), with a short scheduling tick and busy timeout.
func newDetachedNode(t *testing.T, nc node.Config, lines ...string) *walkServer {
	t.Helper()
	nc.Scripts = testserver.Exectab(t, lines...)
	nc.Detached.Tick = 50 * time.Millisecond
	nc.Store.MaxOutput = 1 << 20
	nc.Store.BusyTimeout = 300 * time.Millisecond
	nc.EventReplay, nc.EventQueue = 100, 64
	nc.Broker.Child.KillGrace = time.Second
	n := testserver.Start(t, nc)
	return &walkServer{url: n.URL, dir: n.Store.Dir()}
}

// newDetachedServer is newDetachedNode without a token, its data in dir.
func newDetachedServer(t *testing.T, dir string, lines ...string) *walkServer {
	return newDetachedNode(t, node.Config{DataDir: dir}, lines...)
}

// newBareServer is a node without scripts and without a token that runs
// at most maxProcs processes.
func newBareServer(t *testing.T, maxProcs int) *walkServer {
	n := testserver.Start(t, node.Config{Web: webapi.Config{}, Broker: broker.Options{MaxProcs: maxProcs}})
	return &walkServer{url: n.URL}
}

// fake is a POST /process body that runs the test binary as mode.
func fake(alias, mode string, args ...string) map[string]any {
	path, env := testchild.Command(mode)
	name, val, _ := strings.Cut(env, "=")
	return map[string]any{"alias": alias, "cmd": path, "args": args, "envs": map[string]string{name: val}}
}

// request sends method path to base with the headers given as pairs and
// returns the status, the headers and the body.
func request(t *testing.T, base, method, path, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	return testhttp.Request(t, base, method, path, body, header...)
}

func dialRaw(t *testing.T, url string) *testhttp.Conn { return testhttp.Dial(t, url) }

// newTokenServer is a node with the admin token and nothing else: no
// scripts, no plugins, no console (--no-console).
func newTokenServer(t *testing.T) *walkServer {
	n := testserver.Start(t, node.Config{Web: webapi.Config{Token: adminToken}})
	return &walkServer{url: n.URL}
}
