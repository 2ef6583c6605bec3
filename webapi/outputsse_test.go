package webapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rexec/rexec/internal/testhttp"
)

// A run's output as Server-Sent Events: each event's id is the offset after
// it, and a stream that reconnects with Last-Event-ID gets the rest, with
// no gap and no byte twice; the end says where the output ends.
func TestOutputEventStream(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=lines lines EXE @@1 @@2", "-e=TESTCHILD=echo echo EXE @@1 @@2",
		`cut /bin/sh -c 'printf "ab\346\227"'`)
	id := s.submit(t, map[string]any{"name": "lines", "args": []string{"40", "20ms"}})
	open := func(last string) *bufio.Reader {
		t.Helper()
		code, br := openSSE(t, s.url, "", "/scripts/v1/output/"+id+"?follow=1", last)
		if code != 200 {
			t.Fatalf("output as events: %d", code)
		}
		return br
	}
	// next is the next event: its id, type and data (raw JSON).
	next := func(br *bufio.Reader) (id, event, data string) {
		t.Helper()
		e := testhttp.ReadEvent(t, br)
		return e.ID, e.Event, e.Data
	}
	var text strings.Builder
	br := open("")
	var last string
	for text.Len() < 60 {
		eid, event, data := next(br)
		var chunk string
		if event != "output" || json.Unmarshal([]byte(data), &chunk) != nil {
			t.Fatalf("event %s %s", event, data)
		}
		text.WriteString(chunk)
		if eid != fmt.Sprint(text.Len()) {
			t.Fatalf("id %s after %d bytes", eid, text.Len())
		}
		last = eid
	}
	br = open(last) // a reconnection
	for {
		eid, event, data := next(br)
		if event == "end" {
			if data != fmt.Sprintf(`{"offset":%d}`, text.Len()) {
				t.Fatalf("end %s after %d bytes", data, text.Len())
			}
			break
		}
		var chunk string
		json.Unmarshal([]byte(data), &chunk)
		text.WriteString(chunk)
		if eid != fmt.Sprint(text.Len()) {
			t.Fatalf("id %s after %d bytes", eid, text.Len())
		}
	}
	var want strings.Builder
	for i := range 40 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if text.String() != want.String() {
		t.Fatalf("the output by events, with a reconnection:\n%q\nwant\n%q", text.String(), want.String())
	}

	// Characters of several bytes arrive whole; a bad Last-Event-ID is a
	// 400, one past the end a 416.
	id = s.submit(t, map[string]any{"name": "echo", "args": []string{"ünï", "日本語 😀"}})
	s.waitState(t, id, "done")
	_, event, data := next(open(""))
	if event != "output" || data != `"ünï\n日本語 😀\n"` {
		t.Errorf("%s %s", event, data)
	}
	_, event, _ = next(open("3"))
	if event != "output" {
		t.Errorf("from the middle of a character: %s", event)
	}
	// An output that ends inside a character: its last bytes still come,
	// and the end is after them.
	cut := s.submit(t, map[string]any{"name": "cut"})
	s.waitState(t, cut, "done")
	id = cut
	br = open("")
	var got []string
	for {
		_, event, data := next(br)
		got = append(got, event+" "+data)
		if event == "end" {
			break
		}
	}
	if strings.Join(got, "; ") != `output "ab\ufffd\ufffd"; end {"offset":4}` && strings.Join(got, "; ") != `output "ab"; output "\ufffd\ufffd"; end {"offset":4}` {
		t.Errorf("an output cut inside a character: %q", got)
	}

	// Accept with q=0 refuses events: the plain form.
	req, _ := http.NewRequest("GET", s.url+"/scripts/v1/output/"+id, nil)
	req.Header.Set("Accept", "text/event-stream;q=0, text/plain")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("Accept text/event-stream;q=0: %v %v", resp.Header, err)
	} else {
		resp.Body.Close()
	}
	for last, want := range map[string]int{"x": 400, "-1": 400, "999999": 416} {
		req, _ := http.NewRequest("GET", s.url+"/scripts/v1/output/"+id, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Last-Event-ID", last)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Last-Event-ID %s: %d, want %d", last, resp.StatusCode, want)
		}
	}
}
