package jsqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
// Each script with a limit N has N tokens, the messages of the subjects
// slots.<Token(script)>.1 to .N of the SLOTS stream (one message per
// subject at most), and one durable pull consumer of them, shared by every
// host, whose MaxAckPending is N: the server delivers at most N of them
// unacknowledged. A token so delivered is one slot; a host holds it while
// the run runs, sends InProgress every AckWait/5 (keep), and naks it when
// the run ends, which hands it to the next fetch at once: a run costs one
// fetch and one nak, and the tokens are made once (ensureTokens), by
// whichever host comes first.
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

// subject is the SLOTS stream's subject of script's token k ("*": all).
func (s *slots) subject(script, k string) string {
	return s.q.o.Names.Subject("slots", fleet.Token(script), k)
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
		FilterSubject: s.subject(script, "*"),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.q.o.AckWait,
		MaxAckPending: n,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("the consumer of the slots of %q: %w", script, err)
	}
	if err := s.ensureTokens(ctx, script, n); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.consumers[script] = &slotConsumer{c: c, limit: n}
	s.mu.Unlock()
	return c, nil
}

// ensureTokens makes script's tokens 1 to n that the stream does not hold
// (a token held by a host is in the stream too), and drops those above n
// (a limit lowered by a reload). Hosts doing it at once make each once:
// the stream refuses a second message on a token's subject.
func (s *slots) ensureTokens(ctx context.Context, script string, n int) error {
	for k := 1; k <= n; k++ {
		_, err := s.q.o.JS.Publish(ctx, s.subject(script, strconv.Itoa(k)), []byte(s.q.o.Host))
		if err != nil && !strings.Contains(err.Error(), "maximum messages per subject exceeded") {
			return fmt.Errorf("making the slots of %q: %w", script, err)
		}
	}
	st, err := s.q.o.JS.Stream(ctx, s.stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.subject(script, "*")))
	if err != nil {
		return err
	}
	for subj := range info.State.Subjects {
		k, err := strconv.Atoi(subj[strings.LastIndexByte(subj, '.')+1:])
		if err == nil && k > n {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
				return err
			}
		}
	}
	return nil
}

// acquire returns a token of script's -s of n, or nil when n are held
// across the fleet: one fetch that does not wait. A token given back a
// moment ago by a nak, or whose holder went silent for AckWait, comes at
// once. When the stream has lost tokens (an ack of an older rexec, a
// purge), they are made again.
func (s *slots) acquire(script string, n int) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(s.q.ctx, opWait)
	defer cancel()
	c, err := s.consumer(ctx, script, n)
	if err != nil {
		return nil, err
	}
	tries := fetchTries
	for try := 0; try < tries; try++ {
		m, err := fetch(c)
		if m != nil || err != nil {
			return m, err
		}
		if try == 0 {
			info, err := c.Info(ctx)
			if err != nil {
				return nil, err
			}
			switch {
			case info.NumAckPending >= n:
				// All held, or one given back a moment ago: a nak'd token
				// counts as pending until it is delivered again. A few
				// quick tries tell.
				tries = heldTries
			case info.NumPending == 0:
				if err := s.ensureTokens(ctx, script, n); err != nil {
					return nil, err
				}
			}
		}
		// The consumer learns of a nak or a new token a moment later.
		time.Sleep(time.Millisecond << try)
	}
	return nil, nil
}

// heldTries bounds the fetches when every token looks held: 1+2 ms.
const heldTries = 3

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
// It says whether a token was given back.
func (s *slots) release(id string) bool {
	s.mu.Lock()
	r, ok := s.taken[id]
	delete(s.taken, id)
	s.mu.Unlock()
	if ok {
		s.ack(r.token)
	}
	return ok && r.token != nil
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

// ack gives back token, which frees its slot: a nak, which keeps the
// token in the stream for the next fetch, and a flush, so that another
// host's Ready that follows finds the slot free. A nil token is none. A
// nak that is lost frees the slot after AckWait.
func (s *slots) ack(token jetstream.Msg) {
	if token == nil {
		return
	}
	if !s.q.o.JS.Conn().IsConnected() {
		s.q.quietLog.Warn().Msg("giving back a slot without NATS: it is freed after AckWait")
		return
	}
	if err := token.Nak(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.q.log.Warn().Err(err).Msg("giving back a slot: it is freed after AckWait")
		return
	}
	if err := s.q.o.JS.Conn().FlushTimeout(opWait); err != nil {
		s.q.log.Warn().Err(err).Msg("giving back a slot: not confirmed")
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
