// Package testserver starts whole rexec servers (nodes) for tests: on
// 127.0.0.1:0, logging into a buffer the test can read, with a data
// directory of the test's own, and shut down when the test ends. Every
// package's tests use it, so the wiring is the node's, as in production.
package testserver

import (
	"bytes"
	"context"
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexec/rexec/catalog"
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

// Exectab is a catalogue of lines, in which EXE stands for the test binary
// (a fake child, by the -e=TESTCHILD=mode of its line), to give a node as
// its Scripts.
func Exectab(t testing.TB, lines ...string) *atomic.Pointer[catalog.Catalog] {
	t.Helper()
	exe, _ := testchild.Command("")
	text := strings.ReplaceAll(strings.Join(lines, "\n"), "EXE", "'"+exe+"'")
	cat, err := catalog.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	var p atomic.Pointer[catalog.Catalog]
	p.Store(cat)
	return &p
}

// LockHistory takes the write lock of the history database in dir, as
// another process (the sqlite3 shell, a backup) would; unlock gives it
// back, and the test's end does if unlock was not called.
func LockHistory(t testing.TB, dir string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rexec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() { once.Do(func() { conn.ExecContext(context.Background(), "ROLLBACK") }) }
	t.Cleanup(unlock)
	return unlock
}
