package jsfeed

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sent is an event sent to the stream, waiting for its acknowledgement.
type sent struct {
	ack     jetstream.PubAckFuture
	subject string
	by      time.Time // counted unconfirmed when not acknowledged by then
}

// publish is the publisher goroutine: it sends the events queued in out to
// the stream, one after the other so that the stream stores each
// publisher's events in its order, without waiting for the server between
// them; it keeps at most cap(out) sent and waiting for their
// acknowledgement (out then fills, and Publish drops). When closing is
// closed it sends what out holds and waits for the acknowledgements, up
// to flushWait, and ends.
func (f *Feed) publish() {
	defer close(f.published)
	var waiting []sent // oldest first
	timer := time.NewTimer(ackWait)
	defer timer.Stop()
	closing := f.closing
	var flushed <-chan time.Time // the end of flushWait, once closing
	for {
		if closing == nil && len(f.out) == 0 && len(waiting) == 0 {
			return
		}
		in := f.out
		if len(waiting) >= cap(f.out) {
			in = nil
		}
		var ok <-chan *jetstream.PubAck
		var failed <-chan error
		var late <-chan time.Time
		if len(waiting) > 0 {
			ok, failed = waiting[0].ack.Ok(), waiting[0].ack.Err()
			timer.Reset(time.Until(waiting[0].by))
			late = timer.C
		}
		select {
		case <-closing:
			closing, flushed = nil, time.After(flushWait)
		case <-flushed:
			unsent := len(f.out)
			f.stats.dropped.Add(uint64(unsent))
			f.stats.unconfirmed.Add(uint64(len(waiting)))
			f.log.Warn().Int("unsent", unsent).Int("unconfirmed", len(waiting)).Dur("waited", flushWait).
				Msg("closing: events not published in time")
			return
		case m := <-in:
			if s, ok := f.send(m); ok {
				waiting = append(waiting, s)
			}
		case <-ok:
			f.stats.published.Add(1)
			waiting = waiting[1:]
		case err := <-failed:
			n := f.stats.unconfirmed.Add(1)
			f.ackLog.Warn().Err(err).Str("subject", waiting[0].subject).Uint64("unconfirmed", n).
				Msg("an event was not confirmed: it may be lost")
			waiting = waiting[1:]
		case <-late:
			n := f.stats.unconfirmed.Add(1)
			f.ackLog.Warn().Str("subject", waiting[0].subject).Dur("waited", ackWait).Uint64("unconfirmed", n).
				Msg("an event was not confirmed in time: it may be lost")
			waiting = waiting[1:]
		}
	}
}

// send sends m to the stream without waiting for the server. It never
// retries: a retry would put the event after those sent since.
func (f *Feed) send(m *nats.Msg) (sent, bool) {
	ack, err := f.js.PublishMsgAsync(m, jetstream.WithExpectStream(f.name), jetstream.WithRetryAttempts(0))
	if err != nil {
		n := f.stats.dropped.Add(1)
		f.dropLog.Warn().Err(err).Str("subject", m.Subject).Uint64("dropped", n).Msg("event not sent")
		return sent{}, false
	}
	return sent{ack: ack, subject: m.Subject, by: time.Now().Add(ackWait)}, true
}
