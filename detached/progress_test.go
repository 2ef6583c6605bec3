package detached

import (
	"github.com/rexec/rexec/store"

	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The example of the seed's "Tracking store.Progress", line by line, with what
// status should say after each.
var progressSeedExample = []struct {
	line string
	want store.Progress
}{
	{"[1/3] Task 1", store.Progress{Task: 1, TaskTotal: 3, TaskTitle: "Task 1"}},
	{"[50%] Subtask", store.Progress{Task: 1, TaskTotal: 3, TaskTitle: "Task 1", SubtaskPercent: 50, SubtaskTitle: "Subtask"}},
	{"[88%] Subtask", store.Progress{Task: 1, TaskTotal: 3, TaskTitle: "Task 1", SubtaskPercent: 88, SubtaskTitle: "Subtask"}},
	{"[2] Task 2", store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Task 2"}},
	{"[15%] Subtask", store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Task 2", SubtaskPercent: 15, SubtaskTitle: "Subtask"}},
	{"[45%] Subtask", store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Task 2", SubtaskPercent: 45, SubtaskTitle: "Subtask"}},
	{"[98%] Subtask", store.Progress{Task: 2, TaskTotal: 3, TaskTitle: "Task 2", SubtaskPercent: 98, SubtaskTitle: "Subtask"}},
	{"[3] Task 3", store.Progress{Task: 3, TaskTotal: 3, TaskTitle: "Task 3"}},
}

func TestProgressSeedExample(t *testing.T) {
	var s ProgressScanner
	if got := s.Progress(); got != (store.Progress{}) {
		t.Fatalf("zero scanner: %+v", got)
	}
	for _, step := range progressSeedExample {
		if !s.Write([]byte(step.line + "\n")) {
			t.Errorf("%q: Write reported no change", step.line)
		}
		if got := s.Progress(); got != step.want {
			t.Errorf("after %q:\n got %+v\nwant %+v", step.line, got, step.want)
		}
	}
}

// progressMixed is output with progress, other output, CRLF, a progress
// bar's bare CR, binary bytes and a long line.
var progressMixed = "starting\n[1/4] Fetch\r\n  [2/4] not progress\n[10%] a\r[20%] b\r[30%] c\n" +
	"debug: [3] inside\n\x00\xff\xfe\n[2]\tCompile \xff\t\n[abc] x\n[75%]\n" +
	"[3] " + strings.Repeat("é", 200) + "\n[40%]   " + strings.Repeat("x", 1000) + "\n[4/4] Done  \n[100%]Finished\n[1/1] unterminated"

func TestProgressSplitAnywhere(t *testing.T) {
	inputs := map[string]string{"seed": "", "mixed": progressMixed}
	for _, step := range progressSeedExample {
		inputs["seed"] += step.line + "\n"
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var whole ProgressScanner
			whole.Write([]byte(in))
			want := whole.Progress()
			if model := progressModel([]byte(in)); want != model {
				t.Fatalf("one chunk:\n got %+v\nwant %+v", want, model)
			}
			for i := range len(in) + 1 {
				for _, j := range []int{i, i + 1, i + 7, len(in)} {
					if j > len(in) {
						continue
					}
					var s ProgressScanner
					s.Write([]byte(in[:i]))
					s.Write([]byte(in[i:j]))
					s.Write([]byte(in[j:]))
					if got := s.Progress(); got != want {
						t.Fatalf("split at %d and %d:\n got %+v\nwant %+v", i, j, got, want)
					}
				}
			}
			var s ProgressScanner
			for i := range len(in) {
				s.Write([]byte{in[i]})
			}
			if got := s.Progress(); got != want {
				t.Fatalf("byte by byte:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestProgressMixed(t *testing.T) {
	var s ProgressScanner
	s.Write([]byte(progressMixed))
	want := store.Progress{Task: 4, TaskTotal: 4, TaskTitle: "Done", SubtaskPercent: 100, SubtaskTitle: "Finished"}
	if got := s.Progress(); got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestProgressLines(t *testing.T) {
	start := store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before", SubtaskPercent: 40, SubtaskTitle: "Sub"}
	tests := []struct {
		name, line string
		want       store.Progress // what follows start and the line; zero: start unchanged
	}{
		{"task of total", "[3/7] Next", store.Progress{Task: 3, TaskTotal: 7, TaskTitle: "Next"}},
		{"task keeps total", "[4] Next", store.Progress{Task: 4, TaskTotal: 5, TaskTitle: "Next"}},
		{"task beyond total", "[9/3] Over", store.Progress{Task: 9, TaskTotal: 3, TaskTitle: "Over"}},
		{"leading zeros", "[007/010] Z", store.Progress{Task: 7, TaskTotal: 10, TaskTitle: "Z"}},
		{"nine digits", "[999999999/999999999] Big", store.Progress{Task: 999999999, TaskTotal: 999999999, TaskTitle: "Big"}},
		{"no space", "[3/7]Next", store.Progress{Task: 3, TaskTotal: 7, TaskTitle: "Next"}},
		{"no title", "[3]", store.Progress{Task: 3, TaskTotal: 5}},
		{"blanks only", "[3] \t ", store.Progress{Task: 3, TaskTotal: 5}},
		{"blanks around", "[3]  \t Title with  inner  spaces \t ", store.Progress{Task: 3, TaskTotal: 5, TaskTitle: "Title with  inner  spaces"}},
		{"brackets in title", "[3] [1/2] x]", store.Progress{Task: 3, TaskTotal: 5, TaskTitle: "[1/2] x]"}},
		{"same task again resets subtask", "[2] Before", store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before"}},
		{"subtask", "[75%] More", store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before", SubtaskPercent: 75, SubtaskTitle: "More"}},
		{"subtask 0", "[0%] Zero", store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before", SubtaskTitle: "Zero"}},
		{"subtask 100", "[100%]", store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before", SubtaskPercent: 100}},
		{"subtask 000", "[000%] z", store.Progress{Task: 2, TaskTotal: 5, TaskTitle: "Before", SubtaskTitle: "z"}},
		{"not UTF-8", "[3] a\xffb\xfe\xfd", store.Progress{Task: 3, TaskTotal: 5, TaskTitle: "a\uFFFDb\uFFFD"}},

		{"words", "[abc] x", store.Progress{}},
		{"empty", "[] x", store.Progress{}},
		{"total 0", "[1/0] x", store.Progress{}},
		{"task 0", "[0] x", store.Progress{}},
		{"task 0 of 3", "[0/3] x", store.Progress{}},
		{"negative", "[-1] x", store.Progress{}},
		{"plus", "[+1] x", store.Progress{}},
		{"percent 101", "[101%] x", store.Progress{}},
		{"negative percent", "[-5%] x", store.Progress{}},
		{"decimal percent", "[50.5%] x", store.Progress{}},
		{"percent twice", "[50%%] x", store.Progress{}},
		{"percent alone", "[%] x", store.Progress{}},
		{"percent of total", "[1/2%] x", store.Progress{}},
		{"no task", "[/3] x", store.Progress{}},
		{"no total", "[1/] x", store.Progress{}},
		{"two slashes", "[1/2/3] x", store.Progress{}},
		{"ten digits", "[1234567890] x", store.Progress{}},
		{"space inside", "[ 1/3] x", store.Progress{}},
		{"space before bracket", " [1/3] x", store.Progress{}},
		{"text before bracket", "x[1/3] x", store.Progress{}},
		{"unclosed", "[1/3 x", store.Progress{}},
		{"non-ASCII digit", "[１] x", store.Progress{}},
		{"long bracket", "[" + strings.Repeat("1", 100) + "] x", store.Progress{}},
		{"empty line", "", store.Progress{}},
		{"plain output", "Task 1 of 3", store.Progress{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ProgressScanner
			s.p = start
			changed := s.Write([]byte(tt.line + "\n"))
			want := tt.want
			if want == (store.Progress{}) {
				want = start
			}
			if got := s.Progress(); got != want {
				t.Errorf("%q:\n got %+v\nwant %+v", tt.line, got, want)
			}
			if changed != (want != start) {
				t.Errorf("%q: Write = %v", tt.line, changed)
			}
			if model := progressModelFrom(start, []byte(tt.line+"\n")); model != want {
				t.Errorf("the test's model disagrees: %+v", model)
			}
		})
	}
}

func TestProgressLineEnds(t *testing.T) {
	tests := []struct {
		name, in string
		want     store.Progress
	}{
		{"LF", "[1/2] A\n", store.Progress{Task: 1, TaskTotal: 2, TaskTitle: "A"}},
		{"CRLF", "[1/2] A\r\n[50%] B\r\n", store.Progress{Task: 1, TaskTotal: 2, TaskTitle: "A", SubtaskPercent: 50, SubtaskTitle: "B"}},
		{"bare CR", "[10%] B\r[20%] C\r", store.Progress{SubtaskPercent: 20, SubtaskTitle: "C"}},
		{"CR ends the title", "[1/2] A\rrest\n", store.Progress{Task: 1, TaskTotal: 2, TaskTitle: "A"}},
		{"unterminated", "[1/2] A\n[2] B", store.Progress{Task: 1, TaskTotal: 2, TaskTitle: "A"}},
		{"unterminated bracket", "[1/2", store.Progress{}},
		{"blank lines", "\n\n\r\n[1/2] A\n\n", store.Progress{Task: 1, TaskTotal: 2, TaskTitle: "A"}},
		{"subtask before any task", "[5%] early\n", store.Progress{SubtaskPercent: 5, SubtaskTitle: "early"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ProgressScanner
			s.Write([]byte(tt.in))
			if got := s.Progress(); got != tt.want {
				t.Errorf("%q:\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestProgressChanged(t *testing.T) {
	var s ProgressScanner
	for _, step := range []struct {
		in   string
		want bool
	}{
		{"[1/3] A", false}, // not ended yet
		{"\n", true},
		{"[1/3] A\n", false}, // the same again
		{"noise\n[abc]\n", false},
		{"[50%] x\n[1/3] A\n", false}, // back where it was
		{"[50%] x\n", true},
	} {
		if got := s.Write([]byte(step.in)); got != step.want {
			t.Errorf("Write(%q) = %v, want %v", step.in, got, step.want)
		}
	}
}

// taskStarted sees each task a line starts, numbered higher than the one
// before, with the progress before it; even when a later line of the same
// Write takes the progress back (Write then reports no change).
func TestProgressTaskStarted(t *testing.T) {
	var s ProgressScanner
	var starts []store.Progress
	s.taskStarted = func(prev store.Progress) { starts = append(starts, prev) }
	s.Write([]byte("[2/4] two\n[50%] half\n[2] two again\n[1] one\n[1/4] one\n[3] three\n"))
	want := []store.Progress{
		{},
		{Task: 1, TaskTotal: 4, TaskTitle: "one"},
	}
	if !slices.Equal(starts, want) {
		t.Errorf("task starts %+v, want %+v", starts, want)
	}
	starts = nil
	if changed := s.Write([]byte("[4] four\n[3] three\n")); changed || len(starts) != 1 || starts[0].Task != 3 {
		t.Errorf("a task started and undone in one Write: changed %v, starts %+v", changed, starts)
	}
	// A progress set by the callback API is where the next line starts.
	starts = nil
	s.SetProgress(store.Progress{Task: 7, TaskTitle: "seven"})
	s.Write([]byte("[5] five\n[8] eight\n"))
	if len(starts) != 1 || starts[0].Task != 5 {
		t.Errorf("after SetProgress: starts %+v", starts)
	}
}

func TestProgressLongTitles(t *testing.T) {
	tests := []struct {
		name, title, want string
	}{
		{"ASCII", strings.Repeat("a", 1000), strings.Repeat("a", maxProgressTitle)},
		{"exactly the limit", strings.Repeat("b", maxProgressTitle), strings.Repeat("b", maxProgressTitle)},
		// "é" is 2 bytes: the cut would split the 129th.
		{"cut between characters", "x" + strings.Repeat("é", 200), "x" + strings.Repeat("é", 127)},
		{"4-byte characters", strings.Repeat("😀", 100), strings.Repeat("😀", 64)},
		{"blanks at the cut", strings.Repeat("c", 250) + strings.Repeat(" ", 20) + "d", strings.Repeat("c", 250)},
		// Each lone invalid byte becomes 3 bytes: cut again at the limit.
		{"replacements grow", strings.Repeat("\xffa", 200), strings.Repeat("\uFFFDa", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s ProgressScanner
			s.Write([]byte("[1] " + tt.title + "\n"))
			got := s.Progress().TaskTitle
			if got != tt.want {
				t.Errorf("title %d bytes %q,\nwant %d bytes %q", len(got), got, len(tt.want), tt.want)
			}
			if len(got) > maxProgressTitle || !utf8.ValidString(got) {
				t.Errorf("title of %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
		})
	}
}

// TestProgressMemoryBounded feeds lines of many megabytes, in chunks as a
// pipe returns them, and checks that the scanner keeps no more than a title.
func TestProgressMemoryBounded(t *testing.T) {
	chunk := bytes.Repeat([]byte("z"), 64<<10)
	for _, start := range []string{"", "[1/2] ", "[50%]", "[1/2"} {
		var s ProgressScanner
		s.Write([]byte(start))
		for range 160 { // 10 MiB
			s.Write(chunk)
			if c := cap(s.title); c > 2*maxProgressTitle {
				t.Fatalf("line starting %q: the scanner holds %d bytes", start, c)
			}
		}
		s.Write([]byte("\n[2/2] after\n"))
		if got := s.Progress(); got.Task != 2 || got.TaskTitle != "after" {
			t.Errorf("line starting %q: progress after it %+v", start, got)
		}
	}
	var s ProgressScanner
	allocs := testing.AllocsPerRun(100, func() {
		s.Write([]byte("[1/2] a title of some length\n[50%] sub\nplain output line\n"))
	})
	if allocs > 4 { // the titles as strings
		t.Errorf("%v allocations per Write", allocs)
	}
}

func TestProgressBinary(t *testing.T) {
	bin := make([]byte, 0, 1<<16)
	x := uint32(1)
	for range cap(bin) {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		bin = append(bin, byte(x))
	}
	var s ProgressScanner
	s.Write(bin)
	checkProgressInvariants(t, s.Progress())
	if got, want := s.Progress(), progressModel(bin); got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	s.Write([]byte("\n[1/1] text\n"))
	if got := s.Progress(); got.TaskTitle != "text" {
		t.Errorf("after binary output: %+v", got)
	}
}

func checkProgressInvariants(t *testing.T, p store.Progress) {
	t.Helper()
	if p.Task < 0 || p.TaskTotal < 0 || p.SubtaskPercent < 0 || p.SubtaskPercent > 100 {
		t.Errorf("numbers out of range: %+v", p)
	}
	if p.Task == 0 && (p.TaskTotal != 0 || p.TaskTitle != "") {
		t.Errorf("a total or title without a task: %+v", p)
	}
	for _, title := range []string{p.TaskTitle, p.SubtaskTitle} {
		if len(title) > maxProgressTitle || !utf8.ValidString(title) ||
			strings.ContainsAny(title, "\r\n") || strings.Trim(title, " \t") != title {
			t.Errorf("bad title %q", title)
		}
	}
}

// progressModel is the scanner's rules applied the obvious way: whole
// output in memory, split into lines.
func progressModel(out []byte) store.Progress { return progressModelFrom(store.Progress{}, out) }

func progressModelFrom(p store.Progress, out []byte) store.Progress {
	lines := bytes.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' })
	if len(out) > 0 && out[len(out)-1] != '\n' && out[len(out)-1] != '\r' && len(lines) > 0 {
		lines = lines[:len(lines)-1] // not ended
	}
	for _, line := range lines {
		rest, ok := bytes.CutPrefix(line, []byte("["))
		if !ok {
			continue
		}
		bracket, rest, ok := bytes.Cut(rest, []byte("]"))
		if !ok || !validProgressBracket(bracket) {
			continue
		}
		rest = bytes.TrimLeft(rest, " \t")
		truncated := len(rest) > maxProgressTitle
		if truncated {
			rest = rest[:maxProgressTitle]
		}
		title := progressTitle(rest, truncated)
		if pct, ok := bytes.CutSuffix(bracket, []byte("%")); ok {
			p.SubtaskPercent, _ = progressNumber(pct)
			p.SubtaskTitle = title
			continue
		}
		task, total, hasTotal := bytes.Cut(bracket, []byte("/"))
		p.Task, _ = progressNumber(task)
		if hasTotal {
			p.TaskTotal, _ = progressNumber(total)
		}
		p.TaskTitle, p.SubtaskPercent, p.SubtaskTitle = title, 0, ""
	}
	return p
}
