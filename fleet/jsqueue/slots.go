package jsqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/fleet"
)

// slots are the tokens of the scripts' -s across the fleet, as this host
// holds them, and the runs this host took and has not given back (Done,
// AddFront).
//
// Each script with a limit has a subject slots.<Token(script)> of the
// SLOTS stream (work-queue retention) and one durable pull consumer of it,
// shared by every host, whose MaxAckPending is the limit: the server
// delivers at most that many of its messages unacknowledged. A message so
// delivered is a token, one slot; a host holds it while the run runs,
// sends InProgress every AckWait/5 (keep), and acks it when the run ends,
// which deletes it. When no token is left in the stream and fewer than the
// limit are held, a host that wants one publishes a new one.
type slots struct {
	q      *Queue
	stream string
	// starved says that a Ready found a due run but no free token since
	// keep last looked: keep then signals Changed.
	starved atomic.Bool

	mu sync.Mutex // guards the fields below
	// consumers are the scripts' consumers with the limit last set.
	consumers map[string]*slotConsumer
	// taken are the runs this host took, by ID, with their token if their
	// script has a limit.
	taken map[string]takenRun
}

type slotConsumer struct {
	c     jetstream.Consumer
	limit int
}

type takenRun struct {
	script string
	target detached.Target
	token  jetstream.Msg // nil without a limit
}

func (s *slots) init(q *Queue, stream string) {
	s.q, s.stream = q, stream
	s.consumers = map[string]*slotConsumer{}
	s.taken = map[string]takenRun{}
}

// subject is the SLOTS stream's subject of script's tokens.
func (s *slots) subject(script string) string {
	return s.q.o.Names.Subject("slots", fleet.Token(script))
}

// consumerName is the durable name of script's consumer.
func consumerName(script string) string { return "slots-" + fleet.Token(script) }

// consumer returns script's consumer, created, or updated when its
// limit is not n.
func (s *slots) consumer(ctx context.Context, script string, n int) (jetstream.Consumer, error) {
	s.mu.Lock()
	sc := s.consumers[script]
	s.mu.Unlock()
	if sc != nil && sc.limit == n {
		return sc.c, nil
	}
	c, err := s.q.o.JS.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
		Durable:       consumerName(script),
		Description:   "rexec: the slots of the -s of " + script + " across the fleet",
		FilterSubject: s.subject(script),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.q.o.AckWait,
		MaxAckPending: n,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("the consumer of the slots of %q: %w", script, err)
	}
	s.mu.Lock()
	s.consumers[script] = &slotConsumer{c: c, limit: n}
	s.mu.Unlock()
	return c, nil
}

// acquire returns a token of script's -s of n, or nil when n are held
// across the fleet. It fetches first: a token in the stream, or one whose
// holder went silent for AckWait, comes at once. When none came and fewer
// than n are held, it adds one and fetches again. The token it adds is
// named (Nats-Msg-Id) by the consumer's state it saw, so that hosts that
// saw the same state at once add one token between them: a token beyond n
// in the stream makes every no-wait fetch wait a second (the server holds
// the request for room, see TestMaxAckPending) while n are held.
func (s *slots) acquire(script string, n int) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(s.q.ctx, opWait)
	defer cancel()
	c, err := s.consumer(ctx, script, n)
	if err != nil {
		return nil, err
	}
	if m, err := fetch(c); m != nil || err != nil {
		return m, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.NumAckPending >= n {
		return nil, nil
	}

	if info.NumPending == 0 {
		id := fmt.Sprintf("%s-%d-%d", fleet.Token(script), info.Delivered.Consumer, info.NumAckPending)
		if _, err := s.q.o.JS.Publish(ctx, s.subject(script), []byte(s.q.o.Host), jetstream.WithMsgID(id)); err != nil {
			return nil, fmt.Errorf("adding a token: %w", err)
		}
	}
	// A no-wait fetch right after the publish misses the token now and
	// then (7 in 500 measured): the consumer learns of it a moment later.
	// A fetch that waits would be worse: its request stays on the server
	// and takes the tokens other hosts add, who then wait in turn.
	for try := range fetchTries {
		if m, err := fetch(c); m != nil || err != nil || try == fetchTries-1 {
			return m, err
		}
		time.Sleep(time.Millisecond << try)
	}
	return nil, nil
}

// fetchTries bounds the no-wait fetches of a token the stream holds:
// they wait 1, 2, 4... ms between them, 63ms in all (a cluster under load
// was seen to miss for more than 7ms).
const fetchTries = 7

// fetch returns the next token of c, if the server gives one at once.
func fetch(c jetstream.Consumer) (jetstream.Msg, error) {
	b, err := c.FetchNoWait(1)
	if err != nil {
		return nil, err
	}
	var got jetstream.Msg
	for m := range b.Messages() {
		got = m
	}
	if err := b.Error(); got == nil && err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return got, nil
}

// took records run id, which this host took, with its token.
func (s *slots) took(id, script string, t detached.Target, token jetstream.Msg) {
	s.mu.Lock()
	old := s.taken[id]
	s.taken[id] = takenRun{script: script, target: t, token: token}
	s.mu.Unlock()
	s.ack(old.token) // not given back before it was taken again
}

// targetOf is the target of run id, which this host took.
func (s *slots) targetOf(id string) (detached.Target, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.taken[id]
	return r.target, ok
}

// release forgets run id, which this host took, and gives back its token.
func (s *slots) release(id string) {
	s.mu.Lock()
	r, ok := s.taken[id]
	delete(s.taken, id)
	s.mu.Unlock()
	if ok {
		s.ack(r.token)
	}
}

// releaseAll gives back every token this host holds (Close).
func (s *slots) releaseAll() {
	s.mu.Lock()
	taken := s.taken
	s.taken = map[string]takenRun{}
	s.mu.Unlock()
	for _, r := range taken {
		s.ack(r.token)
	}
}

// ack gives back token, which frees its slot, and returns once the
// server has taken it (or after opWait): another host's Ready that
// follows finds the slot free. A nil token is none. An ack that is lost
// frees the slot after AckWait.
func (s *slots) ack(token jetstream.Msg) {
	if token == nil {
		return
	}
	if !s.q.o.JS.Conn().IsConnected() {
		s.q.quietLog.Warn().Msg("giving back a slot without NATS: it is freed after AckWait")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opWait)
	defer cancel()
	if err := token.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.q.log.Warn().Err(err).Msg("giving back a slot: it is freed after AckWait")
	}
}

// held are the tokens this host holds.
func (s *slots) held() []jetstream.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []jetstream.Msg
	for _, r := range s.taken {
		if r.token != nil {
			ms = append(ms, r.token)
		}
	}
	return ms
}

// keep runs until Close: every AckWait/5 it tells the server that this
// host still holds its tokens, and signals Changed when a Ready found no
// free token since the last time.
func (q *Queue) keep() {
	defer q.bg.Done()
	t := time.NewTicker(q.o.AckWait / 5)
	defer t.Stop()
	for {
		select {
		case <-q.quit:
			return
		case <-t.C:
		}
		for _, m := range q.slots.held() {
			if err := m.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				q.quietLog.Warn().Err(err).Msg("keeping a slot: it is freed after AckWait if this goes on")
			}
		}
		if q.slots.starved.Swap(false) {
			q.signal()
		}
	}
}
