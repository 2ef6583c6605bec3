package jsoutput

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/store"
)

// followPull is how many messages a follower's consumer asks for at a
// time: at most this many chunks wait in memory for a slow reader.
const followPull = 8

// fastRecheck is the first wait after a writer's end message before the
// follower asks the history whether the run is done: the caller records
// the end right after it closes the writer. The waits double up to
// followRecheck.
const fastRecheck = 20 * time.Millisecond

// FollowOutput implements store.Outputs with an ordered consumer of the
// run's subject, from the message that holds offset. Read returns io.EOF
// once the history says the run is done (or no longer has it) and the
// follower got every message the subject had then: a writer's end message
// does not end the output (another writer may follow), it only makes the
// follower ask the history soon; while nothing comes it asks every
// followRecheck, so the output of a run whose host died, which no end
// message closes, ends when the fleet marks the run done. The setup does
// not depend on ctx: a follower whose ctx ended already returns its cause
// from Read.
func (o *Outputs) FollowOutput(ctx context.Context, id string, offset int64) (io.ReadCloser, error) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.t.op)
	defer cancel()
	r, err := o.run(octx, "follow output", id)
	if err != nil {
		return nil, err
	}
	_, last, seq, err := o.open(octx, "follow output", id, offset)
	if err != nil {
		return nil, err
	}
	subj := o.subject(id)
	cons, err := o.stream.OrderedConsumer(octx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq,
	})
	if err != nil {
		return nil, fmt.Errorf("jsoutput: follow output of %q: %w", id, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(followPull))
	if err != nil {
		o.deleteConsumer(cons)
		return nil, fmt.Errorf("jsoutput: follow output of %q: %w", id, err)
	}
	f := &follower{o: o, id: id, subj: subj, cons: cons, it: it, p: position{pos: offset},
		closed: make(chan struct{}), log: o.log.With().Str("run", id).Logger()}
	if r.State == store.StateDone {
		f.complete(last)
	}
	f.ctx, f.cancel = context.WithCancelCause(ctx)
	// An iterator stuck in re-creating its consumer (a server away) does
	// not see the context of Next: stopping it ends that.
	f.stopAfter = context.AfterFunc(f.ctx, it.Stop)
	return f, nil
}

// follower is a reader of FollowOutput. Read and Close may be called from
// different goroutines: Close ends a Read that waits, with os.ErrClosed.
type follower struct {
	o         *Outputs
	id, subj  string
	cons      jetstream.Consumer
	it        jetstream.MessagesContext
	log       zerolog.Logger
	ctx       context.Context // the caller's, also ended by Close
	cancel    context.CancelCauseFunc
	stopAfter func() bool
	closed    chan struct{}
	closeOnce sync.Once

	// Read's own: Read is not called concurrently.
	p       position
	seen    uint64        // the stream sequence of the last message taken
	endSeen bool          // the last message taken is a writer's end message
	recheck time.Duration // the next wait for a message before asking the history
	done    bool          // the run is done: the output ends at until
	until   uint64        // the subject's last message when the run was seen done; 0: none
}

// complete records that the run is done and last (nil: none) is the
// subject's last message: the output ends there.
func (f *follower) complete(last *jetstream.RawStreamMsg) {
	f.done, f.until = true, 0
	if last != nil {
		f.until = last.Sequence
	}
}

func (f *follower) Read(b []byte) (int, error) {
	for {
		select {
		case <-f.closed:
			return 0, os.ErrClosed
		default:
		}
		if len(f.p.cur) > 0 {
			return f.p.read(b), nil
		}
		if f.done && f.seen >= f.until {
			return 0, io.EOF
		}
		if f.ctx.Err() != nil {
			return 0, context.Cause(f.ctx)
		}
		wait := followRecheck
		if f.endSeen && !f.done {
			wait = f.recheck
			f.recheck = min(2*f.recheck, followRecheck)
		}
		nctx, cancel := context.WithTimeout(f.ctx, wait)
		m, err := f.it.Next(jetstream.NextContext(nctx))
		cancel()
		switch {
		case err == nil:
			if err := f.take(m); err != nil {
				return 0, err
			}
		case f.ctx.Err() != nil:
			select {
			case <-f.closed:
				return 0, os.ErrClosed
			default:
				return 0, context.Cause(f.ctx)
			}
		case errors.Is(err, context.DeadlineExceeded):
			f.check()
		default:
			return 0, fmt.Errorf("jsoutput: follow output of %q: %w", f.id, err)
		}
	}
}

// take adds message m to what Read returns.
func (f *follower) take(m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("jsoutput: follow output of %q: %w", f.id, err)
	}
	f.seen = meta.Sequence.Stream
	if err := takeMsg(&f.p, m.Headers(), m.Data()); err != nil {
		return fmt.Errorf("jsoutput: follow output of %q: message %d: %w", f.id, f.seen, err)
	}
	f.endSeen = m.Headers().Get(hdrEnd) != ""
	if f.endSeen {
		f.recheck = fastRecheck
	}
	return nil
}

// check asks the history whether the run is done, and if it is, where
// its output ends. A history or stream that does not answer is asked
// again at the next wait.
func (f *follower) check() {
	ctx, cancel := context.WithTimeout(f.ctx, f.o.t.op)
	defer cancel()
	r, err := f.o.history.Get(ctx, f.id)
	switch {
	case errors.Is(err, store.ErrNotFound): // deleted: nothing more will come
	case err != nil:
		f.log.Debug().Err(err).Msg("following an output: the history did not say whether the run is done")
		return
	case r.State != store.StateDone:
		return
	}
	last, err := f.o.last(ctx, f.subj)
	if err != nil {
		f.log.Debug().Err(err).Msg("following an output: the stream did not say where it ends")
		return
	}
	f.complete(last)
}

// Close stops the consumer and deletes it from the server.
func (f *follower) Close() error {
	f.closeOnce.Do(func() {
		close(f.closed)
		f.stopAfter()
		f.cancel(os.ErrClosed)
		f.it.Stop()
		f.o.deleteConsumer(f.cons)
	})
	return nil
}

// deleteConsumer deletes an ordered consumer's current consumer from the
// server, which would otherwise keep it until its inactive threshold.
func (o *Outputs) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := o.opContext()
	defer cancel()
	err := o.stream.DeleteConsumer(ctx, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		o.log.Debug().Err(err).Str("consumer", info.Name).Msg("deleting a follower's consumer: the server drops it when idle")
	}
}
