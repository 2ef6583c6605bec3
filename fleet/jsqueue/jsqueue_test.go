package jsqueue_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/detached/queuetest"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jsqueue"
	"github.com/rexec/rexec/internal/testnats"
)

// The embedded servers, the NATS connections and the queues are shut
// down by each test's cleanup: nothing is left to ignore.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fleets numbers the fleets the tests make, so that each queue of the
// conformance suite has streams of its own on the one server.
var fleets atomic.Int64

func newNames(t *testing.T) fleet.Names {
	t.Helper()
	n, err := fleet.NewNames(fmt.Sprintf("t%d", fleets.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func logger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// mustOpen opens a queue, closed at the end of the test.
func mustOpen(t *testing.T, o jsqueue.Options) *jsqueue.Queue {
	t.Helper()
	if o.Logger.GetLevel() == zerolog.TraceLevel { // the zero Logger
		o.Logger = logger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := jsqueue.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

// hosts opens a queue of one fleet for each name, each on a connection of
// its own to srv. A name may carry labels after a colon: "g:gpu,ssd".
func hosts(t *testing.T, srv *server.Server, o jsqueue.Options, names ...string) []*jsqueue.Queue {
	t.Helper()
	if o.Names.Fleet() == "" {
		o.Names = newNames(t)
	}
	var qs []*jsqueue.Queue
	for _, n := range names {
		_, js := testnats.Connect(t, srv)
		o := o
		o.JS = js
		host, labels, ok := strings.Cut(n, ":")
		o.Host = host
		if ok {
			o.Labels = strings.Split(labels, ",")
		}
		qs = append(qs, mustOpen(t, o))
	}
	return qs
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueue runs the conformance suite of detached.Queue, each queue on a
// fleet of its own, on one server.
func TestQueue(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	queuetest.TestQueue(t, func() detached.Queue {
		return mustOpen(t, jsqueue.Options{JS: js, Names: newNames(t), Host: "h"})
	})
}

// TestOpenReadsTheLog: a queue opened later (a host that joins, or one
// that restarts) reads every change made before, and its Ready sees them.
func TestOpenReadsTheLog(t *testing.T) {
	srv := testnats.Start(t)
	o := jsqueue.Options{Names: newNames(t)}
	a := hosts(t, srv, o, "a")[0]
	for i := range 50 {
		a.Add("s", fmt.Sprint(i), time.Time{})
	}
	a.Remove("7")
	a.AddFront("s", "first", time.Time{})
	if id, ok := a.Ready("s", time.Now()); !ok || id != "first" {
		t.Fatalf("Ready = %q, %v", id, ok)
	}
	a.Done("first")
	b := hosts(t, srv, o, "b")[0]
	if got, want := b.Len("s"), 49; got != want {
		t.Fatalf("Len on a host that opened later = %d, want %d", got, want)
	}
	if got := b.Position("8"); got != 8 {
		t.Errorf("Position(8) = %d, want 8", got)
	}
	if id, ok := b.Ready("s", time.Now()); !ok || id != "0" {
		t.Errorf("Ready on b = %q, %v", id, ok)
	}
	b.Done("0")
}
