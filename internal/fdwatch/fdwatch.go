// Package fdwatch calls a function once when a file descriptor reports an
// event, for any number of descriptors, from one epoll set served by one
// goroutine (and so one OS thread, parked in epoll_wait).
//
// rexec watches two kinds of descriptor this way: the pidfd of every running
// child (readable when it exits) and the socket of every parked stream
// (EPOLLRDHUP when its client goes away). A goroutine parked on each would
// cost 2-8 KiB of stack per descriptor, and a stream held for hours needs
// none while nothing happens.
//
// The runtime's own poller is not used because it offers no way to wait for
// a descriptor without a goroutine parked on it. A descriptor may be in both
// sets at once: the kernel reports each event to every set that asked.
package fdwatch

import (
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch is one descriptor being watched. Stop it before closing the
// descriptor: only then can the number not be confused with a new one.
type Watch struct {
	id uint64
	fd int
	fn func()
}

var w watcher

type watcher struct {
	once sync.Once
	epfd int
	err  error

	mu      sync.Mutex // guards next and watches
	next    uint64
	watches map[uint64]*Watch
}

// Add calls fn once, on a goroutine of its own, when fd reports one of
// events (EPOLLHUP and EPOLLERR are always reported). It does not call fn
// after Stop returns, except for a call already under way.
func Add(fd int, events uint32, fn func()) (*Watch, error) {
	w.once.Do(w.start)
	if w.err != nil {
		return nil, w.err
	}
	w.mu.Lock()
	w.next++
	wt := &Watch{id: w.next, fd: fd, fn: fn}
	w.watches[wt.id] = wt
	w.mu.Unlock()

	// The event's data is the watch's id, not the descriptor's number: an
	// event already read from the set for a descriptor that has since been
	// stopped, closed and reused must find nothing, not the new watch.
	ev := unix.EpollEvent{Events: events | unix.EPOLLONESHOT}
	setID(&ev, wt.id)
	err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	if err == unix.EEXIST {
		// A one-shot watch that fired leaves its descriptor in the set,
		// disabled, until it is closed: watching it again re-arms it.
		err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
	if err != nil {
		w.mu.Lock()
		delete(w.watches, wt.id)
		w.mu.Unlock()
		return nil, err
	}
	return wt, nil
}

// AddHangup calls fn once, as Add does, when the peer of the socket c hangs
// up: it closed the connection or shut down its writing (EPOLLRDHUP), or
// the socket failed. Nothing is read from c.
func AddHangup(c syscall.Conn, fn func()) (*Watch, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var added struct {
		wt  *Watch
		err error
	}
	if err := raw.Control(func(fd uintptr) {
		added.wt, added.err = Add(int(fd), unix.EPOLLRDHUP, fn)
	}); err != nil {
		return nil, err
	}
	return added.wt, added.err
}

// Stop removes the watch. It reports whether it stopped the watch before
// its function was called.
func (wt *Watch) Stop() bool {
	w.mu.Lock()
	_, ok := w.watches[wt.id]
	delete(w.watches, wt.id)
	w.mu.Unlock()
	if ok {
		// ENOENT cannot happen while the watch was still in the map, and a
		// closed descriptor (EBADF) has left the set already.
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, wt.fd, nil)
	}
	return ok
}

func (w *watcher) start() {
	w.epfd, w.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if w.err != nil {
		return
	}
	w.watches = make(map[uint64]*Watch)
	go w.loop()
}

// loop runs for the life of the program. EPOLLONESHOT reports each
// descriptor once; its watch leaves the map as it fires.
func (w *watcher) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			panic("fdwatch: epoll_wait: " + err.Error())
		}
		for i := range events[:n] {
			id := getID(&events[i])
			w.mu.Lock()
			wt := w.watches[id]
			delete(w.watches, id)
			w.mu.Unlock()
			if wt != nil {
				go wt.fn()
			}
		}
	}
}

// The 64 bits of epoll_data follow the events field; x/sys names them Fd
// and Pad (amd64, arm64 and most others) and they hold our id.
func setID(ev *unix.EpollEvent, id uint64) {
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = id
}

func getID(ev *unix.EpollEvent) uint64 {
	return *(*uint64)(unsafe.Pointer(&ev.Fd))
}
