package jsqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/internal/testnats"
)

// TestMaxAckPending checks what the slots of a -s rely on JetStream for,
// and measures it: a work-queue stream, a durable pull consumer with
// MaxAckPending 1 and no-wait fetches.
func TestMaxAckPending(t *testing.T) {
	srv := testnats.Start(t)
	_, js := testnats.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	const ackWait = 500 * time.Millisecond
	c, err := js.CreateOrUpdateConsumer(ctx, "W", jetstream.ConsumerConfig{
		Durable: "c", FilterSubject: "w.s", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1, AckWait: ackWait,
	})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() (jetstream.Msg, time.Duration) {
		t.Helper()
		start := time.Now()
		b, err := c.FetchNoWait(1)
		if err != nil {
			t.Fatal(err)
		}
		var got jetstream.Msg
		for m := range b.Messages() {
			got = m
		}
		return got, time.Since(start)
	}
	publish := func() {
		t.Helper()
		if _, err := js.Publish(ctx, "w.s", nil); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() (ackPending int, numPending uint64) {
		t.Helper()
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending, info.NumPending
	}

	m, d := fetch()
	t.Logf("no token in the stream: a no-wait fetch answers in %s", d)
	if m != nil || d > 500*time.Millisecond {
		t.Errorf("no token: got %v after %s", m, d)
	}
	publish()
	held, d := fetch()
	t.Logf("a token in the stream: fetched in %s", d)
	if held == nil {
		t.Fatal("no token fetched")
	}

	// At MaxAckPending, with nothing else in the stream: at once, nothing.
	m, d = fetch()
	t.Logf("at MaxAckPending, the stream empty: a no-wait fetch answers in %s with %v", d, m)
	if m != nil || d > 500*time.Millisecond {
		t.Errorf("at MaxAckPending: got %v after %s", m, d)
	}
	// At MaxAckPending with a spare token in the stream, the holder
	// keeping its token: the server keeps the no-wait request waiting for
	// room, and the client gives up after a second, with nothing.
	stop := make(chan struct{})
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		for {
			select {
			case <-stop:
				return
			case <-time.After(ackWait / 5):
				held.InProgress()
			}
		}
	}()
	publish()
	ap, np := pending()
	m, d = fetch()
	close(stop)
	<-kept
	t.Logf("at MaxAckPending (ack pending %d), a spare token in the stream (%d), the held one kept: a no-wait fetch answers in %s with %v", ap, np, d, m)
	if m != nil || d < 900*time.Millisecond {
		t.Errorf("a spare token beyond MaxAckPending: got %v after %s, want nothing after a second", m, d)
	}
	if ap, _ := pending(); ap != 1 {
		t.Errorf("ack pending %d after InProgress beyond AckWait, want 1", ap)
	}

	// Not kept, the token comes back after AckWait, and counts meanwhile:
	// a fetch then gives it again, not the spare one (a redelivery needs
	// no room).
	time.Sleep(ackWait + 100*time.Millisecond)
	ap, np = pending()
	m, d = fetch()
	t.Logf("after AckWait without news: ack pending %d, %d in the stream; a fetch gives it back in %s", ap, np, d)
	if m == nil {
		t.Fatal("the token did not come back after AckWait")
	}
	if md, _ := m.Metadata(); md.Sequence.Stream != 1 || md.NumDelivered != 2 {
		t.Errorf("came back: stream seq %d delivered %d, want the first token again", md.Sequence.Stream, md.NumDelivered)
	}
	// The first holder's late ack acks it for the second: the server
	// knows no holders, only the message.
	if err := held.Ack(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late ack frees the slot", 2*time.Second, func() bool { ap, _ := pending(); return ap == 0 })
	t.Log("the first holder acks late: the slot is free while the second holder has it")

	// An ack frees the slot: the spare token is given at once.
	m2, d := fetch()
	t.Logf("after the ack, the spare token is fetched in %s", d)
	if m2 == nil {
		t.Error("no token after the ack")
	}
}
