package stream

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestShedRetakesReserve loses the listener's reserve in a shortage and
// checks that it is taken back once descriptors are to be had, so that the
// next shortage is answered 503 rather than left hanging. It lowers its own
// RLIMIT_NOFILE, so it runs in a process of its own: this test binary again.
func TestShedRetakesReserve(t *testing.T) {
	if os.Getenv("REXEC_SHED_TEST") == "1" {
		shedRetakesReserve(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestShedRetakesReserve$", "-test.v")
	cmd.Env = append(os.Environ(), "REXEC_SHED_TEST=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestShedRetakesReserve") {
		t.Fatalf("in a process of its own: %v\n%s", err, out)
	}
}

func shedRetakesReserve(t *testing.T) {
	const response = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	setLimit := func(n uint64) {
		t.Helper()
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: orig.Max}); err != nil {
			t.Fatalf("setrlimit %d: %v", n, err)
		}
	}
	restore := func() { setLimit(orig.Cur) }
	defer restore()

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newShedListener(tcp, response, zerolog.Nop())
	defer l.Close()
	if l.spare == nil {
		t.Fatal("no reserve at the start")
	}
	spare := int(l.spare.Fd())

	// fill takes every free descriptor below limit with /dev/null, and
	// reports the lowest free one above them.
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	fill := func(limit int) int {
		t.Helper()
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			if fd := int(f.Fd()); fd >= limit {
				f.Close()
				return fd
			}
			held = append(held, f)
		}
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// A shortage in which the reserve, once given up, cannot be had back:
	// the limit is the reserve's own descriptor, and every one below it is
	// taken. The listener is left without its reserve.
	c1 := dial()
	defer c1.Close()
	fill(spare)
	setLimit(uint64(spare))
	if _, err := l.Accept(); !outOfDescriptors(err) {
		t.Fatalf("accept with no descriptor: %v; want EMFILE", err)
	}
	restore()
	if l.spare != nil {
		t.Fatal("the reserve was not lost: the test did not make the case it is about")
	}

	// Descriptors are back: an accept succeeds, and takes the reserve back.
	s1, err := l.Accept()
	if err != nil {
		t.Fatalf("accept with descriptors back: %v", err)
	}
	s1.Close()
	c1.Close()

	// The next shortage, the reserve below the limit and every other
	// descriptor below it taken: a connection is answered 503.
	c2 := dial()
	defer c2.Close()
	below := 0 // without a reserve, the lowest free descriptor is the limit
	if l.spare != nil {
		below = int(l.spare.Fd())
	}
	setLimit(uint64(fill(below)))
	if _, err := l.Accept(); !outOfDescriptors(err) {
		t.Fatalf("accept with no descriptor: %v; want EMFILE once the waiting connection is answered", err)
	}
	restore()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c2)
	if errors.Is(err, os.ErrDeadlineExceeded) || !strings.HasPrefix(string(b), "HTTP/1.1 503") {
		t.Fatalf("a connection in a shortage after the reserve was lost once: read %q, %v; want a 503", b, err)
	}
}
