package webapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/webapi"
)

// TestHeldStreamStacks guards the stack a held stream costs, the part of
// the memory figure in BENCHMARKS.md that the code's shape holds up. A
// parked stream is one goroutine whose stack stays at the runtime's 2 KiB
// minimum only while the frames under its park fit in about 1 KiB (2 KiB
// less the runtime's guard); a stream held by net/http (HTTP/1.0, live
// stdin, parking off) parks on the handler's stack, under the frame of every
// function still running. One more frame there (a function that ends a
// run folded into the one that waits, or inlined into it once the inliner
// may: the //go:noinline in webapi and stream) costs every held stream the
// next power of two.
//
// It holds quiet streams over real sockets and measures the bytes of stack
// their goroutines use (what the collector scans: from each goroutine's
// park to the top of its stack), which is the same from run to run, unlike
// the bytes of stack allocated: MemStats.StackInuse also counts the stacks
// that the runtime keeps for goroutines to come, and moved by 1-2 KiB per
// stream between runs of the same code.
//
// The bounds leave 120-320 bytes over what was measured when it was
// written, less than any of these frames; a change of Go release may move
// the figures by a few words. Removing a //go:noinline alone changes
// nothing today (each of those functions is far over the inliner's
// budget), but folding one into its caller does: the end of a parked run
// into the function that waits (endParkedRaw into serveParkedRaw, endParked
// into serveParked) measured 722 and 1,009 bytes, and startRun or authorize
// folded into the handler 4,010 and 3,770.
func TestHeldStreamStacks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 100 processes")
	}
	const n = 100
	for _, tc := range []struct {
		name   string
		cfg    webapi.Config
		accept string
		parked bool
		// The goroutines and the bytes of stack used per held stream; the
		// race detector makes every frame larger (raceFrames).
		goroutines         float64
		frames, raceFrames float64
	}{
		// One goroutine waiting on the child's pipe: 504 bytes measured
		// (704 under -race).
		{name: "parked text", parked: true, goroutines: 1, frames: 640, raceFrames: 832},
		// One goroutine waiting on the child's output channel: 801 (1,040).
		{name: "parked ndjson", accept: "application/x-ndjson", parked: true, goroutines: 1, frames: 960, raceFrames: 1280},
		// The handler's goroutine and net/http's background read: 3,241
		// (4,257).
		{name: "held by net/http", cfg: webapi.Config{ParkAfter: -1}, goroutines: 2, frames: 3584, raceFrames: 4608},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, serverOpts{cfg: tc.cfg})
			addr := strings.TrimPrefix(s.url, "http://")
			// A warm-up: what the server starts once is in the baseline.
			warm := holdStreams(t, addr, "warm", 4, tc.accept)
			if tc.parked {
				waitParked(t, s, "warm", 4)
			}
			for _, c := range warm {
				c.Close()
			}
			waitLogCount(t, s, `"reason":"disconnect"`, 4)
			before := settledStacks(t)

			conns := holdStreams(t, addr, "held", n, tc.accept)
			if tc.parked {
				waitParked(t, s, "held", n)
			}
			held := settledStacks(t)
			for _, c := range conns {
				c.Close()
			}

			goroutines := float64(held.goroutines-before.goroutines) / n
			frames := float64(int64(held.frames)-int64(before.frames)) / n
			t.Logf("per held stream: %.2f goroutines, %.0f bytes of stack used; %d streams", goroutines, frames, n)
			if goroutines > tc.goroutines+0.05 {
				t.Errorf("%.2f goroutines per held stream, want %v", goroutines, tc.goroutines)
			}
			bound := tc.frames
			if raceEnabled() {
				bound = tc.raceFrames
			}
			if frames > bound {
				t.Errorf("%.0f bytes of stack used per held stream, want at most %v: a frame under the stream's park "+
					"grew (a function inlined or folded into one still running? see the //go:noinline in webapi "+
					"and stream)", frames, bound)
			}
		})
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type stackStats struct {
	goroutines int
	frames     uint64 // bytes of stack in use, from each park to the top
}

// settledStacks waits until the goroutines have settled (the held streams'
// children's pumps, quiet, wait in the one epoll set instead of on a
// goroutine each; a handler that parked its stream has returned), then
// collects and returns what the collector scanned.
func settledStacks(t *testing.T) stackStats {
	t.Helper()
	last, same := -1, 0
	deadline := time.Now().Add(30 * time.Second)
	for same < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the number of goroutines did not settle: %d", runtime.NumGoroutine())
		}
		time.Sleep(50 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == last {
			same++
		} else {
			last, same = g, 0
		}
	}
	// A goroutine that happens to run during a collection only adds to
	// what it scans: the least of three is the settled figure.
	var st stackStats
	for i := range 3 {
		runtime.GC()
		sample := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}}
		metrics.Read(sample)
		g, frames := runtime.NumGoroutine(), sample[0].Value.Uint64()
		if i == 0 || frames < st.frames {
			st.frames = frames
		}
		if i == 0 || g < st.goroutines {
			st.goroutines = g
		}
	}
	return st
}

// holdStreams opens n streams of quiet children, each over a connection of
// its own with no goroutine reading it, and returns once each has sent its
// first line.
func holdStreams(t *testing.T, addr, prefix string, n int, accept string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		b, _ := json.Marshal(fake(fmt.Sprintf("%s%d", prefix, i), "hang"))
		head := fmt.Sprintf("POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n", len(b))
		if accept != "" {
			head += "Accept: " + accept + "\r\n"
		}
		if _, err := fmt.Fprintf(c, "%s\r\n%s", head, b); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if strings.Contains(line, "ready") {
				break
			}
		}
		c.SetReadDeadline(time.Time{})
	}
	return conns
}

// waitParked waits until n streams whose alias starts with prefix are parked.
func waitParked(t *testing.T, s *testServer, prefix string, n int) {
	t.Helper()
	waitLogCount(t, s, `"alias":"`+prefix, n, "stream parked")
}

// waitLogCount waits until the server's log holds at least n lines with
// every one of subs.
func waitLogCount(t *testing.T, s *testServer, sub string, n int, more ...string) {
	t.Helper()
	count := func() int {
		k := 0
	lines:
		for _, l := range strings.Split(s.logs.String(), "\n") {
			for _, m := range append(more, sub) {
				if !strings.Contains(l, m) {
					continue lines
				}
			}
			k++
		}
		return k
	}
	deadline := time.Now().Add(30 * time.Second)
	for count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines with %q %q, want %d:\n%s", count(), sub, more, n, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
