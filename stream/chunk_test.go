package stream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/rexec/rexec/child"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// socketPair returns both ends of a real TCP connection.
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// TestChunkWriterOnTheWire: what a parked stream writes (small writes
// gathered, large ones sent without a copy, the last chunk with the run's
// end in its trailers) is a response that net/http's client reads back
// exactly, trailers included.
func TestChunkWriterOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     child.Status
		code   string
		signal string
	}{
		{"exit", child.Status{Code: 3}, "3", ""},
		{"signal", child.Status{Code: -1, Signal: syscall.SIGKILL}, "-1", "SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := socketPair(t)
			var want bytes.Buffer
			done := make(chan error, 1)
			writes := [][]byte{
				[]byte("a"), []byte("bc\n"), // gathered, then flushed
				bytes.Repeat([]byte("x"), directWrite), // sent at once
				[]byte("tail"), nil,                    // gathered, sent with the next
				bytes.Repeat([]byte("y"), 3*directWrite+1),
			}
			for _, p := range writes {
				want.Write(p)
			}
			go func() {
				head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: " + trailerExitCode + ", " + trailerSignal + "\r\n\r\n"
				if _, err := server.Write([]byte(head)); err != nil {
					done <- err
					return
				}
				cw := chunkWriter{conn: server}
				for i, p := range writes {
					if _, err := cw.Write(p); err != nil {
						done <- err
						return
					}
					if i == 1 {
						if err := cw.Flush(); err != nil {
							done <- err
							return
						}
					}
				}
				done <- cw.end(tc.st)
			}()
			resp, err := http.ReadResponse(bufio.NewReader(client), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want.Bytes()) {
				t.Fatalf("body %d bytes %q..., want %d bytes", len(body), body[:min(len(body), 20)], want.Len())
			}
			if c, s := resp.Trailer.Get(trailerExitCode), resp.Trailer.Get(trailerSignal); c != tc.code || s != tc.signal {
				t.Fatalf("trailers %q %q, want %q %q", c, s, tc.code, tc.signal)
			}
		})
	}
}

// TestLastChunkMatchesSetTrailers: the trailers of a parked stream and of a
// stream that net/http ends are the same header lines.
func TestLastChunkMatchesSetTrailers(t *testing.T) {
	st := child.Status{Code: -1, Signal: syscall.SIGTERM}
	h := http.Header{}
	setTrailers(h, st)
	var b strings.Builder
	h.Write(&b)
	got := strings.TrimPrefix(string(lastChunk(nil, st)), "0\r\n")
	if got != b.String()+"\r\n" {
		t.Fatalf("last chunk %q, want %q", got, b.String()+"\r\n")
	}
}
