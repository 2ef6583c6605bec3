package jsfeed

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rexec/rexec/feed"
)

// A window is what Open reads of the stream before it reads on: the last
// events of each kind up to the sequence last, oldest first, and the
// stream's first sequence (first is last+1 when it holds nothing).
type window struct {
	events      []feed.Event
	first, last uint64
}

// fetchBatch is how many events a read of the window asks for at a time.
const fetchBatch = 256

// window reads the last replay+1 events of each kind that the stream holds:
// the hub keeps replay of them, and the one before tells it where its
// window of that kind starts. Each kind is read on its own, from where a
// few counts of the server find about twice as many events of it, so that
// a kind that is rare lately costs no read of all the other's events.
func (f *Feed) window(ctx context.Context, replay int) (window, error) {
	n := uint64(replay) + 1
	kinds := [2]string{f.names.Subject("events", "run", ">"), f.names.Subject("events", "client", ">")}
	info, err := f.stream.Info(ctx)
	if err != nil {
		return window{}, fmt.Errorf("jsfeed: the state of %s: %w", f.name, err)
	}
	if info.State.Msgs == 0 {
		return window{first: info.State.LastSeq + 1, last: info.State.LastSeq}, nil
	}
	var from [2]uint64
	for k, filter := range kinds {
		if from[k], err = f.start(ctx, filter, max(info.State.FirstSeq, 1), info.State.LastSeq, n); err != nil {
			return window{}, err
		}
	}
	// The window ends where the stream ends now, after the counts: from
	// holds at least n events of each kind up to here, or the stream's
	// first.
	if info, err = f.stream.Info(ctx); err != nil {
		return window{}, fmt.Errorf("jsfeed: the state of %s: %w", f.name, err)
	}
	w := window{first: max(info.State.FirstSeq, 1), last: info.State.LastSeq}
	for k, filter := range kinds {
		events, err := f.readKind(ctx, filter, from[k], w.last, int(n))
		if err != nil {
			return window{}, err
		}
		w.events = append(w.events, events...)
	}
	slices.SortFunc(w.events, func(a, b feed.Event) int { return cmp.Compare(a.ID, b.ID) })
	return w, nil
}

// start is a sequence from which the stream holds at least n events of
// filter, and not many more than 2n when a few counts find one; first when
// the stream holds no more than 2n of them. The counts are made from the
// end (n, 2n, 4n... events back) and then by halving.
func (f *Feed) start(ctx context.Context, filter string, first, last, n uint64) (uint64, error) {
	total, err := f.count(ctx, filter, first)
	if err != nil || total <= 2*n {
		return first, err
	}
	lo, hi := first, last+1 // count(lo) >= n; count(hi) < n, as far as known
	for span := n; span < last-first+1; span *= 2 {
		s := last - span + 1
		c, err := f.count(ctx, filter, s)
		if err != nil {
			return first, err
		}
		if c >= n {
			if c <= 2*n {
				return s, nil
			}
			lo = s
			break
		}
		hi = s
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		c, err := f.count(ctx, filter, mid)
		switch {
		case err != nil:
			return first, err
		case c < n:
			hi = mid
		case c <= 2*n:
			return mid, nil
		default:
			lo = mid
		}
	}
	return lo, nil
}

// count is how many events of filter the stream holds from the sequence
// from on: the pending count of a consumer made to start there.
func (f *Feed) count(ctx context.Context, filter string, from uint64) (uint64, error) {
	c, err := f.reader(ctx, filter, from)
	if err != nil {
		return 0, err
	}
	defer f.deleteReader(c)
	return c.CachedInfo().NumPending, nil
}

// readKind is the last keep events of filter from the sequence from up to
// last, oldest first. A message that is no event is skipped, and logged.
// It reads every event from from on: start keeps them few.
func (f *Feed) readKind(ctx context.Context, filter string, from, last uint64, keep int) ([]feed.Event, error) {
	c, err := f.reader(ctx, filter, from)
	if err != nil {
		return nil, err
	}
	defer f.deleteReader(c)
	var events []feed.Event
	for left := c.CachedInfo().NumPending; left > 0; {
		batch, err := c.Fetch(int(min(left, fetchBatch)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("jsfeed: reading the window of %s: %w", filter, err)
		}
		got := 0
		for m := range batch.Messages() { // to its end: the fetch ends with it
			got++
			md, err := m.Metadata()
			if err != nil || left == 0 || md.Sequence.Stream > last {
				left = 0
				continue
			}
			if e, err := f.decode(m.Subject(), m.Data()); err != nil {
				f.log.Warn().Err(err).Uint64("seq", md.Sequence.Stream).Msg("skipped a message of the event stream")
			} else {
				e.ID = md.Sequence.Stream
				events = append(events, e)
			}
			left = md.NumPending
			if md.Sequence.Stream == last {
				left = 0
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("jsfeed: reading the window of %s: %w", filter, err)
		}
		if got == 0 {
			break // the stream no longer holds what was counted
		}
	}
	return events[max(len(events)-keep, 0):], nil
}

// reader makes a consumer of the events of filter from the sequence from
// on, for Open alone: it acknowledges nothing, lives in memory, and the
// server removes it if Open does not.
func (f *Feed) reader(ctx context.Context, filter string, from uint64) (jetstream.Consumer, error) {
	c, err := f.js.CreateConsumer(ctx, f.name, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("jsfeed: a consumer of %s: %w", filter, err)
	}
	return c, nil
}

// deleteReader deletes a consumer that reader made.
func (f *Feed) deleteReader(c jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	name := c.CachedInfo().Name
	if err := f.js.DeleteConsumer(ctx, f.name, name); err != nil {
		f.log.Debug().Err(err).Str("consumer", name).Msg("deleting a consumer of Open (the server ends it when idle)")
	}
}
