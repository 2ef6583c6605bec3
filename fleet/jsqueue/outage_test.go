package jsqueue_test

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/fleet/jsqueue"
)

// startAt runs a NATS server with JetStream on port, its store in dir, to
// be shut down by the caller or at the test's end.
func startAt(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// syncBuffer is a log a test reads while the queue writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServerAway: while NATS is away, Ready and Remove fail at once, the
// replica still answers, and Add retries until the server is back; an Add
// that cannot publish for retryFor says so in the log.
func TestServerAway(t *testing.T) {
	port, dir := freePorts(t, 1)[0], t.TempDir()
	srv := startAt(t, port, dir)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	q := mustOpen(t, jsqueue.Options{JS: js, Names: newNames(t), Host: "h", Logger: zerolog.New(&log).Level(zerolog.WarnLevel)})
	q.Add("s", "a", time.Time{})

	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "disconnected", 5*time.Second, func() bool { return !nc.IsConnected() })
	start := time.Now()
	if id, ok := q.Ready("s", time.Now()); ok {
		t.Errorf("Ready without NATS took %s", id)
	}
	if q.Remove("a") {
		t.Error("Remove without NATS = true")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ready and Remove without NATS took %s", d)
	}
	if q.Position("a") != 1 || q.Len("s") != 1 {
		t.Errorf("the replica without NATS: Position(a) %d, Len %d", q.Position("a"), q.Len("s"))
	}

	// An Add that cannot publish for retryFor gives up, and says so.
	restore := jsqueue.SetWaits(10*time.Second, 500*time.Millisecond)
	start = time.Now()
	q.Add("s", "lost", time.Time{})
	restore()
	t.Logf("an Add without NATS gave up after %s", time.Since(start))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Add gave up after %s", d)
	}
	if got := log.String(); !bytes.Contains([]byte(got), []byte(`"level":"error"`)) || !bytes.Contains([]byte(got), []byte(`"run":"lost"`)) {
		t.Errorf("the log does not say that run lost may be lost:\n%s", got)
	}

	// An Add while NATS is away returns once it is back and applied.
	added := make(chan time.Duration)
	go func() {
		start := time.Now()
		q.Add("s", "b", time.Time{})
		added <- time.Since(start)
	}()
	time.Sleep(500 * time.Millisecond)
	startAt(t, port, dir)
	select {
	case d := <-added:
		t.Logf("an Add while NATS was away returned after %s", d)
	case <-time.After(20 * time.Second):
		t.Fatal("Add did not return after the server came back")
	}
	// The Add that gave up was in the client's reconnect buffer: it may
	// have been stored when the server came back, before b.
	want := []string{"a", "b"}
	if q.Position("lost") == 2 {
		want = []string{"a", "lost", "b"}
	}
	t.Logf("after the server came back: %v", want)
	for _, want := range want {
		if id, ok := q.Ready("s", time.Now()); !ok || id != want {
			t.Errorf("Ready after the server came back = %q, %v, want %s", id, ok, want)
		}
	}
	if q.Len("s") != 0 {
		t.Errorf("Len = %d at the end", q.Len("s"))
	}
}

// TestTakeForNobody: a take applied after its Ready stopped waiting puts
// its run back at the front: no run is ever lost between the log and a
// Ready that gave up.
func TestTakeForNobody(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{}, "a", "b")
	a, b := hs[0].q, hs[1].q
	const n = 20
	for i := range n {
		a.Add("s", fmt.Sprint(i), time.Time{})
	}
	restore := jsqueue.SetWaits(0, time.Second) // Ready gives up at once
	var got []string
	for range n {
		if id, ok := a.Ready("s", time.Now()); ok {
			got = append(got, id)
		}
	}
	restore()
	t.Logf("with no wait for the apply, Ready took %d of %d runs", len(got), n)
	// Once quiet, both hosts see the same queue: the runs Ready did not
	// return, each once (a take and the front of an orphan leave the
	// length as it was: lengths alone do not say that a host is quiet).
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprint(i))
	}
	var want []string
	for _, id := range ids {
		if !slices.Contains(got, id) {
			want = append(want, id)
		}
	}
	queued := func(q *jsqueue.Queue) []string {
		var ids []string
		for i := range n {
			if q.Position(fmt.Sprint(i)) > 0 {
				ids = append(ids, fmt.Sprint(i))
			}
		}
		return ids
	}
	waitFor(t, "every run taken or queued", 5*time.Second, func() bool {
		return slices.Equal(queued(a), want) && slices.Equal(queued(b), want) && a.Len("s") == len(want) && b.Len("s") == len(want)
	})
	// Ready's order: FIFO, but for the runs put back at the front.
	t.Logf("Ready returned %v", got)
}
