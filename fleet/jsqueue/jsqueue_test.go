package jsqueue_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testnats.LeakOptions()...) }

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

// mustOpen opens a queue, closed at the end of the test. o.Logger is the
// caller's: logger(t) writes to the test's log.
func mustOpen(t *testing.T, o jsqueue.Options) *jsqueue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := jsqueue.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
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
		return mustOpen(t, jsqueue.Options{JS: js, Names: newNames(t), Host: "h", Logger: logger(t)})
	})
}

// TestOpenReadsTheLog: a queue opened later (a host that joins, or one
// that restarts) reads every change made before, and its Ready sees them.
func TestOpenReadsTheLog(t *testing.T) {
	srv := testnats.Start(t)
	o := jsqueue.Options{Names: newNames(t)}
	a := openHosts(t, srv, o, "a")[0].q
	for i := range 50 {
		a.Add("s", fmt.Sprint(i), time.Time{})
	}
	a.Remove("7")
	a.AddFront("s", "first", time.Time{})
	if id, ok := a.Ready("s", time.Now()); !ok || id != "first" {
		t.Fatalf("Ready = %q, %v", id, ok)
	}
	a.Done("first")
	b := openHosts(t, srv, o, "b")[0].q
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
