// Package jsoutput keeps what detached runs print, and the stdin of queued
// runs, in NATS JetStream, where every host of a fleet reads them: the
// store.Outputs of a fleet. It owns the fleet's OUTPUT stream and STDIN
// object store, and nothing else: whether a run exists and whether it is
// done, it asks the history.
//
// A run's output is the subject output.<run> of the OUTPUT stream. Each
// message is a chunk of it (at most chunkMax bytes) whose header
// Rexec-Offset gives the byte offset of its first byte; a writer's Close
// adds an end message (header Rexec-End, no data, its offset the size). A
// reader finds an offset by these headers, never by counting from the
// start, so a reader resumes anywhere on any host.
package jsoutput

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/store"
)

// Headers of the messages of an output.
const (
	// hdrOffset is the byte offset of the message's data in the output;
	// every message has it.
	hdrOffset = "Rexec-Offset"
	// hdrEnd marks the message a writer adds when it is closed: no data,
	// and its offset is the size of the output then. Another writer may
	// append after it (a start that is retried): the output is complete
	// when the history says the run is done.
	hdrEnd = "Rexec-End"
	// hdrTruncated, on an end message, says why the writer cut the
	// output (its TruncatedReason); absent when it did not.
	hdrTruncated = "Rexec-Truncated"
)

// chunkMax is the most output one message holds: well below NATS's
// default max_payload (1 MiB), so that any server takes it.
const chunkMax = 64 << 10

// DefaultBuffer is the bound of a writer's buffer when Options.Buffer is 0:
// store.DefaultMaxOutput, so that with the default cap no output is cut
// for being written faster than the stream takes it (a stream on one
// server took about 100 MB/s in 64 KiB chunks; a process that prints a
// file with cat writes faster), and a writer holds no more than that.
const DefaultBuffer = store.DefaultMaxOutput

// followRecheck is how long a follower waits at the end of the output
// before it asks the history again whether the run is done: the end of a
// run whose host died has no message in the stream.
const followRecheck = time.Second

// timeouts bound the waits on the NATS server. Tests shorten them.
type timeouts struct {
	publish time.Duration // one publish, until its ack
	close   time.Duration // a writer's Close: flushing what is buffered, and the end message
	sync    time.Duration // a reader waiting for this process's writers to flush
	op      time.Duration // one request of a reader (a message, the last of a subject, the history)
	stall   time.Duration // a Write waiting for room in its writer's bound
}

var defaultTimeouts = timeouts{publish: 5 * time.Second, close: 10 * time.Second, sync: 5 * time.Second, op: 5 * time.Second,
	stall: 10 * time.Second}

// Options configure Open. Zero values take the defaults.
type Options struct {
	JS    jetstream.JetStream
	Names fleet.Names
	// Replicas of the OUTPUT stream and the STDIN object store; 0 means 1.
	Replicas int
	// History tells a run that does not exist (ErrNotFound) from one
	// that does, and a run that is done from one that is not.
	History store.History
	// MaxOutput caps each run's output, as store.Options.MaxOutput does
	// (the same marker line, the same rule); 0 means
	// store.DefaultMaxOutput.
	MaxOutput int64
	// MaxAge is how long the stream keeps output; 0 keeps it until
	// Delete.
	MaxAge time.Duration
	// MaxBytes caps the OUTPUT stream; 0 means no cap. A full stream
	// refuses new output (it does not drop old output): the runs that
	// write get their output cut, as on a full disk.
	MaxBytes int64
	// Buffer bounds what one writer holds in memory, waiting for the
	// stream's acknowledgement; 0 means DefaultBuffer. A run that gets
	// more than that ahead of the stream has its output cut, with the
	// failure marker. It counts output, not marker lines: a bound at or
	// above MaxOutput is never reached, and the stream's failures alone
	// cut output.
	Buffer int64
	// Logger receives the log lines; the zero Logger discards them.
	Logger zerolog.Logger
}

// Outputs is the store.Outputs of a fleet. Its methods are safe for
// concurrent use. It holds no goroutine of its own: each writer has one
// while it is open, each follower the ordered consumer's while it is open.
type Outputs struct {
	js      jetstream.JetStream
	stream  jetstream.Stream // OUTPUT
	sname   string           // its name
	stdin   jetstream.ObjectStore
	names   fleet.Names
	history store.History
	max     int64 // the cap of each run's output
	buffer  int64 // the bound of each writer's buffer
	log     zerolog.Logger
	t       timeouts

	mu      sync.Mutex
	writers map[string][]*writer // the open writers of this process, by run
}

var _ store.Outputs = (*Outputs)(nil)

// Open creates the fleet's OUTPUT stream and STDIN object store, or
// updates them to o.
func Open(ctx context.Context, o Options) (*Outputs, error) {
	if o.JS == nil || o.History == nil {
		return nil, errors.New("jsoutput: open: Options.JS and Options.History are required")
	}
	if err := fleet.CheckName(o.Names.Fleet()); err != nil {
		return nil, fmt.Errorf("jsoutput: open: %w", err)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = store.DefaultMaxOutput
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	// Gets go to the stream's leader (no AllowDirect): a replica may lag,
	// and a reader must see what a writer's ack said was stored.
	stream, err := fleet.EnsureStream(ctx, o.JS, jetstream.StreamConfig{
		Name:        o.Names.Stream("OUTPUT"),
		Description: "rexec: the output of detached runs, one subject per run",
		Subjects:    []string{o.Names.Subject("output", "*")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.MaxAge,
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("jsoutput: open stream %s: %w", o.Names.Stream("OUTPUT"), err)
	}
	stdin, err := fleet.EnsureObjectStore(ctx, o.JS, jetstream.ObjectStoreConfig{
		Bucket:      o.Names.Stream("STDIN"),
		Description: "rexec: the stdin of queued detached runs, by run",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jsoutput: open object store %s: %w", o.Names.Stream("STDIN"), err)
	}
	return &Outputs{
		js: o.JS, stream: stream, sname: o.Names.Stream("OUTPUT"), stdin: stdin, names: o.Names, history: o.History,
		max: o.MaxOutput, buffer: o.Buffer, t: defaultTimeouts,
		log: o.Logger.With().Str("component", "jsoutput").Logger(),
	}, nil
}

// subject is the subject of run id's output. The ID comes from a client:
// it is made one token, whatever it holds.
func (o *Outputs) subject(id string) string {
	return o.names.Subject("output", fleet.Token(id))
}

// run asks the history for run id: store.ErrNotFound for a run it does
// not have, before the ID is used anywhere.
func (o *Outputs) run(ctx context.Context, op, id string) (store.Run, error) {
	r, err := o.history.Get(ctx, id)
	if err != nil {
		return store.Run{}, fmt.Errorf("jsoutput: %s: %w", op, err)
	}
	return r, nil
}

// opContext bounds one request of a reader.
func (o *Outputs) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.t.op)
}

// last is the last message of subj, nil when it has none.
func (o *Outputs) last(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	m, err := o.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	return m, err
}

// offsetOf is the offset a message of an output says its data starts at.
func offsetOf(h nats.Header) (int64, error) {
	off, err := strconv.ParseInt(h.Get(hdrOffset), 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("jsoutput: a message without a valid %s header (%q)", hdrOffset, h.Get(hdrOffset))
	}
	return off, nil
}

// endOf is the offset just past the data of message m: the size of the
// output when m is its last message.
func endOf(m *jetstream.RawStreamMsg) (int64, error) {
	off, err := offsetOf(m.Header)
	return off + int64(len(m.Data)), err
}

// sizeOf is the size of an output whose last message is last (nil: none).
func sizeOf(last *jetstream.RawStreamMsg) (int64, error) {
	if last == nil {
		return 0, nil
	}
	return endOf(last)
}

// register and unregister keep the writers open in this process, which
// readers here wait for (flushLocal).
func (o *Outputs) register(w *writer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.writers == nil {
		o.writers = map[string][]*writer{}
	}
	o.writers[w.id] = append(o.writers[w.id], w)
}

func (o *Outputs) unregister(w *writer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := slices.DeleteFunc(o.writers[w.id], func(x *writer) bool { return x == w })
	if len(ws) == 0 {
		delete(o.writers, w.id)
	} else {
		o.writers[w.id] = ws
	}
}

// flushLocal waits, for o.t.sync at most, until the stream has what this
// process's writers of run id had accepted when it was called: a reader
// on the host that writes sees every Write that returned before it read,
// as with a file. Readers on other hosts see it once the stream has it.
func (o *Outputs) flushLocal(id string) {
	o.mu.Lock()
	ws := slices.Clone(o.writers[id])
	o.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	deadline := time.Now().Add(o.t.sync)
	for _, w := range ws {
		w.flushed(deadline)
	}
}

// Size is the size of run id's output as the stream has it, after this
// process's writers of the run flushed: what a history shared by the
// fleet records as the run's OutputSize (store.Store reads the size of
// its own files, which this package does not write). It does not ask the
// history whether the run exists: the history is who calls it.
func (o *Outputs) Size(ctx context.Context, id string) (int64, error) {
	// The history asks, for runs it has: asking it back would loop.
	if !store.ValidID(id) {
		return 0, fmt.Errorf("jsoutput: size of %q: %w", id, store.ErrNotFound)
	}
	o.flushLocal(id)
	last, err := o.last(ctx, o.subject(id))
	if err != nil {
		return 0, fmt.Errorf("jsoutput: size of %q: %w", id, err)
	}
	return sizeOf(last)
}

// Delete removes run id's output and stdin from the fleet, for the
// history's Delete and its retention; what is not there is no error. It
// does not ask the history: the run may be gone from it already.
func (o *Outputs) Delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := o.stream.Purge(ctx, jetstream.WithPurgeSubject(o.subject(id))); err != nil {
		return fmt.Errorf("jsoutput: delete the output of %q: %w", id, err)
	}
	if err := o.stdin.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("jsoutput: delete the stdin of %q: %w", id, err)
	}
	return nil
}

// SaveStdin implements store.Outputs: an object named by the run's ID in
// the STDIN object store, which splits it into chunks that any server
// takes. A run the history does not have is store.ErrNotFound.
func (o *Outputs) SaveStdin(id string, stdin []byte) error {
	ctx, cancel := o.opContext()
	defer cancel()
	if _, err := o.run(ctx, "save stdin", id); err != nil {
		return err
	}
	if _, err := o.stdin.PutBytes(ctx, id, stdin); err != nil {
		return fmt.Errorf("jsoutput: save stdin of %q: %w", id, err)
	}
	return nil
}

// Stdin implements store.Outputs.
func (o *Outputs) Stdin(id string) ([]byte, error) {
	if id == "" {
		return nil, fmt.Errorf("jsoutput: stdin: run %q: %w", id, store.ErrNotFound)
	}
	ctx, cancel := o.opContext()
	defer cancel()
	b, err := o.stdin.GetBytes(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jsoutput: stdin of %q: %w", id, err)
	}
	return b, nil
}

// DeleteStdin implements store.Outputs.
func (o *Outputs) DeleteStdin(id string) error {
	if id == "" {
		return nil
	}
	ctx, cancel := o.opContext()
	defer cancel()
	if err := o.stdin.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("jsoutput: delete stdin of %q: %w", id, err)
	}
	return nil
}

// The texts of a cut output are store.Store's, so that an output reads
// the same from either implementation. TruncationMarker is exported;
// these two are copies of store's unexported failureMarker and capReason.

// failureMarker is the line written where output was cut because writing
// it failed.
func failureMarker(reason string) string {
	return "\n[rexec: output truncated: writing failed: " + reason + "]\n"
}

// capReason is the TruncatedReason of output cut at max bytes.
func capReason(max int64) string {
	return "output larger than " + strconv.FormatInt(max, 10) + " bytes (--max-output)"
}

// failReason is the TruncatedReason of output cut by a failed write.
func failReason(reason string) string { return "writing the output failed: " + reason }

// errText is the reason a failed publish gives, for the marker line and
// TruncatedReason: the server's own words when it refused.
func errText(err error) string {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Description != "" {
		return api.Description
	}
	return strings.TrimPrefix(err.Error(), "nats: ")
}
