package webapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/webapi"
)

// Streams that go quiet are parked: served off net/http (stream/park.go). These
// tests park every stream at once (ParkAfter 1ms) and check that a parked
// stream is indistinguishable from one that is not.

func parkingServer(t *testing.T, cfg webapi.Config) *testServer {
	cfg.ParkAfter = time.Millisecond
	return newServer(t, serverOpts{cfg: cfg})
}

func wantParked(t *testing.T, s *testServer, alias string) {
	t.Helper()
	waitLog(t, s, `"alias":"`+alias+`","pid":`)
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, `"alias":"`+alias+`"`) && strings.Contains(l, "stream parked") {
			return
		}
	}
	t.Fatalf("stream %s was not parked:\n%s", alias, s.logs.String())
}

func TestParkedStreamBytesAndTrailers(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	const n = 5 << 20 // written in 12,345-byte writes: small and large chunks both
	resp, out := s.run(t, fake("pq", "quiet-gen", "100ms", strconv.Itoa(n), "3"))
	wantStatus(t, resp, out, 200)
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
	if c, sig := resp.Trailer.Get("Process-Exit-Code"), resp.Trailer.Get("Process-Signal"); c != "3" || sig != "" {
		t.Fatalf("trailers code %q signal %q", c, sig)
	}
	wantParked(t, s, "pq")
	waitLog(t, s, fmt.Sprintf(`"bytes":%d`, n))
}

func TestParkedStreamNDJSONWithHeartbeats(t *testing.T) {
	s := parkingServer(t, webapi.Config{Heartbeat: 30 * time.Millisecond})
	resp, out := s.run(t, fake("pn", "lines", "3", "150ms"), "Accept", "application/x-ndjson")
	wantStatus(t, resp, out, 200)
	var lines []string
	heartbeats := 0
	var end map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		switch {
		case m["heartbeat"] == true:
			heartbeats++
		case m["line"] != nil:
			lines = append(lines, m["line"].(string))
		default:
			end = m
		}
	}
	if strings.Join(lines, "|") != "line 0|line 1|line 2" {
		t.Fatalf("lines %q", lines)
	}
	if heartbeats == 0 {
		t.Fatalf("no heartbeat in 450ms of 30ms heartbeats:\n%s", out)
	}
	if end["exit_code"] != float64(0) || end["reason"] != "exit" {
		t.Fatalf("end object %v", end)
	}
	if resp.Trailer.Get("Process-Exit-Code") != "0" {
		t.Fatalf("trailers %v", resp.Trailer)
	}
	wantParked(t, s, "pn")
}

func TestParkedConnectionServesTheNextRequest(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	var reused []bool
	post := func(body any) string {
		b, _ := json.Marshal(body)
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/process", bytes.NewReader(b))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(out) + "|" + resp.Trailer.Get("Process-Exit-Code")
	}
	for i := range 3 {
		if got := post(fake("pk", "lines", "2", "60ms")); got != "line 0\nline 1\n|0" {
			t.Fatalf("run %d: %q", i, got)
		}
	}
	if got := post(fake("pk", "echo", "short")); got != "short\n|0" {
		t.Fatalf("short run after parked ones: %q", got)
	}
	if fmt.Sprint(reused) != "[false true true true]" {
		t.Fatalf("connection reused: %v, want one connection for all four runs", reused)
	}
	wantParked(t, s, "pk")
}

func TestParkedStreamPipelinedRequest(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var reqs bytes.Buffer
	for _, body := range []map[string]any{fake("pp1", "lines", "2", "80ms"), fake("pp2", "echo", "second")} {
		b, _ := json.Marshal(body)
		fmt.Fprintf(&reqs, "POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	}
	if _, err := conn.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for _, want := range []string{"line 0\nline 1\n", "second\n"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(resp.Body)
		if err != nil || string(out) != want || resp.Trailer.Get("Process-Exit-Code") != "0" {
			t.Fatalf("response %q %v trailers %v, want %q", out, err, resp.Trailer, want)
		}
	}
}

func TestParkedStreamDisconnectKillsTheGroup(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	resp := s.post(t, ctx, fake("pd", "grandchild"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := strconv.Atoi(strings.TrimSpace(line))
	wantParked(t, s, "pd")
	cancel()
	if !testchild.WaitGone(gc, 5*time.Second) {
		t.Fatalf("grandchild %d survived the disconnect of a parked stream", gc)
	}
	waitLog(t, s, `"reason":"disconnect"`)
	// The alias is free again.
	resp2, out := s.run(t, fake("pd", "echo", "again"))
	wantStatus(t, resp2, out, 200)
}

func TestParkedStreamsEndAtShutdown(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	resp := s.post(t, context.Background(), fake("ps", "term-exit"))
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q", line)
	}
	wantParked(t, s, "ps")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if c := resp.Trailer.Get("Process-Exit-Code"); c != "7" {
		t.Fatalf("exit code %q", c)
	}
	waitLog(t, s, `"reason":"shutdown"`)
}

func TestHTTP10StreamIsNotParked(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := json.Marshal(fake("p10", "lines", "2", "50ms"))
	fmt.Fprintf(conn, "POST /process HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	out, err := io.ReadAll(conn)
	if err != nil || !bytes.HasSuffix(out, []byte("\r\n\r\nline 0\nline 1\n")) {
		t.Fatalf("HTTP/1.0 response %q, %v", out, err)
	}
	waitLog(t, s, `"alias":"p10","cmd"`)
	if strings.Contains(s.logs.String(), "stream parked") {
		t.Fatal("an HTTP/1.0 stream was parked")
	}
}

// TestTextStreamWithParkingOff covers the path that HTTP/1.0 clients and
// embedders without a socket take: the text stream read through the child's
// output channel and written through net/http to its end.
func TestTextStreamWithParkingOff(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{ParkAfter: -1}})
	const n = 5 << 20
	resp, out := s.run(t, fake("np", "quiet-gen", "60ms", strconv.Itoa(n), "4"))
	wantStatus(t, resp, out, 200)
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
	if c := resp.Trailer.Get("Process-Exit-Code"); c != "4" {
		t.Fatalf("exit code %q", c)
	}
	if strings.Contains(s.logs.String(), "stream parked") {
		t.Fatal("a stream was parked with ParkAfter -1")
	}
}

// TestBulkStreamIsParked: a stream that never goes quiet is parked once it
// has sent rawBulk (1 MiB) through net/http, and copied off it from then on.
func TestBulkStreamIsParked(t *testing.T) {
	s := newServer(t, serverOpts{})
	const n = 8 << 20
	resp, out := s.run(t, fake("bulk", "gen", strconv.Itoa(n)))
	wantStatus(t, resp, out, 200)
	if err := testchild.CheckGen(out, n); err != nil {
		t.Fatal(err)
	}
	wantParked(t, s, "bulk")
}

// TestParkedOutputIsNotHeldBack: a line written to a parked stream reaches
// the client while the child goes on running.
func TestParkedOutputIsNotHeldBack(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := s.post(t, ctx, fake("pl", "late-ready", "150ms"))
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "ready\n" {
			t.Fatalf("line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the line written after parking never arrived")
	}
	wantParked(t, s, "pl")
}

// TestShutdownClosesIdleGivenBackConnections: a connection given back to
// the server after a parked stream, idle since, does not hold up a shutdown
// (http.Server alone would wait 5 seconds for it, taking it for new).
func TestShutdownClosesIdleGivenBackConnections(t *testing.T) {
	s := parkingServer(t, webapi.Config{})
	resp, out := s.run(t, fake("pi", "lines", "2", "50ms"))
	wantStatus(t, resp, out, 200)
	wantParked(t, s, "pi")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("shutdown took %v with one idle connection", d)
	}
}

// TestShutdownGraceCutsParkedStreams: when the shutdown's grace ends before
// a parked stream's child is gone (it ignores SIGTERM), the connection is
// cut and Close returns then, not after the kill grace.
func TestShutdownGraceCutsParkedStreams(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{ParkAfter: time.Millisecond}, killGrace: 2 * time.Second})
	resp := s.post(t, context.Background(), fake("pg", "ignore-term"))
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q", line)
	}
	wantParked(t, s, "pg")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the grace's deadline", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("Close took %v: it waited for the kill grace", d)
	}
	if rest, err := io.ReadAll(br); err == nil {
		t.Fatalf("the stream ended cleanly (%q) instead of being cut", rest)
	}
	// The child still goes, at the kill grace.
	waitLog(t, s, `"signal":"SIGKILL"`)
}

// TestChattyStreamIsParkedWithAge: a stream that is never quiet for long and
// sends little is parked once it has run for a second.
func TestChattyStreamIsParkedWithAge(t *testing.T) {
	s := newServer(t, serverOpts{})
	resp, out := s.run(t, fake("chatty", "lines", "120", "10ms"))
	wantStatus(t, resp, out, 200)
	if n := strings.Count(string(out), "\n"); n != 120 || !strings.HasSuffix(string(out), "line 119\n") {
		t.Fatalf("%d lines: %q...", n, out[:min(len(out), 40)])
	}
	wantParked(t, s, "chatty")
}
