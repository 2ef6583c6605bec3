package feed_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rexec/rexec/feed"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func next(t *testing.T, s *feed.Sub) feed.Event {
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

	if e := next(t, all); e.ID != 1 || e.Name != "backup" || e.Time.IsZero() {
		t.Fatalf("all: %+v", e)
	}
	if e := next(t, all); e.ID != 2 {
		t.Fatalf("all: %+v", e)
	}
	if e := next(t, all); e.ID != 3 {
		t.Fatalf("all: %+v", e)
	}
	if e := next(t, backup); e.ID != 1 {
		t.Fatalf("backup: %+v", e)
	}
	if e := next(t, none); e.ID != 3 || e.State != "done" {
		t.Fatalf("after Watch: %+v", e)
	}
	for _, s := range []*feed.Sub{all, backup, none} {
		if len(s.Events()) != 0 {
			t.Fatal("unexpected event")
		}
		s.Close()
		s.Close() // idempotent
	}
}

func TestReplayAfterLastID(t *testing.T) {
	h := feed.NewHub(3, 10)
	for i := range 5 {
		h.Publish(feed.Event{Name: "x", State: fmt.Sprint(i)})
	}
	// Kept: 3, 4, 5.
	s, lost := h.Subscribe(3, "")
	if lost {
		t.Fatal("nothing after 3 was lost")
	}
	if a, b := next(t, s), next(t, s); a.ID != 4 || b.ID != 5 {
		t.Fatalf("replayed %d, %d", a.ID, b.ID)
	}
	s.Close()
	s, lost = h.Subscribe(1, "")
	if !lost {
		t.Fatal("event 2 is gone: lost should be true")
	}
	if e := next(t, s); e.ID != 3 {
		t.Fatalf("first replayed %d", e.ID)
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
