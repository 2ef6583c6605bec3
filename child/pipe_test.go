package child_test

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/internal/testchild"
)

// The raw pipe (Spec.RawOutput): the caller reads standard output itself
// through Process.RawPipe, as package stream does.

// readAll reads the pipe as stream does: Wait for what it holds, Read that
// much, to the end. It returns the output and the error that ended it.
func readAll(t *testing.T, pipe *child.Pipe) ([]byte, error) {
	t.Helper()
	var out []byte
	b := make([]byte, 100<<10)
	for {
		n, err := pipe.Wait()
		if err != nil {
			return out, err
		}
		m, err := pipe.Read(b[:min(n, len(b))])
		if m <= 0 || m > n || err != nil {
			t.Fatalf("Wait said %d bytes, Read took %d: %v", n, m, err)
		}
		out = append(out, b[:m]...)
	}
}

func TestRawPipeOnlyWithRawOutput(t *testing.T) {
	p := start(t, "echo", child.Spec{Args: []string{"x"}}, child.Options{})
	if p.RawPipe() != nil {
		t.Fatal("RawPipe of a process started without RawOutput")
	}
	collect(p)
}

// TestRawPipeReadToEOF: Wait and Read deliver the output byte for byte, Wait
// says io.EOF at its end, and End lets the run finish.
func TestRawPipeReadToEOF(t *testing.T) {
	const n = 3 << 20
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(n)}, RawOutput: true}, child.Options{})
	pipe := p.RawPipe()
	out, err := readAll(t, pipe)
	if err != io.EOF {
		t.Fatalf("ended with %v, want io.EOF", err)
	}
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
	if _, err := pipe.Wait(); err != io.EOF {
		t.Fatalf("Wait after the end: %v, want io.EOF again", err)
	}
	pipe.End()
	if st := p.Wait(); st.Code != 0 || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v", st)
	}
	if _, ok := <-p.Output(); ok {
		t.Fatal("Output delivered a chunk of a raw process")
	}
}

// TestRawPipeWaitOnAQuietPipe: Wait blocks until output comes, reading
// none of it; a deadline ends the wait, also one set from another
// goroutine, which is how a stream is woken when its client leaves.
func TestRawPipeWaitOnAQuietPipe(t *testing.T) {
	t.Run("output comes", func(t *testing.T) {
		p := start(t, "quiet-gen", child.Spec{Args: []string{"200ms", "5", "0"}, RawOutput: true}, child.Options{})
		pipe := p.RawPipe()
		begun := time.Now()
		n, err := pipe.Wait()
		if err != nil || n != 5 {
			t.Fatalf("Wait = %d, %v; want 5 bytes", n, err)
		}
		if d := time.Since(begun); d < 150*time.Millisecond {
			t.Fatalf("Wait returned after %v, before the child wrote", d)
		}
		if again, err := pipe.Wait(); again != 5 || err != nil {
			t.Fatalf("second Wait = %d, %v: Wait must read nothing", again, err)
		}
		out, err := readAll(t, pipe)
		if err != io.EOF || testchild.CheckGen(out, 5) != nil {
			t.Fatalf("output %q, end %v", out, err)
		}
		pipe.End()
		if st := p.Wait(); st.Code != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		p := start(t, "hang", child.Spec{RawOutput: true}, child.Options{})
		pipe := p.RawPipe()
		readLine(t, pipe, "ready\n")
		pipe.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := pipe.Wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Wait on a quiet pipe: %v, want the deadline's error", err)
		}
	})
	t.Run("woken from another goroutine", func(t *testing.T) {
		p := start(t, "hang", child.Spec{RawOutput: true}, child.Options{})
		pipe := p.RawPipe()
		readLine(t, pipe, "ready\n")
		pipe.SetReadDeadline(time.Time{})
		woken := make(chan error, 1)
		go func() {
			_, err := pipe.Wait()
			woken <- err
		}()
		select {
		case err := <-woken:
			t.Fatalf("Wait on a quiet pipe returned %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		pipe.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-woken:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("woken Wait: %v, want the deadline's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a deadline in the past did not wake Wait")
		}
	})
}

// TestRawPipeHangup: output written before the child exited is still
// delivered, and Wait says io.EOF once the pipe is empty with no writer
// left, also when it never held anything.
func TestRawPipeHangup(t *testing.T) {
	t.Run("with output", func(t *testing.T) {
		p := start(t, "echo", child.Spec{Args: []string{"hello"}, RawOutput: true}, child.Options{})
		waitZombie(t, p.Pid()) // the leader exited; it is reaped only after End
		pipe := p.RawPipe()
		if n, err := pipe.Wait(); n != len("hello\n") || err != nil {
			t.Fatalf("Wait after the writer's exit = %d, %v; want the 6 bytes it left", n, err)
		}
		out, err := readAll(t, pipe)
		if string(out) != "hello\n" || err != io.EOF {
			t.Fatalf("output %q, end %v", out, err)
		}
		pipe.End()
		if st := p.Wait(); st.Code != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("empty", func(t *testing.T) {
		p := start(t, "exit", child.Spec{Args: []string{"3"}, RawOutput: true}, child.Options{})
		pipe := p.RawPipe()
		if n, err := pipe.Wait(); err != io.EOF {
			t.Fatalf("Wait = %d, %v; want io.EOF", n, err)
		}
		pipe.End()
		if st := p.Wait(); st.Code != 3 {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestRawPipeEnd: the run is not reaped before its reader calls End, and
// only the first of End and Discard counts.
func TestRawPipeEnd(t *testing.T) {
	p := start(t, "echo", child.Spec{Args: []string{"hi"}, RawOutput: true}, child.Options{})
	pipe := p.RawPipe()
	if out, err := readAll(t, pipe); string(out) != "hi\n" || err != io.EOF {
		t.Fatalf("output %q, end %v", out, err)
	}
	select {
	case <-p.Done():
		t.Fatal("reaped before its reader called End")
	case <-time.After(100 * time.Millisecond):
	}
	pipe.End()
	pipe.End()
	pipe.Discard() // after End: does nothing (a pump would count out twice)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not reaped after End")
	}
	if st := p.Status(); st.Code != 0 || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v", st)
	}
	if _, ok := <-p.Output(); ok {
		t.Fatal("Output delivered a chunk of a raw process")
	}
}

// TestRawPipeDiscardAfterDisconnect is what a stream does when its client
// leaves: the reader's wait is cut short by a deadline in the past, then it
// gives the pipe up; the pump that takes over must read on regardless, so
// the child is never blocked on a full pipe.
func TestRawPipeDiscardAfterDisconnect(t *testing.T) {
	p := start(t, "gen", child.Spec{Args: []string{strconv.Itoa(20 << 20)}, RawOutput: true}, child.Options{})
	pipe := p.RawPipe()
	if n, err := pipe.Wait(); n == 0 || err != nil {
		t.Fatalf("Wait = %d, %v", n, err)
	}
	pipe.SetReadDeadline(time.Unix(1, 0))
	if _, err := pipe.Wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait past the deadline: %v", err)
	}
	pipe.Discard()
	pipe.Discard()
	pipe.End() // after Discard: does nothing
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("child blocked on its output after Discard")
	}
	if st := p.Status(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestRawPipeGrowsWhenFull: a pipe that Wait finds full is grown, as a
// pump grows the pipes it reads: a fast child then runs ahead of its reader
// by more than the 64 KiB of a pipe as made. (The child writes its line at
// once, so that the pipe fills its pages to the last byte.)
func TestRawPipeGrowsWhenFull(t *testing.T) {
	const n = 4 << 20
	const pipeSize = 64 << 10
	p := start(t, "longline", child.Spec{Args: []string{strconv.Itoa(n)}, RawOutput: true}, child.Options{})
	pipe := p.RawPipe()
	deadline := time.Now().Add(10 * time.Second)
	for most := 0; most <= pipeSize; {
		w, err := pipe.Wait()
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, w)
		if time.Now().After(deadline) {
			t.Fatalf("the pipe never held more than %d bytes: not grown", most)
		}
		time.Sleep(5 * time.Millisecond)
	}
	out, err := readAll(t, pipe)
	if err != io.EOF {
		t.Fatalf("ended with %v", err)
	}
	if want := strings.Repeat("x", n) + "\nend\n"; string(out) != want {
		t.Fatalf("%d bytes of output, want the %d of the line", len(out), len(want))
	}
	pipe.End()
	if st := p.Wait(); st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestRawPipeClosedBySupervisor: a process that left the group (setsid)
// and holds the pipe open does not keep the run from ending: the
// supervisor closes the pipe, and Wait fails with an error that is neither
// io.EOF nor a deadline's, which the reader takes for the end.
func TestRawPipeClosedBySupervisor(t *testing.T) {
	p, err := child.Start(child.Spec{Path: "sh", Args: []string{"-c", "setsid sleep 30 & sleep 0.3; echo $!"},
		Env: []string{"PATH=" + os.Getenv("PATH")}, Stderr: child.StderrMerge, RawOutput: true},
		child.Options{KillGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pipe := p.RawPipe()
	out, err := readAll(t, pipe)
	if escaped, aerr := strconv.Atoi(strings.TrimSpace(string(out))); aerr == nil {
		syscall.Kill(escaped, syscall.SIGKILL)
	} else {
		t.Errorf("output %q", out)
	}
	if err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the read of a pipe held open ended with %v, want the error of a closed pipe", err)
	}
	if _, err := pipe.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("Read of the closed pipe: %v", err)
	}
	pipe.End()
	if st := p.Wait(); st.Code != 0 || st.Reason != child.ReasonExit {
		t.Fatalf("status %+v", st)
	}
}

// readLine reads want, the first output of a child, from pipe.
func readLine(t *testing.T, pipe *child.Pipe, want string) {
	t.Helper()
	pipe.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, len(want))
	if _, err := io.ReadFull(pipe, b); err != nil || string(b) != want {
		t.Fatalf("first output %q, %v; want %q", b, err, want)
	}
}

// waitZombie waits until the process pid has exited, and is a zombie
// waiting for its reap.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has not exited: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
