// Package feedtest checks that an implementation of feed.Feed keeps its
// contract: TestFeed runs the subtests that any implementation must pass,
// the single-host *feed.Hub as well as one shared by several hosts. It
// depends on the interfaces, types and errors of package feed only.
//
// Events may reach subscribers after Publish returns (a feed shared by
// several hosts delivers them through a server), so the suite waits for
// what must come, up to Patience, and watches for Quiet for what must not.
package feedtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/store"
)

// Patience bounds the waits for something that must happen (an event
// delivered, a subscriber dropped): reaching it means a bug, not a slow
// machine.
const Patience = 10 * time.Second

// Quiet is how long the suite watches for an event that must not come. It
// only proves that it did not come early.
const Quiet = 100 * time.Millisecond

// TestFeed runs the conformance subtests of feed.Feed and
// feed.Subscription. open returns a new feed, with no events, that keeps
// the last replay events for Subscribe and gives each subscriber a queue
// of queue events. The suite closes every feed it opens, once, at the end
// of the subtest or in the subtests about closing.
func TestFeed(t *testing.T, open func(t *testing.T, replay, queue int) feed.Feed) {
	openOnce := func(t *testing.T, replay, queue int) (feed.Feed, func()) {
		f := open(t, replay, queue)
		var once sync.Once
		closeOnce := func() { once.Do(f.Close) }
		t.Cleanup(func() { bounded(t, "closing the feed", closeOnce) })
		return f, closeOnce
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, func(t *testing.T, replay, queue int) (feed.Feed, func()))
	}{
		{"NewFeed", testNewFeed},
		{"Numbering", testNumbering},
		{"FieldsKept", testFieldsKept},
		{"FanOutByName", testFanOutByName},
		{"SeveralNames", testSeveralNames},
		{"Watch", testWatch},
		{"ClientEvents", testClientEvents},
		{"ReplayClientEvents", testReplayClientEvents},
		{"WindowPerKind", testWindowPerKind},
		{"Replay", testReplay},
		{"ReplayLost", testReplayLost},
		{"ReplayLastID", testReplayLastID},
		{"ReplayFuture", testReplayFuture},
		{"ReplayByName", testReplayByName},
		{"ReplayThenLive", testReplayThenLive},
		{"SlowSubscriberDropped", testSlowSubscriberDropped},
		{"SubscriptionClose", testSubscriptionClose},
		{"Close", testClose},
		{"ConcurrentPublishers", testConcurrentPublishers},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, openOnce) })
	}
}

// bounded calls f, failing t if it has not returned within Patience (a
// deadlock in the implementation) rather than hanging the test.
func bounded(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(Patience):
		t.Errorf("%s blocked for %v", what, Patience)
	}
}

// subscribe subscribes to f, closed at the end of the test.
func subscribe(t *testing.T, f feed.Feed, after uint64, names ...string) (feed.Subscription, bool) {
	t.Helper()
	return subscribeTopics(t, f, after, scripts(names...)...)
}

// scripts are the topics of the scripts names.
func scripts(names ...string) []feed.Topic {
	topics := make([]feed.Topic, len(names))
	for i, n := range names {
		topics[i] = feed.Script(n)
	}
	return topics
}

// subscribeTopics subscribes to topics of f, closed at the end of the test.
func subscribeTopics(t *testing.T, f feed.Feed, after uint64, topics ...feed.Topic) (feed.Subscription, bool) {
	t.Helper()
	s, lost := f.Subscribe(after, topics...)
	if s == nil {
		t.Fatalf("Subscribe(%d, %v) returned no subscription", after, topics)
	}
	t.Cleanup(func() { bounded(t, "Subscription.Close", s.Close) })
	return s, lost
}

// publish publishes e, failing t if Publish blocks: it never does.
func publish(t *testing.T, f feed.Feed, e feed.Event) {
	t.Helper()
	bounded(t, fmt.Sprintf("Publish(%+v)", e), func() { f.Publish(e) })
	if t.Failed() {
		t.FailNow()
	}
}

// recv is s's next event, which must come within Patience.
func recv(t *testing.T, s feed.Subscription) feed.Event {
	t.Helper()
	select {
	case e := <-s.Events():
		return e
	case <-s.Done():
		select {
		case e := <-s.Events(): // queued before the end
			return e
		default:
		}
		t.Fatalf("the subscription ended (%v) before the event came", s.Err())
	case <-time.After(Patience):
		t.Fatalf("no event within %v", Patience)
	}
	return feed.Event{}
}

// recvIDs receives n events from s and returns their IDs.
func recvIDs(t *testing.T, s feed.Subscription, n int) []uint64 {
	t.Helper()
	var ids []uint64
	for range n {
		ids = append(ids, recv(t, s).ID)
	}
	return ids
}

// none checks that s gets no event, and goes on, for a while.
func none(t *testing.T, s feed.Subscription) {
	t.Helper()
	select {
	case e := <-s.Events():
		t.Fatalf("unexpected event %+v", e)
	case <-s.Done():
		t.Fatalf("the subscription ended: %v", s.Err())
	case <-time.After(Quiet):
	}
}

// ended waits until s ends, and checks why.
func ended(t *testing.T, s feed.Subscription, want error) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(Patience):
		t.Fatalf("the subscription did not end within %v; want it ended with %v", Patience, want)
	}
	if err := s.Err(); want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Errorf("ended with %v, want %v", err, want)
	}
}

// going checks that s has not ended.
func going(t *testing.T, s feed.Subscription) {
	t.Helper()
	select {
	case <-s.Done():
		t.Fatalf("the subscription ended: %v", s.Err())
	default:
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err of a subscription that goes on: %v, want nil", err)
	}
}

// publishN publishes n events of script name and returns their IDs.
func publishN(t *testing.T, f feed.Feed, name string, n int) []uint64 {
	t.Helper()
	watch, _ := f.Subscribe(0, feed.Script(name))
	defer watch.Close()
	ids := make([]uint64, n)
	for i := range n {
		publish(t, f, feed.Event{Run: fmt.Sprint("run-", i), Name: name, State: "queued"})
		ids[i] = recv(t, watch).ID
	}
	return ids
}

func testNewFeed(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, lost := subscribe(t, f, 0, "")
	if lost {
		t.Error("Subscribe(0) of a new feed: lost")
	}
	none(t, s)
	// A new feed cannot place any ID.
	s, lost = subscribe(t, f, 12345, "")
	if !lost {
		t.Error("Subscribe(12345) of a new feed: not lost")
	}
	none(t, s)
}

// testNumbering: Publish numbers events, in the order published, whatever
// ID the caller left in them; an event without a time gets one.
func testNumbering(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, _ := subscribe(t, f, 0, "")
	for i := range 5 {
		publish(t, f, feed.Event{ID: 7, Run: fmt.Sprint("run-", i), Name: "x", State: "queued"})
	}
	var prev uint64
	for i := range 5 {
		e := recv(t, s)
		if e.ID == 0 || e.ID <= prev || e.Run != fmt.Sprint("run-", i) {
			t.Errorf("event %d: %+v, after ID %d", i, e, prev)
		}
		// Package detached leaves Time zero: the feed stamps it.
		if e.Time.IsZero() {
			t.Errorf("event %d has no time", i)
		}
		prev = e.ID
	}
	none(t, s)
}

// testFieldsKept: the subscriber gets the event as published.
func testFieldsKept(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, _ := subscribe(t, f, 0, "")
	want := []feed.Event{
		{Run: "r1", Name: "backup", State: "queued"},
		{Run: "r1", Name: "backup", State: "running"},
		{Run: "r1", Name: "backup", State: "progress", Progress: &store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Copy", SubtaskPercent: 50, SubtaskTitle: "ünï"}},
		{Run: "r1", Name: "backup", State: "done", ExitCode: new(int), Ended: "exit", Result: []byte(`{"files":["a"],"ok":true}`)},
		{Run: "r2", Name: "notify", State: "done", Args: []string{"a b", ""}, Signal: "SIGKILL", Ended: "timeout"},
	}
	for _, e := range want {
		publish(t, f, e)
	}
	for i, w := range want {
		got := recv(t, s)
		if got.Run != w.Run || got.Name != w.Name || got.State != w.State || !slices.Equal(got.Args, w.Args) ||
			(got.Progress == nil) != (w.Progress == nil) || got.Progress != nil && *got.Progress != *w.Progress ||
			(got.ExitCode == nil) != (w.ExitCode == nil) || got.ExitCode != nil && *got.ExitCode != *w.ExitCode ||
			got.Signal != w.Signal || got.Ended != w.Ended || string(got.Result) != string(w.Result) {
			t.Errorf("event %d: got %+v, want %+v", i, got, w)
		}
	}
}

// testClientEvents: client events reach the subscribers of their name, or
// of every client event, with their fields; never a subscriber of scripts,
// even of every script, or of a script of the same name. Run events never
// reach a subscriber of client events.
func testClientEvents(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	allScripts, _ := subscribe(t, f, 0, "", "deploy.step")
	allClient, _ := subscribeTopics(t, f, 0, feed.ClientEvents(feed.AllClientEvents))
	step, _ := subscribeTopics(t, f, 0, feed.ClientEvents("deploy.step"))
	later, _ := subscribeTopics(t, f, 0)
	later.Watch(feed.ClientEvents("other"))
	ev := feed.Event{Name: "deploy.step", State: feed.StateClient, Data: []byte(`{"step":2,"of":"ünï"}`),
		From: "plugin:deploy/cmd", Perms: []string{"deploy.watch", "x[y]"}}
	publish(t, f, ev)
	publish(t, f, feed.Event{Run: "r1", Name: "deploy.step", State: "queued"})
	publish(t, f, feed.Event{Name: "other", State: feed.StateClient, Data: []byte(`{}`)})
	for _, s := range []feed.Subscription{allClient, step} {
		got := recv(t, s)
		if got.Name != ev.Name || got.State != feed.StateClient || string(got.Data) != string(ev.Data) ||
			got.From != ev.From || !slices.Equal(got.Perms, ev.Perms) || got.Run != "" || got.ID == 0 || got.Time.IsZero() {
			t.Errorf("client event: got %+v, want %+v", got, ev)
		}
	}
	if e := recv(t, allClient); e.Name != "other" || e.State != feed.StateClient {
		t.Errorf("the subscriber of every client event got %+v, want the event other", e)
	}
	if e := recv(t, later); e.Name != "other" {
		t.Errorf("after Watch(ClientEvents(other)): %+v", e)
	}
	if e := recv(t, allScripts); e.Run != "r1" || e.State != "queued" {
		t.Errorf("the subscriber of every script got %+v, want the run event", e)
	}
	for _, s := range []feed.Subscription{allScripts, allClient, step, later} {
		none(t, s)
	}
}

// testReplayClientEvents: a subscription with an ID replays the client
// events of its topics, in order with the run events it watches.
func testReplayClientEvents(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	all, _ := subscribe(t, f, 0, "")
	all.Watch(feed.ClientEvents(feed.AllClientEvents))
	publish(t, f, feed.Event{Run: "r0", Name: "backup", State: "queued"})
	first := recv(t, all).ID
	publish(t, f, feed.Event{Name: "a", State: feed.StateClient})
	publish(t, f, feed.Event{Run: "r1", Name: "backup", State: "queued"})
	publish(t, f, feed.Event{Name: "b", State: feed.StateClient})
	ids := recvIDs(t, all, 3)
	s, lost := subscribeTopics(t, f, first, feed.ClientEvents("b"), feed.Script("backup"))
	if lost {
		t.Error("lost, within the window")
	}
	if got := recvIDs(t, s, 2); !slices.Equal(got, ids[1:]) {
		t.Errorf("replayed %v, want %v", got, ids[1:])
	}
	none(t, s)
}

// testWindowPerKind: the replay window keeps the last replay events of each
// kind, runs' and client events: a burst of client events does not push
// runs' events out, and lost is about the kinds a subscription watches.
func testWindowPerKind(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 2, 20)
	all, _ := subscribe(t, f, 0, "")
	all.Watch(feed.ClientEvents(feed.AllClientEvents))
	publish(t, f, feed.Event{Run: "r0", Name: "backup", State: "queued"})
	publish(t, f, feed.Event{Run: "r1", Name: "backup", State: "queued"})
	for i := range 5 {
		publish(t, f, feed.Event{Name: fmt.Sprint("c", i), State: feed.StateClient})
	}
	ids := recvIDs(t, all, 7)
	runs, lost := subscribe(t, f, ids[0], "")
	if lost {
		t.Error("runs' events: lost, though none was pushed out")
	}
	if got := recvIDs(t, runs, 1); got[0] != ids[1] {
		t.Errorf("runs' events replayed %v, want %v", got, ids[1:2])
	}
	both, lost := subscribeTopics(t, f, ids[0], feed.Script(""), feed.ClientEvents(feed.AllClientEvents))
	if !lost {
		t.Error("client events: not lost, though three were pushed out")
	}
	if got, want := recvIDs(t, both, 3), []uint64{ids[1], ids[5], ids[6]}; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v, in order", got, want)
	}
	none(t, runs)
	none(t, both)
}

// testFanOutByName: each subscriber gets the events of the scripts it
// watches, "" watching all.
func testFanOutByName(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	all, _ := subscribe(t, f, 0, "")
	backup, _ := subscribe(t, f, 0, "backup")
	deploy, _ := subscribe(t, f, 0, "deploy")
	publish(t, f, feed.Event{Name: "backup", State: "queued"})
	publish(t, f, feed.Event{Name: "deploy", State: "queued"})
	publish(t, f, feed.Event{Name: "deploy", State: "done"})
	publish(t, f, feed.Event{Name: "other", State: "queued"})

	a := []feed.Event{recv(t, all), recv(t, all), recv(t, all), recv(t, all)}
	for i, want := range []string{"backup", "deploy", "deploy", "other"} {
		if a[i].Name != want || i > 0 && a[i].ID <= a[i-1].ID {
			t.Errorf("all: event %d %+v, want one of %s after ID %d", i, a[i], want, a[max(i-1, 0)].ID)
		}
	}
	if e := recv(t, backup); e.ID != a[0].ID {
		t.Errorf("backup: %+v, want ID %d", e, a[0].ID)
	}
	if e1, e2 := recv(t, deploy), recv(t, deploy); e1.ID != a[1].ID || e2.ID != a[2].ID || e2.State != "done" {
		t.Errorf("deploy: %+v, %+v", e1, e2)
	}
	none(t, all)
	none(t, backup)
	none(t, deploy)
}

func testSeveralNames(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, _ := subscribe(t, f, 0, "a", "b")
	for _, name := range []string{"a", "c", "b", "c"} {
		publish(t, f, feed.Event{Name: name})
	}
	if e1, e2 := recv(t, s), recv(t, s); e1.Name != "a" || e2.Name != "b" {
		t.Errorf("got %q, %q; want a, b", e1.Name, e2.Name)
	}
	none(t, s)
}

// testWatch: a subscription watching nothing gets nothing until it
// watches a name; Watch("") watches all.
func testWatch(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, _ := subscribe(t, f, 0)
	publish(t, f, feed.Event{Name: "deploy", State: "queued"})
	none(t, s)
	s.Watch(feed.Script("deploy"))
	publish(t, f, feed.Event{Name: "backup", State: "queued"})
	publish(t, f, feed.Event{Name: "deploy", State: "done"})
	if e := recv(t, s); e.Name != "deploy" || e.State != "done" {
		t.Errorf("after Watch(deploy): %+v", e)
	}
	none(t, s)
	s.Watch(feed.Script("deploy")) // again: no double delivery
	s.Watch(feed.Script(""))
	publish(t, f, feed.Event{Name: "backup", State: "running"})
	publish(t, f, feed.Event{Name: "deploy", State: "running"})
	if e1, e2 := recv(t, s), recv(t, s); e1.Name != "backup" || e2.Name != "deploy" {
		t.Errorf("after Watch(\"\"): %+v, %+v", e1, e2)
	}
	none(t, s)
}

// testReplay: with the last ID it saw, a subscriber gets the events after
// it that the feed still keeps, then the new ones.
func testReplay(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 3, 10)
	ids := publishN(t, f, "x", 5)
	s, lost := subscribe(t, f, ids[2], "")
	if lost {
		t.Error("nothing after the third event was lost")
	}
	if got := recvIDs(t, s, 2); !slices.Equal(got, ids[3:]) {
		t.Errorf("replayed %v, want %v", got, ids[3:])
	}
	none(t, s)
}

// testReplayLost: a subscriber whose last ID is out of the window is told
// that it lost events, and gets the window.
func testReplayLost(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 3, 10)
	ids := publishN(t, f, "x", 5)
	s, lost := subscribe(t, f, ids[0], "")
	if !lost {
		t.Error("the second event is out of the window: lost should be true")
	}
	if got := recvIDs(t, s, 3); !slices.Equal(got, ids[2:]) {
		t.Errorf("replayed %v, want %v", got, ids[2:])
	}
	none(t, s)
}

// testReplayLastID: a subscriber that saw the last event lost nothing and
// gets only new events.
func testReplayLastID(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 3, 10)
	ids := publishN(t, f, "x", 5)
	s, lost := subscribe(t, f, ids[4], "")
	if lost {
		t.Error("after the last ID: lost")
	}
	none(t, s)
	publish(t, f, feed.Event{Name: "x", State: "new"})
	if e := recv(t, s); e.State != "new" || e.ID <= ids[4] {
		t.Errorf("got %+v, want the new event", e)
	}
	// Subscribing without an ID replays nothing.
	s, lost = subscribe(t, f, 0, "")
	if lost {
		t.Error("Subscribe(0): lost")
	}
	none(t, s)
}

// testReplayFuture: an ID the feed has not given yet cannot be placed.
func testReplayFuture(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	ids := publishN(t, f, "x", 3)
	s, lost := subscribe(t, f, ids[2]+1000, "")
	if !lost {
		t.Error("an ID not given yet: not lost")
	}
	none(t, s)
}

// testReplayByName: the replay holds only the events of the names watched.
func testReplayByName(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	all, _ := subscribe(t, f, 0, "")
	for _, name := range []string{"a", "b", "a", "b", "c"} {
		publish(t, f, feed.Event{Name: name})
	}
	ids := recvIDs(t, all, 5)
	s, lost := subscribe(t, f, ids[0], "b", "c")
	if lost {
		t.Error("lost, though the window holds everything")
	}
	if got := recvIDs(t, s, 3); !slices.Equal(got, []uint64{ids[1], ids[3], ids[4]}) {
		t.Errorf("replayed %v, want %v", got, []uint64{ids[1], ids[3], ids[4]})
	}
	none(t, s)
}

// testReplayThenLive: events published after Subscribe come after the
// replayed ones, in order, none twice.
func testReplayThenLive(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	ids := publishN(t, f, "x", 4)
	s, _ := subscribe(t, f, ids[1], "")
	publish(t, f, feed.Event{Name: "x", State: "live"})
	got := recvIDs(t, s, 3)
	if !slices.Equal(got[:2], ids[2:]) || got[2] <= ids[3] {
		t.Errorf("got %v, want %v then a new ID", got, ids[2:])
	}
	none(t, s)
}

// testSlowSubscriberDropped: a subscriber that does not read is dropped
// with ErrTooSlow once its queue is full; the publisher never blocks, and
// the other subscribers go on.
func testSlowSubscriberDropped(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	const queue = 2
	f, _ := open(t, 100, queue)
	slow, _ := subscribe(t, f, 0, "")
	fast, _ := subscribe(t, f, 0, "")
	other, _ := subscribe(t, f, 0, "other") // watches nothing published: never behind
	var prev uint64
	for i := range 10 * queue {
		publish(t, f, feed.Event{Name: "x", State: fmt.Sprint(i)})
		e := recv(t, fast)
		if e.State != fmt.Sprint(i) || e.ID <= prev {
			t.Fatalf("fast subscriber: event %+v, want %d after ID %d", e, i, prev)
		}
		prev = e.ID
	}
	ended(t, slow, feed.ErrTooSlow)
	going(t, fast)
	going(t, other)
	// The feed goes on for the others.
	publish(t, f, feed.Event{Name: "other"})
	if e := recv(t, other); e.Name != "other" {
		t.Errorf("other: %+v", e)
	}
	publish(t, f, feed.Event{Name: "x", State: "after"})
	if e1, e2 := recv(t, fast), recv(t, fast); e1.Name != "other" || e2.State != "after" {
		t.Errorf("fast after the drop: %+v, %+v", e1, e2)
	}
}

// testSubscriptionClose: Close ends a subscription with no error, once;
// the others go on.
func testSubscriptionClose(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, _ := open(t, 10, 10)
	s, _ := subscribe(t, f, 0, "")
	other, _ := subscribe(t, f, 0, "")
	going(t, s)
	s.Close()
	ended(t, s, nil)
	s.Close() // twice: harmless
	ended(t, s, nil)
	for range 20 { // more than its queue: the closed one does not block anyone
		publish(t, f, feed.Event{Name: "x"})
		recv(t, other)
	}
	going(t, other)
	if err := s.Err(); err != nil {
		t.Errorf("Err after Close: %v, want nil", err)
	}
}

// testClose: closing the feed ends every subscription with ErrClosed, and
// those made after; Publish still does not block.
func testClose(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	f, closeFeed := open(t, 10, 10)
	a, _ := subscribe(t, f, 0, "")
	b, _ := subscribe(t, f, 0, "backup")
	c, _ := subscribe(t, f, 0)
	publish(t, f, feed.Event{Name: "x"})
	recv(t, a)
	bounded(t, "closing the feed", closeFeed)
	for _, s := range []feed.Subscription{a, b, c} {
		ended(t, s, feed.ErrClosed)
	}
	late, _ := subscribe(t, f, 0, "")
	ended(t, late, feed.ErrClosed)
	publish(t, f, feed.Event{Name: "x"})
	a.Close() // after the end: harmless, and the reason stays
	if err := a.Err(); !errors.Is(err, feed.ErrClosed) {
		t.Errorf("Err after the feed closed and then the subscription: %v, want ErrClosed", err)
	}
}

// testConcurrentPublishers: events published at once by many runs reach a
// subscriber each once, in the order of their IDs, each publisher's in
// its order, while other subscribers watch and unsubscribe.
func testConcurrentPublishers(t *testing.T, open func(*testing.T, int, int) (feed.Feed, func())) {
	const publishers, each = 8, 50
	f, _ := open(t, 10, publishers*each)
	s, _ := subscribe(t, f, 0, "")
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				f.Publish(feed.Event{Run: fmt.Sprint(p), Name: fmt.Sprint("s", p%3), State: fmt.Sprint(i)})
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range 20 {
				w, _ := f.Subscribe(0)
				w.Watch(feed.Script(fmt.Sprint("s", i%3)))
				w.Close()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(Patience):
		t.Fatalf("concurrent Publish, Subscribe, Watch and Close still going after %v", Patience)
	}
	next := map[string]int{} // by publisher
	var prev uint64
	for range publishers * each {
		e := recv(t, s)
		if e.ID <= prev {
			t.Fatalf("ID %d after %d", e.ID, prev)
		}
		prev = e.ID
		if e.State != fmt.Sprint(next[e.Run]) {
			t.Fatalf("publisher %s: event %s, want %d", e.Run, e.State, next[e.Run])
		}
		next[e.Run]++
	}
	none(t, s)
	going(t, s)
}
