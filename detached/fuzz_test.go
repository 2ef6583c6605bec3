package detached

import (
	"slices"
	"strings"
	"testing"

	"github.com/rexec/rexec/store"
)

// FuzzProgress feeds output to a ProgressScanner in one chunk, byte by byte
// and in chunks of sizes drawn from seed: it must never panic, the three
// must agree with each other and with the line-by-line model, and the
// progress must keep its invariants. The three see the same task starts
// (taskStarted), each where the task number grew, with the progress before.
func FuzzProgress(f *testing.F) {
	var seedExample strings.Builder
	for _, step := range progressSeedExample {
		seedExample.WriteString(step.line + "\n")
	}
	f.Add([]byte(seedExample.String()), uint64(0))
	f.Add([]byte(progressMixed), uint64(7))
	f.Add([]byte("[1/3] A\r\n[50%] B\r[60%]\n[2]\n[101%] x\n[1/0]\n[-1]\n[abc]\n"), uint64(1))
	f.Add([]byte("[1] "+strings.Repeat("é", 300)+"\n"), uint64(3))

	f.Fuzz(func(t *testing.T, out []byte, seed uint64) {
		var wholeTasks, bytewiseTasks, chunkedTasks []store.Progress
		var whole ProgressScanner
		whole.taskStarted = func(prev store.Progress) { wholeTasks = append(wholeTasks, prev) }
		whole.Write(out)
		want := whole.Progress()
		checkProgressInvariants(t, want)
		if model := progressModel(out); want != model {
			t.Fatalf("one chunk:\n got %+v\nmodel %+v", want, model)
		}

		var bytewise ProgressScanner
		bytewise.taskStarted = func(prev store.Progress) { bytewiseTasks = append(bytewiseTasks, prev) }
		for i := range out {
			before, calls := bytewise.Progress(), len(bytewiseTasks)
			bytewise.Write(out[i : i+1])
			after := bytewise.Progress()
			checkProgressInvariants(t, after)
			// A byte ends one line at most.
			switch grew := after.Task > before.Task; {
			case grew && (len(bytewiseTasks) != calls+1 || bytewiseTasks[calls] != before):
				t.Fatalf("byte %d: task %d to %d: task starts %+v, want one more with %+v", i, before.Task, after.Task, bytewiseTasks[calls:], before)
			case !grew && len(bytewiseTasks) != calls:
				t.Fatalf("byte %d: task %d to %d: task starts %+v, want none", i, before.Task, after.Task, bytewiseTasks[calls:])
			}
		}
		if got := bytewise.Progress(); got != want {
			t.Fatalf("byte by byte:\n got %+v\nwant %+v", got, want)
		}

		if !slices.Equal(wholeTasks, bytewiseTasks) {
			t.Fatalf("task starts, one chunk %+v, byte by byte %+v", wholeTasks, bytewiseTasks)
		}

		var chunked ProgressScanner
		chunked.taskStarted = func(prev store.Progress) { chunkedTasks = append(chunkedTasks, prev) }
		x := seed | 1
		for rest := out; len(rest) > 0; {
			x ^= x << 13 // xorshift64
			x ^= x >> 7
			x ^= x << 17
			n := min(int(x%300)+1, len(rest))
			before := chunked.Progress()
			changed := chunked.Write(rest[:n])
			if changed != (chunked.Progress() != before) {
				t.Fatalf("Write = %v, progress before %+v, after %+v", changed, before, chunked.Progress())
			}
			rest = rest[n:]
		}
		if got := chunked.Progress(); got != want {
			t.Fatalf("in chunks (seed %d):\n got %+v\nwant %+v", seed, got, want)
		}
		if !slices.Equal(chunkedTasks, bytewiseTasks) {
			t.Fatalf("task starts, in chunks %+v, byte by byte %+v", chunkedTasks, bytewiseTasks)
		}
	})
}

// FuzzQueue drives the memory queue and a plain model with operations drawn
// from ops, and fails at their first difference.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("add, add front, remove, ready: queue operations as bytes"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		ops = ops[:min(len(ops), 4000)]
		next := func(n int) int {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return int(b) % n
		}
		queueOps(t, next, len(ops)/5)
	})
}
