// Package testserver starts whole rexec servers (nodes) for tests: on
// 127.0.0.1:0, logging into a buffer the test can read, with a data
// directory of the test's own, and shut down when the test ends. Every
// package's tests use it, so the wiring is the node's, as in production.
package testserver

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
	"github.com/rs/zerolog"
)

// SyncBuffer collects output (log lines) written by several goroutines.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Server is a node started for a test.
type Server struct {
	*node.Node
	URL  string      // http://127.0.0.1:PORT
	Logs *SyncBuffer // its log, at debug level
}

// Start starts a node with cfg, logging at debug level into Logs, closed
// (within 15 s, or the test fails) when the test ends. What cfg leaves zero
// takes test defaults: listen on
// 127.0.0.1:0, a kill grace of 2 s, the test process's environment
// (without REXEC_*, with the race detector's settings for fake children),
// and a data directory under t.TempDir().
func Start(t testing.TB, cfg node.Config) *Server {
	t.Helper()
	logs := &SyncBuffer{}
	cfg.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
	if cfg.Web.Addr == "" {
		cfg.Web.Addr = "127.0.0.1:0"
	}
	if cfg.Broker.Child.KillGrace == 0 {
		cfg.Broker.Child.KillGrace = 2 * time.Second
	}
	if cfg.Env == nil {
		cfg.Env = Env()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	n := node.New(cfg)
	if err := n.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return &Server{Node: n, URL: n.URL(), Logs: logs}
}

// Env is the environment test servers give their children: the test
// process's, without REXEC_* variables, with the race detector's settings.
func Env() []string {
	return append(webapi.ServerEnv(os.Environ()), testchild.RaceEnv)
}
