package jsoutput

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/store"
)

// position turns the messages of an output, in order, into its bytes from
// a reader's offset on: it skips what comes before the offset (the start
// of the first message read, or messages read twice) and the data of none.
type position struct {
	pos int64  // the offset just past what was taken
	cur []byte // taken, not yet read
}

// take adds the data of the message at offset off. Data past a gap (off
// beyond pos: the stream's retention dropped the output's start) is taken
// from off on.
func (p *position) take(off int64, data []byte) {
	end := off + int64(len(data))
	if end <= p.pos {
		return
	}
	if off < p.pos {
		data = data[p.pos-off:]
	}
	p.cur, p.pos = data, end
}

// read copies what was taken into b.
func (p *position) read(b []byte) int {
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n
}

// seek returns the stream sequence to read subj from to get the output
// from offset: that of its last message at or before offset (the chunk
// that holds it), found by the offsets the messages carry, in as many
// requests as the logarithm of the stream sequences the output spans. last
// is the subject's last message (nil when it has none).
func (o *Outputs) seek(ctx context.Context, subj string, offset int64, last *jetstream.RawStreamMsg) (uint64, error) {
	if last == nil {
		return 1, nil
	}
	off, err := offsetOf(last.Header)
	if err != nil {
		return 0, err
	}
	if off <= offset { // the common case: a reader at the end, or near it
		return last.Sequence, nil
	}
	lo, err := o.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) { // purged meanwhile
		return last.Sequence, nil
	}
	if err != nil {
		return 0, err
	}
	if off, err = offsetOf(lo.Header); err != nil || off >= offset {
		return lo.Sequence, err
	}
	// lo is a message at or before offset; every message from hi on is
	// after it.
	hi := last.Sequence
	for lo.Sequence+1 < hi {
		mid := lo.Sequence + (hi-lo.Sequence)/2
		m, err := o.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid
			continue
		}
		if err != nil {
			return 0, err
		}
		if m.Sequence >= hi {
			hi = mid
			continue
		}
		off, err := offsetOf(m.Header)
		if err != nil {
			return 0, err
		}
		if off <= offset {
			lo = m
		} else {
			hi = mid
		}
	}
	return lo.Sequence, nil
}

// open finds run id's output for a reader from offset: the size the
// stream has (after this process's writers flushed), the subject's last
// message, and the sequence to read from. An offset past the size is
// store.ErrBadOffset.
func (o *Outputs) open(ctx context.Context, op, id string, offset int64) (size int64, last *jetstream.RawStreamMsg, seq uint64, err error) {
	o.flushLocal(id)
	subj := o.subject(id)
	if last, err = o.last(ctx, subj); err != nil {
		return 0, nil, 0, fmt.Errorf("jsoutput: %s of %q: %w", op, id, err)
	}
	if size, err = sizeOf(last); err != nil {
		return 0, nil, 0, fmt.Errorf("jsoutput: %s of %q: %w", op, id, err)
	}
	if offset < 0 || offset > size {
		return size, nil, 0, fmt.Errorf("jsoutput: %s of %q: offset %d, size %d: %w", op, id, offset, size, store.ErrBadOffset)
	}
	if seq, err = o.seek(ctx, subj, offset, last); err != nil {
		return 0, nil, 0, fmt.Errorf("jsoutput: %s of %q: %w", op, id, err)
	}
	return size, last, seq, nil
}

// ReadOutput implements store.Outputs. The reader gets the output's
// messages one request at a time, and reads to the end of what the stream
// has when it reads, which may be past size: on this host it waits for
// the writers here to flush first, so it sees every Write that returned.
func (o *Outputs) ReadOutput(id string, offset int64) (io.ReadCloser, int64, error) {
	ctx, cancel := o.opContext()
	defer cancel()
	if _, err := o.run(ctx, "read output", id); err != nil {
		return nil, 0, err
	}
	size, _, seq, err := o.open(ctx, "read output", id, offset)
	if err != nil {
		return nil, size, err
	}
	return &reader{o: o, id: id, subj: o.subject(id), next: seq, p: position{pos: offset}}, size, nil
}

// reader is a reader of ReadOutput.
type reader struct {
	o    *Outputs
	id   string
	subj string

	mu     sync.Mutex
	next   uint64 // the stream sequence to look for the next message from
	p      position
	closed bool
}

func (r *reader) Read(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.p.cur) == 0 {
		if r.closed {
			return 0, os.ErrClosed
		}
		r.o.flushLocal(r.id)
		ctx, cancel := r.o.opContext()
		m, err := r.o.stream.GetMsg(ctx, r.next, jetstream.WithGetMsgSubject(r.subj))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, fmt.Errorf("jsoutput: read output of %q: %w", r.id, err)
		}
		r.next = m.Sequence + 1
		if err := takeMsg(&r.p, m.Header, m.Data); err != nil {
			return 0, fmt.Errorf("jsoutput: read output of %q: message %d: %w", r.id, m.Sequence, err)
		}
	}
	return r.p.read(b), nil
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// takeMsg adds the message with header h and data to p.
func takeMsg(p *position, h nats.Header, data []byte) error {
	off, err := offsetOf(h)
	if err != nil {
		return err
	}
	p.take(off, data)
	return nil
}
