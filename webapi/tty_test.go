package webapi_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// ttyRun is the request of the tty fake child on a terminal, with the
// fields given as pairs.
func ttyRun(alias string, kv ...any) map[string]any {
	return with(with(fake(alias, "tty"), "tty", true), kv...)
}

// with returns m with the fields given as pairs.
func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// POST /process with "tty": the terminal's bytes, its end as any run's.
func TestProcessOnATerminal(t *testing.T) {
	s := newServer(t, serverOpts{})
	resp, out := s.run(t, ttyRun("t", "stdin", "typed\n"))
	wantStatus(t, resp, out, 200)
	for _, want := range []string{"isatty true true true\r\n", "typed\r\n", `read "typed\n"`, "eof\r\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if resp.Trailer.Get("Process-Exit-Code") != "0" || resp.Trailer.Get("Process-End-Reason") != "exit" {
		t.Errorf("trailers %v", resp.Trailer)
	}
	resp, out = s.run(t, ttyRun("n"), "Accept", "application/x-ndjson")
	wantStatus(t, resp, out, 200)
	if !strings.Contains(string(out), `{"stream":"stdout","line":"isatty true true true\r"}`) || !strings.Contains(string(out), `"exit_code":0`) {
		t.Errorf("NDJSON of a terminal: %s", out)
	}
	resp, out = s.run(t, ttyRun("d", "stderr", "discard"))
	wantError(t, resp, out, 400, "stderr must be merged")
	var e map[string]any
	json.Unmarshal(out, &e)
	if len(e) != 1 {
		t.Errorf("error body %s", out)
	}
}
