package feed_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rexec/rexec/feed"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func next(t *testing.T, s feed.Subscription) feed.Event {
	t.Helper()
	select {
	case e := <-s.Events():
		return e
	default:
		t.Fatal("no event waiting")
		return feed.Event{}
	}
}

func TestFanOutByName(t *testing.T) {
	h := feed.NewHub(10, 10)
	all, _ := h.Subscribe(0, "")
	backup, _ := h.Subscribe(0, "backup")
	none, _ := h.Subscribe(0)
	h.Publish(feed.Event{Name: "backup", State: "queued"})
	h.Publish(feed.Event{Name: "deploy", State: "queued"})
	none.Watch("deploy")
	h.Publish(feed.Event{Name: "deploy", State: "done"})

	first := next(t, all)
	if first.ID == 0 || first.Name != "backup" || first.Time.IsZero() {
		t.Fatalf("all: %+v", first)
	}
	if e := next(t, all); e.ID != first.ID+1 {
		t.Fatalf("all: %+v", e)
	}
	if e := next(t, all); e.ID != first.ID+2 {
		t.Fatalf("all: %+v", e)
	}
	if e := next(t, backup); e.ID != first.ID {
		t.Fatalf("backup: %+v", e)
	}
	if e := next(t, none); e.ID != first.ID+2 || e.State != "done" {
		t.Fatalf("after Watch: %+v", e)
	}
	for _, s := range []feed.Subscription{all, backup, none} {
		if len(s.Events()) != 0 {
			t.Fatal("unexpected event")
		}
		s.Close()
		s.Close() // idempotent
	}
}

// publishN publishes n events and returns their IDs.
func publishN(h *feed.Hub, n int) []uint64 {
	watch, _ := h.Subscribe(0, "")
	defer watch.Close()
	ids := make([]uint64, n)
	for i := range n {
		h.Publish(feed.Event{Name: "x", State: fmt.Sprint(i)})
		ids[i] = (<-watch.Events()).ID
	}
	return ids
}

func TestReplayAfterLastID(t *testing.T) {
	h := feed.NewHub(3, 10)
	ids := publishN(h, 5)
	// Kept: the last 3.
	s, lost := h.Subscribe(ids[2], "")
	if lost {
		t.Fatal("nothing after the third was lost")
	}
	if a, b := next(t, s), next(t, s); a.ID != ids[3] || b.ID != ids[4] {
		t.Fatalf("replayed %d, %d", a.ID, b.ID)
	}
	s.Close()
	s, lost = h.Subscribe(ids[0], "")
	if !lost {
		t.Fatal("the second event is gone: lost should be true")
	}
	if e := next(t, s); e.ID != ids[2] {
		t.Fatalf("first replayed %d", e.ID)
	}
	s.Close()
	// The last ID: nothing lost, nothing to replay.
	s, lost = h.Subscribe(ids[4], "")
	if lost || len(s.Events()) != 0 {
		t.Fatalf("after the last ID: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
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
	s, lost := h.Subscribe(before[2], "")
	if !lost || len(s.Events()) != 2 {
		t.Fatalf("an ID of the earlier life: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
	// From the future: lost, nothing replayed.
	s, lost = h.Subscribe(now[1]+1000, "")
	if !lost || len(s.Events()) != 0 {
		t.Fatalf("an ID not given yet: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
	// Known: not lost.
	s, lost = h.Subscribe(now[0], "")
	if lost || len(s.Events()) != 1 {
		t.Fatalf("a known ID: lost %v, %d replayed", lost, len(s.Events()))
	}
	s.Close()
}

func TestSlowSubscriberIsDroppedOthersGoOn(t *testing.T) {
	h := feed.NewHub(100, 2)
	slow, _ := h.Subscribe(0, "")
	fast, _ := h.Subscribe(0, "")
	for i := range 5 {
		h.Publish(feed.Event{Name: "x"})
		next(t, fast)
		_ = i
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("a subscriber that never reads was not dropped")
	}
	if !errors.Is(slow.Err(), feed.ErrTooSlow) {
		t.Fatalf("reason %v", slow.Err())
	}
	select {
	case <-fast.Done():
		t.Fatal("the fast subscriber was dropped")
	default:
	}
	h.Close()
	<-fast.Done()
	if !errors.Is(fast.Err(), feed.ErrClosed) {
		t.Fatalf("after Close: %v", fast.Err())
	}
}
