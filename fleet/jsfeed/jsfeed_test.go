package jsfeed_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/feed/feedtest"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jsfeed"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// The embedded servers and the NATS connections are shut down by each
// test's cleanup: nothing is left to ignore.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testnats.LeakOptions()...) }

// fleets numbers the fleets the tests make, so that each feed of the
// conformance suite has a stream of its own on the one server.
var fleets atomic.Int64

// newNames are the names of a new fleet.
func newNames(t *testing.T) fleet.Names {
	t.Helper()
	n, err := fleet.NewNames(fmt.Sprintf("t%d", fleets.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logger writes the feed's warnings and errors to the test's log.
func logger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// mustOpen opens a feed, logging to the test, closed at the end of the
// test.
func mustOpen(t *testing.T, o jsfeed.Options) *jsfeed.Feed {
	t.Helper()
	o.Logger = logger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := jsfeed.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// TestFeed runs the conformance suite of feed.Feed, each feed on a stream
// of its own, on one server.
func TestFeed(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	feedtest.TestFeed(t, func(t *testing.T, replay, queue int) feed.Feed {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f, err := jsfeed.Open(ctx, jsfeed.Options{JS: js, Names: newNames(t), Replay: replay, Queue: queue, Logger: logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return f // the suite closes it
	})
}

// everything is every topic.
var everything = []feed.Topic{feed.Script(""), feed.ClientEvents(feed.AllClientEvents)}

// recv is s's next event, which must come soon.
func recv(t *testing.T, s feed.Subscription) feed.Event {
	t.Helper()
	select {
	case e := <-s.Events():
		return e
	case <-s.Done():
		t.Fatalf("the subscription ended: %v", s.Err())
	case <-time.After(feedtest.Patience):
		t.Fatalf("no event within %v", feedtest.Patience)
	}
	return feed.Event{}
}

// recvN is s's next n events.
func recvN(t *testing.T, s feed.Subscription, n int) []feed.Event {
	t.Helper()
	events := make([]feed.Event, n)
	for i := range events {
		events[i] = recv(t, s)
	}
	return events
}

// none checks that s gets nothing for a while.
func none(t *testing.T, s feed.Subscription) {
	t.Helper()
	select {
	case e := <-s.Events():
		t.Fatalf("unexpected event %+v", e)
	case <-s.Done():
		t.Fatalf("the subscription ended: %v", s.Err())
	case <-time.After(feedtest.Quiet):
	}
}

// ids are the IDs of events.
func ids(events []feed.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// TestTwoHosts: two hosts, each with its connection, publish at once; the
// subscribers of each get every event of both, in one order and with the
// same IDs, and each host's events in the order it published them.
func TestTwoHosts(t *testing.T) {
	srv := testnats.Start(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	names := newNames(t)
	a := mustOpen(t, jsfeed.Options{JS: jsA, Names: names, Replay: 100, Queue: 200})
	b := mustOpen(t, jsfeed.Options{JS: jsB, Names: names, Replay: 100, Queue: 200})
	onA, _ := a.Subscribe(0, everything...)
	onB, _ := b.Subscribe(0, everything...)
	defer onA.Close()
	defer onB.Close()
	const each = 40
	done := make(chan struct{})
	for host, f := range map[string]*jsfeed.Feed{"a": a, "b": b} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				if i%4 == 3 {
					f.Publish(feed.Event{Name: "step", State: feed.StateClient, From: host, Data: []byte(fmt.Sprintf(`{"i":%d}`, i))})
				} else {
					f.Publish(feed.Event{Run: host, Name: "backup-" + host, State: fmt.Sprint(i)})
				}
			}
		}()
	}
	<-done
	<-done
	gotA, gotB := recvN(t, onA, 2*each), recvN(t, onB, 2*each)
	if !slices.Equal(ids(gotA), ids(gotB)) {
		t.Fatalf("host a got IDs %v\nhost b got %v", ids(gotA), ids(gotB))
	}
	next := map[string]int{}
	for i, e := range gotA {
		if i > 0 && e.ID <= gotA[i-1].ID {
			t.Errorf("ID %d after %d", e.ID, gotA[i-1].ID)
		}
		if e2 := gotB[i]; e2.Name != e.Name || e2.State != e.State || e2.Run != e.Run || string(e2.Data) != string(e.Data) {
			t.Errorf("event %d: host a got %+v, host b %+v", e.ID, e, e2)
		}
		host, n := e.Run, 0
		if e.State == feed.StateClient {
			host = e.From
			fmt.Sscanf(string(e.Data), `{"i":%d}`, &n)
		} else {
			fmt.Sscan(e.State, &n)
		}
		if n != next[host] {
			t.Errorf("host %s: event %d came where %d was due", host, n, next[host])
		}
		next[host] = n + 1
	}
	none(t, onA)
	none(t, onB)

	// A monitor moves from host a to host b with the last ID it saw there.
	mid := gotA[each].ID
	s, lost := b.Subscribe(mid, everything...)
	defer s.Close()
	if lost {
		t.Errorf("host b: Subscribe(%d) lost, within the window", mid)
	}
	if got := ids(recvN(t, s, each-1)); !slices.Equal(got, ids(gotA[each+1:])) {
		t.Errorf("host b replayed %v, want %v", got, ids(gotA[each+1:]))
	}
	none(t, s)
	if st := a.Stats(); st.Published != each || st.Dropped != 0 || st.Unconfirmed != 0 {
		t.Errorf("host a's stats: %+v", st)
	}
}

// TestReplayOnOtherHostAtOnce: a monitor that resumes on host b with an
// ID it got from host a a moment ago is placed, even when host b has not
// read that far yet: it gets what follows, once, and is not told it lost
// anything.
func TestReplayOnOtherHostAtOnce(t *testing.T) {
	srv := testnats.Start(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	names := newNames(t)
	a := mustOpen(t, jsfeed.Options{JS: jsA, Names: names, Replay: 10, Queue: 10})
	b := mustOpen(t, jsfeed.Options{JS: jsB, Names: names, Replay: 10, Queue: 10})
	onA, _ := a.Subscribe(0, feed.Script(""))
	defer onA.Close()
	for i := range 50 {
		a.Publish(feed.Event{Name: "x", State: fmt.Sprint("first-", i)})
		seen := recv(t, onA)
		s, lost := b.Subscribe(seen.ID, feed.Script(""))
		if lost {
			t.Fatalf("round %d: Subscribe(%d) on host b just after host a gave it: lost", i, seen.ID)
		}
		a.Publish(feed.Event{Name: "x", State: fmt.Sprint("second-", i)})
		if e := recv(t, s); e.State != fmt.Sprint("second-", i) || e.ID <= seen.ID {
			t.Fatalf("round %d: host b's subscriber got %+v after ID %d, want the second event", i, e, seen.ID)
		}
		recv(t, onA)
		s.Close()
	}
}

// publishAll publishes events through f and waits until the stream has
// stored them all.
func publishAll(t *testing.T, f *jsfeed.Feed, events ...feed.Event) {
	t.Helper()
	want := f.Stats().Published + uint64(len(events))
	for i, e := range events {
		f.Publish(e)
		if i%1000 == 999 { // within the feed's Pending
			waitPublished(t, f, want-uint64(len(events)-i-1))
		}
	}
	waitPublished(t, f, want)
}

// waitPublished waits until f has published n events.
func waitPublished(t *testing.T, f *jsfeed.Feed, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(feedtest.Patience); f.Stats().Published < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("published %+v, want %d", f.Stats(), n)
		}
	}
}

// TestLaterHostGetsWindow: a host that opens the feed later reads its
// window from the stream, the last Replay events of each kind, even when
// one kind is rare lately; what it can place and what it says lost are
// what the first host says.
func TestLaterHostGetsWindow(t *testing.T) {
	srv := testnats.Start(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	names := newNames(t)
	const replay = 3
	a := mustOpen(t, jsfeed.Options{JS: jsA, Names: names, Replay: replay, Queue: 3000})
	all, _ := a.Subscribe(0, everything...)
	defer all.Close()
	client := func(i int) feed.Event { return feed.Event{Name: fmt.Sprint("c", i), State: feed.StateClient} }
	runs := func(from, n int) []feed.Event {
		var events []feed.Event
		for i := range n {
			events = append(events, feed.Event{Run: fmt.Sprint(from + i), Name: "x", State: "queued"})
		}
		return events
	}
	// c0 c1, 2000 runs, c2, 500 runs: the client events are far back.
	for _, part := range [][]feed.Event{{client(0), client(1)}, runs(0, 2000), {client(2)}, runs(2000, 500)} {
		publishAll(t, a, part...)
	}
	var c, r []uint64 // IDs of client events, of runs' events
	for range 2503 {
		if e := recv(t, all); e.State == feed.StateClient {
			c = append(c, e.ID)
		} else {
			r = append(r, e.ID)
		}
	}
	start := time.Now()
	b := mustOpen(t, jsfeed.Options{JS: jsB, Names: names, Replay: replay, Queue: 10})
	t.Logf("a host opened on a stream of %d events in %v", len(c)+len(r), time.Since(start))
	for _, f := range []*jsfeed.Feed{a, b} {
		for _, tc := range []struct {
			name   string
			after  uint64
			topics []feed.Topic
			lost   bool
			want   []uint64
		}{
			{"client events from the first", c[0], everything[1:], false, c[1:]},
			{"runs' events from the last but three", r[len(r)-4], everything[:1], false, r[len(r)-3:]},
			{"runs' events from the last but four", r[len(r)-5], everything[:1], true, r[len(r)-3:]},
			{"both from the last but three run", r[len(r)-4], everything, false, r[len(r)-3:]},
			{"both from before c2", c[2] - 1, everything, true, []uint64{c[2], r[len(r)-3], r[len(r)-2], r[len(r)-1]}},
			{"client events from before c2", c[2] - 1, everything[1:], false, c[2:]},
		} {
			s, lost := f.Subscribe(tc.after, tc.topics...)
			if lost != tc.lost {
				t.Errorf("%s: lost %v, want %v", tc.name, lost, tc.lost)
			}
			if got := ids(recvN(t, s, len(tc.want))); !slices.Equal(got, tc.want) {
				t.Errorf("%s: replayed %v, want %v", tc.name, got, tc.want)
			}
			none(t, s)
			s.Close()
		}
	}
	// And it reads on.
	onB, _ := b.Subscribe(0, everything...)
	defer onB.Close()
	a.Publish(client(3))
	if e, e2 := recv(t, onB), recv(t, all); e.Name != "c3" || e.ID != e2.ID {
		t.Errorf("host b got %+v, host a %+v", e, e2)
	}
}

// TestCappedStream: the stream keeps MaxMsgs events; a host that opens on
// it cannot place an ID older than the oldest it keeps.
func TestCappedStream(t *testing.T) {
	srv := testnats.Start(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	names := newNames(t)
	a := mustOpen(t, jsfeed.Options{JS: jsA, Names: names, Replay: 10, Queue: 50, MaxMsgs: 5})
	all, _ := a.Subscribe(0, everything...)
	defer all.Close()
	var got []uint64
	for i := range 8 { // one at a time: a burst would be dropped before host a reads it
		a.Publish(feed.Event{Name: fmt.Sprint("c", i), State: feed.StateClient})
		got = append(got, recv(t, all).ID)
	}
	b := mustOpen(t, jsfeed.Options{JS: jsB, Names: names, Replay: 10, Queue: 50, MaxMsgs: 5})
	// The stream holds the last five: b places the ID before them, not older.
	s, lost := b.Subscribe(got[2], everything...)
	if lost {
		t.Error("the ID before the oldest the stream keeps: lost")
	}
	if r := ids(recvN(t, s, 5)); !slices.Equal(r, got[3:]) {
		t.Errorf("replayed %v, want %v", r, got[3:])
	}
	s.Close()
	if s, lost = b.Subscribe(got[1], everything...); !lost {
		t.Error("an ID older than the stream keeps: not lost")
	}
	s.Close()
	// Host a kept them in its window: it still places it.
	if s, lost = a.Subscribe(got[1], everything...); lost {
		t.Error("host a: an ID its window holds: lost")
	}
	s.Close()
}

// TestOpenChecksOptions: options that cannot work are refused.
func TestOpenChecksOptions(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	for name, o := range map[string]jsfeed.Options{
		"no JS":            {Names: newNames(t)},
		"no names":         {JS: js},
		"negative MaxMsgs": {JS: js, Names: newNames(t), MaxMsgs: -1},
		"negative Pending": {JS: js, Names: newNames(t), Pending: -1},
	} {
		if f, err := jsfeed.Open(context.Background(), o); err == nil {
			f.Close()
			t.Errorf("%s: opened", name)
		}
	}
}

// startServer runs a NATS server with JetStream on 127.0.0.1:port (0: a
// free one), its store in dir, until the end of the test or shutdown.
func startServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("the server did not start within 10s")
	}
	t.Cleanup(func() { shutdown(s) })
	return s
}

func shutdown(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// connect connects to s, retrying at once when the connection is lost;
// the connection is closed at the end of the test.
func connect(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestServerRestart: while the server is down, Publish does not block (it
// drops what does not fit); once the server is back, the feed reads on
// from where it was: the subscribers get the new events, after the old
// ones, none twice.
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, 0, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	_, js := connect(t, srv)
	f, err := jsfeed.Open(context.Background(), jsfeed.Options{JS: js, Names: newNames(t), Replay: 10, Queue: 1000, Pending: 16,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	s, _ := f.Subscribe(0, feed.Script(""))
	defer s.Close()
	f.Publish(feed.Event{Name: "x", State: "before"})
	before := recv(t, s)

	shutdown(srv)
	start := time.Now()
	for i := range 100 {
		f.Publish(feed.Event{Name: "x", State: fmt.Sprint("down-", i)})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Publish took %v while the server was down", d)
	}
	if st := f.Stats(); st.Dropped == 0 {
		t.Errorf("100 events with Pending 16 and the server down: %+v, want some dropped", st)
	}

	startServer(t, port, dir)
	restarted := time.Now()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	prev, down := before.ID, 0
	for i := 0; ; {
		select {
		case <-tick.C: // until one gets through
			f.Publish(feed.Event{Name: "x", State: fmt.Sprint("after-", i)})
			i++
		case e := <-s.Events():
			if e.ID <= prev {
				t.Fatalf("ID %d after %d", e.ID, prev)
			}
			prev = e.ID
			if strings.HasPrefix(e.State, "down-") {
				down++ // sent while the server was down, stored when it came back
			}
			if strings.HasPrefix(e.State, "after-") {
				t.Logf("the feed read on %v after the restart; %d events published while the server was down came too; %+v",
					time.Since(restarted), down, f.Stats())
				return
			}
		case <-s.Done():
			t.Fatalf("the subscription ended: %v", s.Err())
		case <-deadline:
			t.Fatalf("no event after the restart within 30s: %+v", f.Stats())
		}
	}
}

// TestCloseWithServerGone: Close returns in bounded time even with the
// server gone (the consumer may be in the middle of being remade), and the
// subscriptions end with feed.ErrClosed; what the feed left running ends
// with the connection.
func TestCloseWithServerGone(t *testing.T) {
	srv := startServer(t, 0, t.TempDir())
	nc, js := connect(t, srv)
	f, err := jsfeed.Open(context.Background(), jsfeed.Options{JS: js, Names: newNames(t), Pending: 4, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Subscribe(0, feed.Script(""))
	shutdown(srv)
	for range 10 {
		f.Publish(feed.Event{Name: "x"})
	}
	start := time.Now()
	f.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	<-s.Done()
	if !errors.Is(s.Err(), feed.ErrClosed) {
		t.Errorf("the subscription ended with %v, want ErrClosed", s.Err())
	}
	f.Publish(feed.Event{Name: "x"}) // after Close: dropped, not blocked
	nc.Close()
	settle(t)
}

// settle waits until no goroutine but the tests' runs, as goleak sees them.
func settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(feedtest.Patience)
	for {
		err := goleak.Find(testnats.LeakOptions()...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left %v after the connection closed: %v", feedtest.Patience, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWindowOfEachKind: whatever the order of the kinds in the stream, a
// host that opens later has the window of each kind that the host which
// saw every event has: for every ID around the edges of the windows, both
// place it, or say it is lost, alike, and replay the same events.
func TestWindowOfEachKind(t *testing.T) {
	srv := testnats.Start(t)
	_, jsA := testnats.Connect(t, srv)
	_, jsB := testnats.Connect(t, srv)
	const replay = 5
	type block struct {
		client bool
		n      int
	}
	for _, tc := range []struct {
		name   string
		blocks []block
	}{
		{"client events far back", []block{{true, 1000}, {false, 1000}}},
		{"runs' events far back", []block{{false, 1000}, {true, 1000}}},
		{"few client events, far apart", []block{{true, 1}, {false, 700}, {true, 2}, {false, 300}, {true, 3}, {false, 40}}},
		{"bursts", []block{{false, 30}, {true, 50}, {false, 3}, {true, 1}, {false, 600}, {true, 6}, {false, 2}}},
		{"one kind", []block{{false, 1200}}},
		{"fewer than the window", []block{{false, 2}, {true, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names := newNames(t)
			a := mustOpen(t, jsfeed.Options{JS: jsA, Names: names, Replay: replay, Queue: 3000})
			all, _ := a.Subscribe(0, everything...)
			defer all.Close()
			total := 0
			for i, b := range tc.blocks {
				events := make([]feed.Event, b.n)
				for j := range events {
					if b.client {
						events[j] = feed.Event{Name: fmt.Sprint("c", i), State: feed.StateClient}
					} else {
						events[j] = feed.Event{Run: fmt.Sprint(i, "-", j), Name: "x", State: "queued"}
					}
				}
				publishAll(t, a, events...)
				total += b.n
			}
			var kinds [2][]uint64 // IDs of runs' events, of client events
			for range total {
				e := recv(t, all)
				k := 0
				if e.State == feed.StateClient {
					k = 1
				}
				kinds[k] = append(kinds[k], e.ID)
			}
			b := mustOpen(t, jsfeed.Options{JS: jsB, Names: names, Replay: replay, Queue: 3000})
			for k, topics := range [][]feed.Topic{everything[:1], everything[1:], everything} {
				var edges []uint64
				for _, ids := range kinds {
					for i := max(len(ids)-replay-3, 0); i < len(ids); i++ {
						edges = append(edges, ids[i]-1, ids[i])
					}
				}
				for _, after := range edges {
					if after == 0 {
						continue
					}
					sa, lostA := a.Subscribe(after, topics...)
					sb, lostB := b.Subscribe(after, topics...)
					ra, rb := ids(drain(sa)), ids(drain(sb))
					sa.Close()
					sb.Close()
					if lostA != lostB || !slices.Equal(ra, rb) {
						t.Errorf("topics %d, after %d: the host that saw it all: lost %v, replayed %v; the later one: lost %v, replayed %v",
							k, after, lostA, ra, lostB, rb)
					}
				}
			}
		})
	}
}

// drain is what s holds now: what Subscribe replayed.
func drain(s feed.Subscription) []feed.Event {
	var events []feed.Event
	for {
		select {
		case e := <-s.Events():
			events = append(events, e)
		default:
			return events
		}
	}
}

// TestOpenAtOnce: hosts that start together open the feed at the same
// moment: one creates the stream, the others find it, and all read it.
func TestOpenAtOnce(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	const hosts = 4
	feeds := make([]*jsfeed.Feed, hosts)
	errs := make(chan error, hosts)
	for i := range feeds {
		_, js := testnats.Connect(t, srv)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			feeds[i], err = jsfeed.Open(ctx, jsfeed.Options{JS: js, Names: names, Logger: logger(t)})
			errs <- err
		}()
	}
	for range hosts {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, f := range feeds {
		if f != nil {
			t.Cleanup(f.Close)
		}
	}
	if t.Failed() {
		return
	}
	subs := make([]feed.Subscription, hosts)
	for i, f := range feeds {
		subs[i], _ = f.Subscribe(0, feed.Script(""))
		defer subs[i].Close()
	}
	feeds[0].Publish(feed.Event{Name: "x"})
	for _, s := range subs {
		if e := recv(t, s); e.ID != 1 {
			t.Errorf("got %+v, want the first event", e)
		}
	}
}
