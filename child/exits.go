package child

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// exits watches the pidfds of every running child in one epoll set. One
// goroutine (and so one thread, parked in epoll_wait) serves them all, and a
// child's supervisor goroutine is started only once it has exited: a held
// stream costs no goroutine for its exit, where a goroutine parked on each
// pidfd cost 2-4 KiB of stack apiece.
var exits exitWatcher

type exitWatcher struct {
	once sync.Once
	epfd int
	err  error

	mu    sync.Mutex // guards procs
	procs map[int32]*Process
}

// watch starts p's supervisor once p's leader exits.
func (w *exitWatcher) watch(p *Process) error {
	w.once.Do(w.start)
	if w.err != nil {
		return w.err
	}
	w.mu.Lock()
	w.procs[int32(p.pidfd)] = p
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(p.pidfd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, p.pidfd, &ev); err != nil {
		w.mu.Lock()
		delete(w.procs, int32(p.pidfd))
		w.mu.Unlock()
		return err
	}
	return nil
}

func (w *exitWatcher) start() {
	w.epfd, w.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if w.err != nil {
		return
	}
	w.procs = make(map[int32]*Process)
	go w.loop()
}

// loop runs for the life of the program. A pidfd turns readable when its
// process exits; EPOLLONESHOT reports it once, and the supervisor closes the
// pidfd (removing it from the set) after the reap.
func (w *exitWatcher) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			panic("child: epoll_wait on the exit watcher: " + err.Error())
		}
		for _, ev := range events[:n] {
			w.mu.Lock()
			p := w.procs[ev.Fd]
			delete(w.procs, ev.Fd)
			w.mu.Unlock()
			if p != nil {
				go p.supervise()
			}
		}
	}
}
