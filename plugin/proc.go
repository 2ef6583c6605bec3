package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/creachadair/jrpc2"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
)

// Why a call fails without an answer of the plugin.
var (
	// ErrDeadline: the plugin did not answer within the call's deadline;
	// its process was killed.
	ErrDeadline = errors.New("the plugin did not answer in time: its process was killed")
	// ErrEnded: the process had ended (it exited, crashed, was stopped or
	// broke the protocol) before it answered.
	ErrEnded = errors.New("the plugin's process has ended")
	// ErrStartFailed: the command could not be started (its executable
	// gone, its interpreter missing, ...).
	ErrStartFailed = errors.New("the plugin's command could not start")
)

// A plugin's stderr in the log: at most maxStderrLine bytes a line, and
// maxStderrLines lines a second.
const (
	maxStderrLine  = 1 << 10
	maxStderrLines = 100
)

// proc is one process of a command, and the JSON-RPC client that talks to
// it over the process's stdin and stdout. It serves calls until it ends:
// by itself, by a protocol error, or by stop.
type proc struct {
	cp    *child.Process
	cli   *jrpc2.Client
	calls *callTable
	log   zerolog.Logger

	ended chan struct{} // closed once the process is reaped and the client stopped
	mu    sync.Mutex
	why   error // why it ended, set before ended is closed
}

// procOptions are what every process of a Manager shares.
type procOptions struct {
	killGrace time.Duration
	// cgroups and limits place the process in a cgroup of its own.
	cgroups *cgroup.Tree
	limits  cgroup.Limits
	log     zerolog.Logger
	// callback returns the handler of the calls of the process to the
	// server; nil refuses them.
	callback func(Peer) jrpc2.Handler
	// onEnd is called once the process has ended, Why says why, before
	// stop returns.
	onEnd func(*proc)
}

// startProc starts a process of comp.
func startProc(comp Component, opt procOptions) (*proc, error) {
	stdinR, stdinW := io.Pipe()
	cp, err := child.Start(child.Spec{
		Path:      comp.Command,
		Dir:       comp.Dir,
		Env:       comp.Env,
		Stdin:     stdinR,
		Stderr:    child.StderrSeparate,
		RawOutput: true,
		Limits:    opt.limits,
	}, child.Options{KillGrace: opt.killGrace, OutputSize: 4, Cgroups: opt.cgroups})
	if err != nil {
		stdinW.Close()
		// The reason names the command's path: the log has it, the
		// caller does not.
		opt.log.Error().Err(err).Str("plugin", comp.FullID()).Msg("plugin command could not start")
		if errors.Is(err, child.ErrNoResources) {
			return nil, fmt.Errorf("plugin %s: %w", comp.FullID(), child.ErrNoResources)
		}
		return nil, fmt.Errorf("%w: %s (the server's log says why)", ErrStartFailed, comp.FullID())
	}
	p := &proc{
		cp:    cp,
		log:   opt.log.With().Str("plugin", comp.FullID()).Int("pid", cp.Pid()).Logger(),
		ended: make(chan struct{}),
		calls: &callTable{},
	}
	out := &rawReader{pipe: cp.RawPipe()}
	ch := newLineChannel(out, stdinW)
	ch.onBad = out.discard
	ch.calls = p.calls
	var stopErr error
	stopped := make(chan struct{})
	handler := refuseCallback
	if opt.callback != nil {
		if h := opt.callback(p); h != nil {
			handler = h
		}
	}
	p.cli = jrpc2.NewClient(ch, &jrpc2.ClientOptions{
		OnCallback: handler,
		OnStop: func(_ *jrpc2.Client, err error) {
			stopErr = err
			close(stopped)
			// The plugin broke the protocol, or its stdout closed: it
			// serves nothing more.
			cp.Kill(child.ReasonDisconnect)
		},
	})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		p.logStderr()
	}()
	go func() {
		<-cp.Done()
		// A write to its stdin that the process never read (a call, an
		// event) fails now, rather than holding the client's lock, and
		// Close with it, for ever.
		stdinR.CloseWithError(ErrEnded)
		p.cli.Close()
		<-stopped
		<-stderrDone // its last lines are in the log before it counts as ended
		p.mu.Lock()
		p.why = endReason(cp.Status(), stopErr)
		p.mu.Unlock()
		p.log.Debug().Err(p.why).Msg("plugin process ended")
		if opt.onEnd != nil {
			opt.onEnd(p) // before ended: whoever waits for it finds the process forgotten
		}
		close(p.ended)
	}()
	return p, nil
}

// endReason says why a process ended: the protocol error that ended it,
// its deadline, its exit status, or the signal that ended it and why it was
// sent.
func endReason(st child.Status, stopErr error) error {
	var pe *ProtocolError
	stopped := st.Reason == child.ReasonCancelled || st.Reason == child.ReasonShutdown
	switch {
	case errors.As(stopErr, &pe):
		return fmt.Errorf("%w: %w", ErrEnded, pe)
	case st.Reason == child.ReasonTimeout:
		return ErrDeadline
	case st.Signal == 0 && (st.Code != 0 || !stopped):
		return fmt.Errorf("%w: exit status %d", ErrEnded, st.Code)
	case st.Reason == child.ReasonShutdown:
		return fmt.Errorf("%w: stopped, the server is shutting down", ErrEnded)
	case stopped:
		return fmt.Errorf("%w: stopped", ErrEnded)
	case st.Reason == child.ReasonDisconnect:
		return fmt.Errorf("%w: it closed its stdout, and was then killed by %s", ErrEnded, st.SignalName())
	}
	return fmt.Errorf("%w: killed by %s", ErrEnded, st.SignalName())
}

// Notify sends the process a notification (Peer).
func (p *proc) Notify(ctx context.Context, method string, params any) error {
	return p.cli.Notify(ctx, method, params)
}

// Done is closed when the process has been reaped (Peer).
func (p *proc) Done() <-chan struct{} { return p.cp.Done() }

// Logger is the process's logger (Peer).
func (p *proc) Logger() *zerolog.Logger { return &p.log }

// alive reports whether the process has not been reaped yet.
func (p *proc) alive() bool {
	select {
	case <-p.cp.Done():
		return false
	default:
		return true
	}
}

// Why is why the process ended; nil while it runs.
func (p *proc) Why() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.why
}

// call calls method with params (raw JSON, or nil for none) and returns the
// result. Past timeout the process is killed and the call fails with
// ErrDeadline. An error of the plugin is a *jrpc2.Error.
func (p *proc) call(ctx context.Context, method string, params json.RawMessage, timeout time.Duration) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The deadline kills the process even while the call waits to be
	// written: a process that does not read its stdin holds a write, and
	// the client's lock with it, until it ends.
	stopKill := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			p.cp.Kill(child.ReasonTimeout)
		}
	})
	defer stopKill()
	var ps any
	if len(params) > 0 {
		ps = params
	}
	var id string
	p.calls.begin(&id)
	rsp, err := p.cli.Call(ctx, method, ps)
	answer := p.calls.end(id)
	if err != nil {
		var rpcErr *jrpc2.Error
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			p.cp.Kill(child.ReasonTimeout) // now: the timer's kill runs on a goroutine of its own
			return nil, ErrDeadline
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case answer != nil:
			// The plugin answered, and its stdout ended before the
			// client handed the answer over (callTable).
			return decodeAnswer(answer)
		case errors.As(err, &rpcErr) && !p.cli.IsStopped():
			return nil, rpcErr
		}
		// The conversation failed: the process's stdout ended, it broke
		// the protocol, or a write to it failed. It serves nothing more:
		// it ends, and says why.
		p.cp.Kill(child.ReasonDisconnect)
		<-p.ended
		return nil, p.Why()
	}
	var result json.RawMessage
	if err := rsp.UnmarshalResult(&result); err != nil {
		return nil, err
	}
	return result, nil
}

// decodeAnswer is the result of a call, or its *jrpc2.Error, from the
// plugin's answer as Recv normalised it.
func decodeAnswer(msg json.RawMessage) (json.RawMessage, error) {
	var a struct {
		Result json.RawMessage `json:"result"`
		Error  *jrpc2.Error    `json:"error"`
	}
	if err := json.Unmarshal(msg, &a); err != nil {
		return nil, err
	}
	if a.Error != nil {
		return nil, a.Error
	}
	return a.Result, nil
}

// stop ends the process as every rexec child ends (SIGTERM to its group,
// SIGKILL after the grace), for reason, and waits until it has.
func (p *proc) stop(reason child.Reason) {
	p.cp.Kill(reason)
	<-p.ended
}

// logStderr sends the process's stderr to the log, a line at a time, each
// cut at maxStderrLine bytes, and at most maxStderrLines lines a second: a
// plugin that floods its stderr has the rest counted, not logged.
func (p *proc) logStderr() {
	var line []byte
	var window time.Time
	logged, dropped := 0, 0
	flush := func() {
		if len(line) == 0 {
			return
		}
		if now := time.Now(); now.Sub(window) >= time.Second {
			if dropped > 0 {
				p.log.Warn().Int("lines", dropped).Msg("plugin stderr: lines dropped (more than 100 a second)")
			}
			window, logged, dropped = now, 0, 0
		}
		switch {
		case logged < maxStderrLines:
			logged++
			p.log.Info().Str("stderr", string(bytes.ToValidUTF8(line, []byte("\uFFFD")))).Msg("plugin stderr")
		case dropped == 0:
			dropped++
			p.log.Warn().Msg("plugin stderr: more than 100 lines a second; the rest of this second is dropped, and counted")
		default:
			dropped++
		}
		line = line[:0]
	}
	for c := range p.cp.Output() {
		data := c.Data
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			part := data
			if i >= 0 {
				part = data[:i]
			}
			if room := maxStderrLine - len(line); room > 0 {
				line = append(line, part[:min(len(part), room)]...)
			}
			if i < 0 {
				break
			}
			flush()
			data = data[i+1:]
		}
		c.Release()
	}
	flush()
	if dropped > 0 {
		p.log.Warn().Int("lines", dropped).Msg("plugin stderr: lines dropped (more than 100 a second)")
	}
}

// rawReader reads a process's stdout from its raw pipe, and gives the pipe
// back (End at its end, discard when the reader stops before) once.
type rawReader struct {
	pipe *child.Pipe
	once sync.Once
}

func (r *rawReader) Read(b []byte) (int, error) {
	n, err := r.pipe.Read(b)
	if err != nil {
		r.once.Do(r.pipe.End)
	}
	return n, err
}

// discard gives the pipe up before its end; called by its reader only.
func (r *rawReader) discard() { r.once.Do(r.pipe.Discard) }
