package plugin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"go.uber.org/goleak"
)

// The test binary is also the plugin the tests start: with
// REXEC_TEST_PLUGIN set, it speaks JSON-RPC on stdin and stdout as a
// Serverboards plugin writes it (no "jsonrpc" member, errors as strings).
func TestMain(m *testing.M) {
	if mode := os.Getenv("REXEC_TEST_PLUGIN"); mode != "" {
		os.Exit(fakePlugin(mode))
	}
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

// fakePlugin serves calls until stdin ends:
//
//	pid          its process id
//	echo         its params
//	sleep        sleeps params[0] milliseconds, then answers
//	fail         an error that is a string
//	exit         exits with status params[0]
//	noise        prints a debug line on stdout before it answers
//	long         answers with a line longer than MaxLine
//	stderr       writes params[0] lines to stderr, then answers
//	call         calls the server's method params[0] with params[1], and answers with the server's answer
//	got          the notifications received so far: [{"method", "params"}]
//
// In mode "crash" it exits at once, with status 1; in mode "once" it
// answers one call and exits with status 0 at once, as a one-shot script
// does.
func fakePlugin(mode string) int {
	if mode == "crash" {
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 4<<20)
	out := bufio.NewWriter(os.Stdout)
	send := func(v any) {
		b, _ := json.Marshal(v)
		out.Write(append(b, '\n'))
		out.Flush()
	}
	got := []map[string]any{}
	for in.Scan() {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal(in.Bytes(), &req) != nil || req.Method == "" {
			continue // an answer to a call of ours, read in "call"
		}
		if len(req.ID) == 0 {
			got = append(got, map[string]any{"method": req.Method, "params": req.Params})
			continue
		}
		answer := func(result any) { send(map[string]any{"id": req.ID, "result": result}) }
		var first int // params[0], for the methods that take a number
		var nums []int
		if json.Unmarshal(req.Params, &nums) == nil && len(nums) > 0 {
			first = nums[0]
		}
		switch req.Method {
		case "pid":
			answer(os.Getpid())
		case "echo":
			answer(req.Params)
		case "sleep":
			time.Sleep(time.Duration(first) * time.Millisecond)
			answer("slept")
		case "fail":
			send(map[string]any{"id": req.ID, "error": "it went wrong"})
		case "exit":
			return first
		case "noise":
			fmt.Fprintln(out, "debug: hello from the plugin")
			answer("noisy")
		case "long":
			answer(strings.Repeat("x", MaxLine+10))
		case "stderr":
			for i := range first {
				fmt.Fprintf(os.Stderr, "line %d of stderr\n", i)
			}
			answer("logged")
		case "call":
			var p []json.RawMessage
			json.Unmarshal(req.Params, &p)
			var method string
			json.Unmarshal(p[0], &method)
			send(map[string]any{"id": "srv-1", "method": method, "params": p[1]})
			for {
				if !in.Scan() {
					return 2
				}
				var msg struct {
					ID json.RawMessage `json:"id"`
				}
				if json.Unmarshal(in.Bytes(), &msg) == nil && len(msg.ID) > 0 {
					break
				}
				got = append(got, map[string]any{"notification": json.RawMessage(in.Bytes())})
			}
			answer(json.RawMessage(in.Bytes()))
		case "got":
			answer(got)
		default:
			send(map[string]any{"id": req.ID, "error": map[string]any{"code": -32601, "message": "no method " + req.Method}})
		}
		if mode == "once" {
			return 0
		}
	}
	return 0
}
