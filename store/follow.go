package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// outputs is what the store knows of the outputs being written and
// followed in this process: the writers open per run, and a channel per
// followed run that is closed (and replaced) at each change of its output.
type outputs struct {
	mu      sync.Mutex
	writers map[string]int          // open writers, by run
	watches map[string]*outputWatch // by run, while someone follows it
}

type outputWatch struct {
	followers int
	changed   chan struct{} // closed at the next change
}

// followRecheck bounds how long a follower waits at the end of the output
// without a change before it looks again whether the run is done: a run's
// end recorded by another process (or retried after a full disk) has no
// signal in this one.
const followRecheck = time.Second

func (s *Store) writerOpened(id string) {
	s.outs.mu.Lock()
	if s.outs.writers == nil {
		s.outs.writers = map[string]int{}
	}
	s.outs.writers[id]++
	s.outs.mu.Unlock()
	s.outputChanged(id)
}

func (s *Store) writerClosed(id string) {
	s.outs.mu.Lock()
	if n, ok := s.outs.writers[id]; ok {
		if n <= 1 {
			delete(s.outs.writers, id)
		} else {
			s.outs.writers[id] = n - 1
		}
	}
	s.outs.mu.Unlock()
	s.outputChanged(id)
}

// outputChanged wakes the followers of run id: its output grew, or its
// writer or its state changed.
func (s *Store) outputChanged(id string) {
	s.outs.mu.Lock()
	if w := s.outs.watches[id]; w != nil {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	s.outs.mu.Unlock()
}

// watch returns the channel closed at the next change of run id's output,
// and whether a writer has it open now.
func (s *Store) watch(id string) (changed <-chan struct{}, writing bool) {
	s.outs.mu.Lock()
	defer s.outs.mu.Unlock()
	if w := s.outs.watches[id]; w != nil {
		changed = w.changed
	}
	return changed, s.outs.writers[id] > 0
}

func (s *Store) follow(id string) {
	s.outs.mu.Lock()
	defer s.outs.mu.Unlock()
	if s.outs.watches == nil {
		s.outs.watches = map[string]*outputWatch{}
	}
	w := s.outs.watches[id]
	if w == nil {
		w = &outputWatch{changed: make(chan struct{})}
		s.outs.watches[id] = w
	}
	w.followers++
}

func (s *Store) unfollow(id string) {
	s.outs.mu.Lock()
	defer s.outs.mu.Unlock()
	if w := s.outs.watches[id]; w != nil {
		if w.followers--; w.followers == 0 {
			delete(s.outs.watches, id)
		}
	}
}

// FollowOutput implements Outputs. The output is complete when no writer
// has it open and the history records the run as done.
func (s *Store) FollowOutput(ctx context.Context, id string, offset int64) (io.ReadCloser, error) {
	rd, _, err := s.ReadOutput(id, offset)
	if err != nil {
		return nil, err
	}
	s.follow(id)
	return &follower{s: s, id: id, ctx: ctx, f: rd.(*os.File), closed: make(chan struct{})}, nil
}

// follower is a reader of FollowOutput. Read and Close may be called from
// different goroutines: Close ends a Read that waits, with os.ErrClosed.
type follower struct {
	s         *Store
	id        string
	ctx       context.Context
	f         *os.File
	closed    chan struct{}
	closeOnce sync.Once
}

func (fr *follower) Read(p []byte) (int, error) {
	for {
		select {
		case <-fr.closed:
			return 0, os.ErrClosed
		default:
		}
		// The channel is taken before the file is read: a change after
		// the read closes it, so no write is missed.
		changed, writing := fr.s.watch(fr.id)
		n, err := fr.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		if !writing && fr.done() {
			// Done, and every writer closed: one last read takes what
			// was written before.
			if n, err := fr.f.Read(p); n > 0 || err != io.EOF {
				return n, err
			}
			return 0, io.EOF
		}
		t := time.NewTimer(followRecheck)
		select {
		case <-changed:
		case <-t.C:
		case <-fr.ctx.Done():
			t.Stop()
			return 0, context.Cause(fr.ctx)
		case <-fr.closed:
			t.Stop()
			return 0, os.ErrClosed
		}
		t.Stop()
	}
}

// done says whether the history records the run as done (or has lost it:
// a deleted run has nothing more to write).
func (fr *follower) done() bool {
	r, err := fr.s.Get(fr.ctx, fr.id)
	if errors.Is(err, ErrNotFound) {
		return true
	}
	return err == nil && r.State == StateDone
}

func (fr *follower) Close() error {
	var err error
	fr.closeOnce.Do(func() {
		close(fr.closed)
		fr.s.unfollow(fr.id)
		err = fr.f.Close()
	})
	return err
}

// stdinPath is where the stdin of queued run id waits; id must be valid.
func (s *Store) stdinPath(id string) string {
	return filepath.Join(s.dir, "stdin-"+id)
}

// SaveStdin implements Outputs.
func (s *Store) SaveStdin(id string, stdin []byte) (err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return fmt.Errorf("store: save stdin: %w", notFound(id))
	}
	if err := os.WriteFile(s.stdinPath(id), stdin, fileMode); err != nil {
		os.Remove(s.stdinPath(id))
		return fmt.Errorf("store: save stdin: %w", err)
	}
	return nil
}

// Stdin implements Outputs.
func (s *Store) Stdin(id string) (_ []byte, err error) {
	defer classifyTo(&err)
	if !validID(id) {
		return nil, fmt.Errorf("store: stdin: %w", notFound(id))
	}
	b, err := os.ReadFile(s.stdinPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: stdin: %w", err)
	}
	return b, nil
}

// DeleteStdin implements Outputs.
func (s *Store) DeleteStdin(id string) error {
	if !validID(id) {
		return nil
	}
	if err := os.Remove(s.stdinPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: delete stdin: %w", err)
	}
	return nil
}
