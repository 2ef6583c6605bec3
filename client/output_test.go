package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rexec/rexec/client"
)

// The resumption of a run's output, against servers that cut their answers
// in chosen places (the tests against a real server, through a proxy that
// cuts connections, are the rexec command's: TestLogsResumeAfterCutConnections).

// outputServer serves run "r"'s output, content, as /scripts/v1 does, and
// its status (done) once served is true. Each answer to a follower goes
// through cut, which says how many bytes it gets before its connection is
// cut (-1: to the end, with its trailer).
type outputServer struct {
	content []byte
	cut     func(n int) int // n: the answer's number, from 0

	mu      sync.Mutex
	offsets []int64 // the offset of each request
	status  func() (int, string)
}

func (s *outputServer) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/scripts/v1/status/r":
			code, body := http.StatusOK, fmt.Sprintf(`{"success":true,"id":"r","state":"done","ended":"exit","exit_code":3,"output_size":%d}`, len(s.content))
			if s.status != nil {
				code, body = s.status()
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, body)
		case r.URL.Path == "/scripts/v1/output/r":
			off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
			if err != nil || off > int64(len(s.content)) {
				t.Errorf("offset %q", r.URL.Query().Get("offset"))
				http.Error(w, "bad offset", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			s.mu.Lock()
			n := len(s.offsets)
			s.offsets = append(s.offsets, off)
			s.mu.Unlock()
			rest := s.content[off:]
			w.Header().Set(client.OutputOffsetHeader, strconv.FormatInt(off, 10))
			w.Header().Set("Trailer", client.OutputEndTrailer)
			if k := s.cut(n); k >= 0 {
				w.Write(rest[:min(k, len(rest))])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			w.Write(rest)
			w.Header().Set(client.OutputEndTrailer, strconv.Itoa(len(s.content)))
		default:
			http.NotFound(w, r)
		}
	}
}

func (s *outputServer) start(t *testing.T) *client.Client {
	t.Helper()
	srv := httptest.NewServer(s.handler(t))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// pattern is n bytes that show where each came from.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestOutputResumesCutAnswers(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			// Five answers cut after 0, 1, 1000, 40000 and 0 bytes, then
			// one to the end.
			cuts := []int{0, 1, 1000, 40000, 0}
			s := &outputServer{content: pattern(100000), cut: func(n int) int {
				if n < len(cuts) {
					return cuts[n]
				}
				return -1
			}}
			c := s.start(t)
			var got bytes.Buffer
			var retries []int64
			opts := client.OutputOptions{Offset: 10, Retrying: func(err error, offset int64, wait time.Duration) {
				if !errors.Is(err, client.ErrOutputCut) || wait > 5*time.Second {
					t.Errorf("retrying after %v, in %v", err, wait)
				}
				retries = append(retries, offset)
			}}
			var next int64
			var err error
			if follow {
				var st client.RunStatus
				st, next, err = c.Follow(context.Background(), "r", &got, opts)
				if err == nil && (st.State != client.StateDone || st.ExitCode == nil || *st.ExitCode != 3) {
					t.Fatalf("status %+v", st)
				}
			} else {
				next, err = c.CopyOutput(context.Background(), "r", &got, opts)
			}
			if err != nil || next != 100000 || !bytes.Equal(got.Bytes(), s.content[10:]) {
				t.Fatalf("next %d, %v, %d bytes (equal: %v)", next, err, got.Len(), bytes.Equal(got.Bytes(), s.content[10:]))
			}
			want := []int64{10, 10, 11, 1011, 41011, 41011}
			if fmt.Sprint(s.offsets) != fmt.Sprint(want) || fmt.Sprint(retries) != fmt.Sprint(want[1:]) {
				t.Fatalf("requests at %v, retries at %v; want %v", s.offsets, retries, want)
			}
		})
	}
}

func TestFollowAsksAgainUntilTheRunIsDone(t *testing.T) {
	// The answer ends cleanly (a server shutting down does) while the run
	// still runs: Follow asks again from where it is.
	s := &outputServer{content: []byte("all of it\n"), cut: func(int) int { return -1 }}
	var asked int
	s.status = func() (int, string) {
		asked++
		if asked == 1 {
			return 200, `{"success":true,"id":"r","state":"running","output_size":10}`
		}
		return 200, `{"success":true,"id":"r","state":"done","ended":"exit","exit_code":0,"output_size":10}`
	}
	c := s.start(t)
	var got bytes.Buffer
	st, next, err := c.Follow(context.Background(), "r", &got, client.OutputOptions{RetryFor: time.Minute})
	if err != nil || next != 10 || got.String() != "all of it\n" || st.State != client.StateDone || fmt.Sprint(s.offsets) != "[0 10]" {
		t.Fatalf("%+v %d %v %q, requests at %v", st, next, err, got.String(), s.offsets)
	}
}

func TestFollowOfARemovedRun(t *testing.T) {
	s := &outputServer{content: []byte("done\n"), cut: func(int) int { return -1 }}
	s.status = func() (int, string) {
		return 404, `{"success":false,"error":"no run with this id","errorcode":"invalid_id"}`
	}
	c := s.start(t)
	var got bytes.Buffer
	_, next, err := c.Follow(context.Background(), "r", &got, client.OutputOptions{})
	if !errors.Is(err, client.ErrRunRemoved) || next != 5 || got.String() != "done\n" {
		t.Fatalf("%d %v %q", next, err, got.String())
	}
}

func TestOutputGivesUp(t *testing.T) {
	s := &outputServer{content: pattern(100), cut: func(n int) int {
		if n == 0 {
			return 30
		}
		return 0 // nothing more, ever
	}}
	c := s.start(t)
	var got bytes.Buffer
	start := time.Now()
	next, err := c.CopyOutput(context.Background(), "r", &got, client.OutputOptions{RetryFor: 500 * time.Millisecond})
	if !errors.Is(err, client.ErrOutputCut) || !strings.Contains(err.Error(), "gave up resuming after 500ms") || next != 30 || got.Len() != 30 {
		t.Fatalf("%d %v, %d bytes", next, err, got.Len())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	// RetryFor < 0: no retry at all.
	s.offsets = nil
	if _, err := c.CopyOutput(context.Background(), "r", io.Discard, client.OutputOptions{RetryFor: -1}); !errors.Is(err, client.ErrOutputCut) || len(s.offsets) != 1 {
		t.Fatalf("%v after %d requests", err, len(s.offsets))
	}
}

func TestOutputIsNotRetriedWhen(t *testing.T) {
	t.Run("writing fails", func(t *testing.T) {
		s := &outputServer{content: pattern(100), cut: func(int) int { return -1 }}
		c := s.start(t)
		boom := errors.New("disk on fire")
		next, err := c.CopyOutput(context.Background(), "r", failingWriter{boom}, client.OutputOptions{})
		if !errors.Is(err, boom) || next != 0 || len(s.offsets) != 1 {
			t.Fatalf("%d %v", next, err)
		}
	})
	t.Run("the server never answered", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		c, _ := client.New("http://"+ln.Addr().String(), "")
		if _, _, err := c.Follow(context.Background(), "r", io.Discard, client.OutputOptions{}); !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("the answer is not rexec's", func(t *testing.T) {
		for name, h := range map[string]http.HandlerFunc{
			"another offset": func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(client.OutputOffsetHeader, "5")
			},
			"a trailer that disagrees": func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(client.OutputOffsetHeader, "0")
				w.Header().Set("Trailer", client.OutputEndTrailer)
				io.WriteString(w, "abc")
				w.Header().Set(client.OutputEndTrailer, "4")
			},
		} {
			srv := httptest.NewServer(h)
			c, _ := client.New(srv.URL, "")
			_, err := c.CopyOutput(context.Background(), "r", io.Discard, client.OutputOptions{})
			c.CloseIdleConnections()
			srv.Close()
			if !errors.Is(err, client.ErrProtocol) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	t.Run("the run is not there", func(t *testing.T) {
		s := &outputServer{content: nil, cut: func(int) int { return -1 }}
		c := s.start(t)
		_, err := c.CopyOutput(context.Background(), "other", io.Discard, client.OutputOptions{})
		var se *client.ServerError
		if !errors.As(err, &se) || se.StatusCode != 404 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("the context ends", func(t *testing.T) {
		s := &outputServer{content: pattern(10), cut: func(int) int { return 0 }}
		c := s.start(t)
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		_, err := c.CopyOutput(ctx, "r", io.Discard, client.OutputOptions{Retrying: func(error, int64, time.Duration) {
			if n++; n == 2 {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) || n != 2 {
			t.Fatalf("%v after %d retries", err, n)
		}
	})
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestUnixTimeAndSeconds(t *testing.T) {
	var v struct {
		T client.UnixTime `json:"t"`
		Z client.UnixTime `json:"z"`
		S client.Seconds  `json:"s"`
		D client.Seconds  `json:"d"`
	}
	if err := json.Unmarshal([]byte(`{"t":1795526178,"z":0,"s":1.5,"d":"2m"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.T.Unix() != 1795526178 || !v.Z.IsZero() || time.Duration(v.S) != 1500*time.Millisecond || time.Duration(v.D) != 2*time.Minute {
		t.Fatalf("%+v", v)
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"t":1795526178,"z":0,"s":1.5,"d":120}` {
		t.Fatalf("%s", b)
	}
}
