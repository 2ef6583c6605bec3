package feed_test

import (
	"errors"
	"testing"
	"time"

	"github.com/rexec/rexec/feed"
	"github.com/rexec/rexec/feed/feedtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHub runs the conformance suite of feed.Feed against the single-host
// hub.
func TestHub(t *testing.T) {
	feedtest.TestFeed(t, func(t *testing.T, replay, queue int) feed.Feed {
		return feed.NewHub(replay, queue)
	})
}

// publishN publishes n events and returns their IDs.
func publishN(h *feed.Hub, n int) []uint64 {
	watch, _ := h.Subscribe(0, feed.Script(""))
	defer watch.Close()
	ids := make([]uint64, n)
	for i := range n {
		h.Publish(feed.Event{Name: "x"})
		ids[i] = (<-watch.Events()).ID
	}
	return ids
}

// TestHubSynchronous: the hub hands an event to its subscribers, or drops
// them, before Publish returns; IDs follow each other.
func TestHubSynchronous(t *testing.T) {
	h := feed.NewHub(10, 2)
	defer h.Close()
	s, _ := h.Subscribe(0, feed.Script(""))
	slow, _ := h.Subscribe(0, feed.Script(""))
	h.Publish(feed.Event{Name: "x"})
	h.Publish(feed.Event{Name: "x"})
	if len(s.Events()) != 2 {
		t.Fatalf("%d events waiting after Publish returned, want 2", len(s.Events()))
	}
	if a, b := <-s.Events(), <-s.Events(); b.ID != a.ID+1 {
		t.Errorf("IDs %d, %d: not consecutive", a.ID, b.ID)
	}
	h.Publish(feed.Event{Name: "x"}) // the third: slow's queue of 2 is full
	select {
	case <-slow.Done():
	default:
		t.Fatal("the Publish that overflowed a queue returned before dropping its subscriber")
	}
	if !errors.Is(slow.Err(), feed.ErrTooSlow) {
		t.Errorf("reason %v", slow.Err())
	}
}

// TestHubQueueAndReplayAtLeastOne: sizes below one are taken as one.
func TestHubQueueAndReplayAtLeastOne(t *testing.T) {
	h := feed.NewHub(0, 0)
	defer h.Close()
	ids := publishN(h, 2)
	s, lost := h.Subscribe(ids[0], feed.Script(""))
	if lost || len(s.Events()) != 1 {
		t.Fatalf("replay of 0: lost %v, %d replayed; want the last event kept", lost, len(s.Events()))
	}
	<-s.Events()
	h.Publish(feed.Event{Name: "x"})
	select {
	case <-s.Done():
		t.Fatalf("queue of 0: dropped with %v by one event", s.Err())
	default:
	}
}

// A server's restart must not make an old Last-Event-ID skip events: IDs go
// on growing, and an ID the hub cannot place is lost.
func TestIDsAcrossRestarts(t *testing.T) {
	before := publishN(feed.NewHub(10, 10), 3)
	time.Sleep(time.Millisecond) // a life publishes less than an event a microsecond
	h := feed.NewHub(10, 10)
	now := publishN(h, 2)
	if now[0] <= before[2] {
		t.Fatalf("the new life's first ID %d is not above the old one's last %d", now[0], before[2])
	}
	// From the earlier life: lost, and everything kept is replayed.
	s, lost := h.Subscribe(before[2], feed.Script(""))
	if !lost || len(s.Events()) != 2 {
		t.Fatalf("an ID of the earlier life: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
	// From the future: lost, nothing replayed.
	s, lost = h.Subscribe(now[1]+1000, feed.Script(""))
	if !lost || len(s.Events()) != 0 {
		t.Fatalf("an ID not given yet: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
	// Known: not lost.
	s, lost = h.Subscribe(now[0], feed.Script(""))
	if lost || len(s.Events()) != 1 {
		t.Fatalf("a known ID: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
}

// TestRelay: a relay keeps the IDs of the events delivered to it, which
// may skip positions of the log but never go back; it places IDs from the
// log's first on, and none beyond what it was given.
func TestRelay(t *testing.T) {
	h := feed.NewRelay(2, 10, 5)
	defer h.Close()
	if s, lost := h.Subscribe(4, feed.Script("")); lost || len(s.Events()) != 0 {
		t.Errorf("Subscribe(first-1) of an empty relay: lost %v, %d replayed; want neither", lost, len(s.Events()))
	}
	if _, lost := h.Subscribe(3, feed.Script("")); !lost {
		t.Error("Subscribe(first-2): not lost, though the log no longer holds first-1")
	}
	live, _ := h.Subscribe(0, feed.Script(""), feed.ClientEvents(feed.AllClientEvents))
	for _, e := range []feed.Event{
		{ID: 5, Name: "x"}, {ID: 9, Name: "x"}, {ID: 10, Name: "c", State: feed.StateClient}, {ID: 12, Name: "x"},
	} {
		if !h.Deliver(e) {
			t.Fatalf("Deliver(%d) refused", e.ID)
		}
	}
	if h.Deliver(feed.Event{ID: 11, Name: "x"}) {
		t.Error("Deliver took an ID below the last one")
	}
	for _, want := range []uint64{5, 9, 10, 12} {
		if e := <-live.Events(); e.ID != want {
			t.Errorf("delivered ID %d, want %d", e.ID, want)
		}
	}
	s, lost := h.Subscribe(5, feed.Script(""))
	if lost || len(s.Events()) != 2 {
		t.Errorf("Subscribe(5): lost %v, %d replayed; want 9 and 12", lost, len(s.Events()))
	}
	if _, lost := h.Subscribe(4, feed.Script("")); !lost {
		t.Error("Subscribe(4): not lost, though 5 left the window of runs' events")
	}
	if s, lost := h.Subscribe(4, feed.ClientEvents("c")); lost || len(s.Events()) != 1 {
		t.Errorf("Subscribe(4) of client events: lost %v, %d replayed; want 10", lost, len(s.Events()))
	}
	if _, lost := h.Subscribe(13, feed.Script("")); !lost {
		t.Error("Subscribe(13): not lost, though no event after 12 was delivered")
	}
	h.Close()
	if h.Deliver(feed.Event{ID: 20, Name: "x"}) {
		t.Error("a closed relay took an event")
	}
}
