package fdwatch

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestFiresOnceWhenReadable(t *testing.T) {
	r, wr := pipe(t)
	fired := make(chan struct{}, 2)
	if _, err := Add(r, unix.EPOLLIN, func() { fired <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
		t.Fatal("fired before the descriptor was readable")
	case <-time.After(20 * time.Millisecond):
	}
	syscall.Write(wr, []byte("x"))
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("not fired")
	}
	syscall.Write(wr, []byte("y")) // one-shot: no second call
	select {
	case <-fired:
		t.Fatal("fired twice")
	case <-time.After(20 * time.Millisecond):
	}
}

func TestStopBeforeEvent(t *testing.T) {
	r, wr := pipe(t)
	fired := make(chan struct{}, 1)
	wt, err := Add(r, unix.EPOLLIN, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if !wt.Stop() {
		t.Fatal("Stop of a pending watch reported it had fired")
	}
	syscall.Write(wr, []byte("x"))
	select {
	case <-fired:
		t.Fatal("fired after Stop")
	case <-time.After(20 * time.Millisecond):
	}
	if wt.Stop() {
		t.Fatal("second Stop reported stopping the watch")
	}
}

// TestPeerHangup is how a parked stream learns its client went away: the
// client closes the connection, or shuts down its writing half.
func TestPeerHangup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name   string
		hangup func(*net.TCPConn) error
	}{
		{"close", (*net.TCPConn).Close},
		{"close write", (*net.TCPConn).CloseWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			fired := make(chan struct{}, 1)
			wt, err := AddHangup(srv.(*net.TCPConn), func() { fired <- struct{}{} })
			if err != nil {
				t.Fatal(err)
			}
			defer wt.Stop()
			select {
			case <-fired:
				t.Fatal("fired while the client was there")
			case <-time.After(20 * time.Millisecond):
			}
			tc.hangup(cl.(*net.TCPConn))
			select {
			case <-fired:
			case <-time.After(5 * time.Second):
				t.Fatal("hangup not reported")
			}
		})
	}
}

func TestEventDataHoldsTheID(t *testing.T) {
	var ev unix.EpollEvent
	setID(&ev, 0x0102030405060708)
	if got := getID(&ev); got != 0x0102030405060708 {
		t.Fatalf("id round trip: %#x", got)
	}
	if ev.Events != 0 {
		t.Fatal("the id overwrote the events field")
	}
}

// TestWatchAgainAfterFiring is how a pump that went quiet twice waits: the
// descriptor left in the set by the first (fired) watch is re-armed.
func TestWatchAgainAfterFiring(t *testing.T) {
	r, wr := pipe(t)
	for i := range 3 {
		fired := make(chan struct{}, 1)
		if _, err := Add(r, unix.EPOLLIN, func() { fired <- struct{}{} }); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		syscall.Write(wr, []byte("x"))
		select {
		case <-fired:
		case <-time.After(5 * time.Second):
			t.Fatalf("watch %d not fired", i)
		}
		var b [8]byte
		syscall.Read(r, b[:])
	}
}
