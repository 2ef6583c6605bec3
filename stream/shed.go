package stream

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// shedListener answers connections the server has no descriptor for.
//
// When the process is out of file descriptors (EMFILE, ENFILE), accept(2)
// fails and the connection stays in the kernel's backlog: net/http backs off
// and retries, and the clients wait, unanswered, until descriptors free up or
// they give up. shedListener keeps one descriptor in reserve; when accept
// fails for want of descriptors it gives that one up, accepts one connection
// with it, answers it (Options.ShedResponse: a 503 with Retry-After naming
// the condition), closes it and takes its reserve back. So a client of an
// exhausted server hears why at once and can retry, instead of hanging.
type shedListener struct {
	net.Listener
	response string
	log      zerolog.Logger

	mu     sync.Mutex // guards spare and closed; held while shedding, one at a time
	spare  *os.File   // the reserve: /dev/null, never read; nil when lost
	closed bool
}

func newShedListener(ln net.Listener, response string, log zerolog.Logger) *shedListener {
	l := &shedListener{Listener: ln, response: response, log: log}
	l.spare, _ = os.Open(os.DevNull)
	return l
}

// shedLinger bounds how long a shed connection is read before it is closed:
// the client's request, read and dropped, so that closing does not reset
// the connection before the client has read the answer.
const shedLinger = 50 * time.Millisecond

func (l *shedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.retake()
			return c, nil
		}
		if !outOfDescriptors(err) {
			return c, err
		}
		c, ok := l.shed()
		if c != nil {
			return c, nil
		}
		if !ok {
			return nil, err // no reserve: net/http backs off and retries
		}
	}
}

// retake takes the reserve back if a shortage left the listener without
// it. shed reopens it as soon as it is done with it, but another goroutine
// may have taken the descriptor it gave up meanwhile; and newShedListener
// may have started out of descriptors. Were it left to the next shed, the
// listener would meet the next shortage with no reserve, and its clients
// would hang unanswered. An accept that succeeds means that descriptors are
// to be had: the moment to take it back.
func (l *shedListener) retake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare == nil && !l.closed {
		l.spare, _ = os.Open(os.DevNull)
	}
}

// shedWait bounds how long shed waits for a connection: accept(2) takes a
// descriptor before it looks for one, so EMFILE does not mean that a client
// is waiting.
const shedWait = 10 * time.Millisecond

// shed takes one waiting connection with the reserve descriptor. If
// descriptors are to be had again by then, it returns the connection, to be
// served; otherwise it answers it 503 and closes it. It reports false when
// it took none (no reserve, or no connection waiting): the caller then
// returns the error, and net/http backs off and retries.
func (l *shedListener) shed() (net.Conn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare == nil {
		if l.spare, _ = os.Open(os.DevNull); l.spare == nil {
			return nil, false
		}
	}
	l.spare.Close()
	l.spare = nil
	tl, _ := l.Listener.(*net.TCPListener)
	if tl != nil {
		tl.SetDeadline(time.Now().Add(shedWait))
	}
	c, err := l.Listener.Accept()
	if tl != nil {
		tl.SetDeadline(time.Time{})
	}
	if l.spare, _ = os.Open(os.DevNull); err != nil {
		return nil, false
	}
	if l.spare != nil {
		return c, true // descriptors are back: serve it
	}
	c.SetDeadline(time.Now().Add(shedLinger))
	if l.response != "" {
		c.Write([]byte(l.response))
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	var buf [4096]byte
	for {
		if _, rerr := c.Read(buf[:]); rerr != nil {
			break
		}
	}
	c.Close()
	l.spare, _ = os.Open(os.DevNull)
	if l.response != "" {
		l.log.Warn().Msg("out of file descriptors: a connection was answered 503")
	} else {
		l.log.Warn().Msg("out of file descriptors: a connection was closed unanswered")
	}
	return nil, true
}

// Close closes the listener first: that ends a shed waiting in Accept,
// which holds mu.
func (l *shedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.mu.Unlock()
	return err
}

func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
