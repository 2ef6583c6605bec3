package detached

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/rexec/rexec/store"
)

// Limits of a progress line. The longest bracket that can be progress,
// "[999999999/999999999]", fits in maxProgressBracket.
const (
	maxProgressTitle   = 256 // bytes of a title, at most
	maxProgressBracket = 24  // bytes between the brackets, at most
	maxProgressNumber  = 9   // digits of a number, at most
)

// ProgressScanner finds progress lines in a stream of output chunks (as the
// child's pipe returns them: lines may be split across chunks). Its zero
// value is ready to use. Memory is bounded: at most maxProgressTitle bytes of
// a line's title are kept, and nothing of other lines.
//
// A line "[N/M] Title" starts task N of M, "[N] Title" task N keeping the
// total the last task line gave, and "[P%] Title" sets the current task's
// subtask. A new task has no subtask until a subtask line says so: there is
// none while SubtaskPercent is 0 and SubtaskTitle empty (which "[0%]" with
// no title also gives).
//
// The rules, where "blank" means a space or a tab:
//   - A line ends at "\n" or "\r" (so "\r\n" and a progress bar's bare "\r"
//     both end one), and counts only once it has ended: a last line without
//     an end is not seen.
//   - A progress line starts with "[" at its very first byte, then one of
//     "N/M", "N" or "P%" and "]". N, M and P are 1 to 9 plain decimal
//     digits, no sign, blank or point; N ≥ 1, M ≥ 1, 0 ≤ P ≤ 100. N may
//     exceed M. Any other line, "[abc]", "[1/0]", "[-1]", "[101%]" or
//     "[ 1/3]" among them, is only output and changes nothing.
//   - The title is the rest of the line, blanks around it removed ("[2]"
//     alone gives an empty title). Only its first maxProgressTitle bytes are
//     kept, cut between characters; bytes that are not UTF-8 become U+FFFD,
//     and the result is cut again to at most maxProgressTitle bytes. Other
//     bytes, tabs and control characters within the title, are kept.
//   - A task line resets the subtask.
type ProgressScanner struct {
	p     store.Progress
	state progressState

	bracket    [maxProgressBracket]byte
	bracketLen int
	title      []byte // up to maxProgressTitle bytes of the current title
	truncated  bool   // the current title had more bytes than title keeps

	// taskStarted, when not nil, is called as a task line starts a task
	// numbered higher than the current one, with the progress before the
	// line: the task of prev (if prev.Task > 0) ends there. Write reports
	// only where the lines of a chunk ended; this sees each task of them.
	taskStarted func(prev store.Progress)
}

type progressState uint8

const (
	progLineStart progressState = iota // at the start of a line
	progBracket                        // after "[", in bracket
	progBlanks                         // after a progress bracket, before the title
	progTitle                          // in the title, in title
	progSkip                           // in a line that is only output
)

// Write feeds output; it reports whether the progress changed (differs,
// after the lines p ended, from what it was before).
func (s *ProgressScanner) Write(p []byte) (changed bool) {
	was := s.p
	for len(p) > 0 {
		switch s.state {
		case progSkip:
			i := bytes.IndexAny(p, "\r\n")
			if i < 0 {
				return s.p != was
			}
			s.state = progLineStart
			p = p[i+1:]
			continue
		case progTitle:
			i := bytes.IndexAny(p, "\r\n")
			text := p
			if i >= 0 {
				text = p[:i]
			}
			room := maxProgressTitle - len(s.title)
			if len(text) > room {
				text = text[:room]
				s.truncated = true
			}
			s.title = append(s.title, text...)
			if i < 0 {
				return s.p != was
			}
			s.endLine()
			p = p[i+1:]
			continue
		}
		c := p[0]
		p = p[1:]
		if c == '\n' || c == '\r' {
			s.endLine()
			continue
		}
		switch s.state {
		case progLineStart:
			s.state = progSkip
			if c == '[' {
				s.state, s.bracketLen = progBracket, 0
			}
		case progBracket:
			switch {
			case c == ']' && validProgressBracket(s.bracket[:s.bracketLen]):
				s.state = progBlanks
				s.title, s.truncated = s.title[:0], false
			case c == ']' || s.bracketLen == len(s.bracket):
				s.state = progSkip
			default:
				s.bracket[s.bracketLen] = c
				s.bracketLen++
			}
		case progBlanks:
			if c != ' ' && c != '\t' {
				s.state = progTitle
				s.title = append(s.title, c)
			}
		}
	}
	return s.p != was
}

// Progress returns the current progress.
func (s *ProgressScanner) Progress() store.Progress { return s.p }

// SetProgress makes p the progress that the next lines change: a progress
// set by other means (the callback API) is not undone by a later line. The
// line being read goes on where it was.
func (s *ProgressScanner) SetProgress(p store.Progress) { s.p = p }

// endLine ends the current line, applying it if it is a progress line.
func (s *ProgressScanner) endLine() {
	if s.state == progBlanks || s.state == progTitle {
		s.apply(s.bracket[:s.bracketLen], progressTitle(s.title, s.truncated))
	}
	s.state = progLineStart
}

// apply applies a progress line whose bracket (valid, without the
// brackets) and title are given.
func (s *ProgressScanner) apply(bracket []byte, title string) {
	if n, ok := bytes.CutSuffix(bracket, []byte("%")); ok {
		s.p.SubtaskPercent, _ = progressNumber(n)
		s.p.SubtaskTitle = title
		return
	}
	n, m, hasTotal := bytes.Cut(bracket, []byte("/"))
	task, _ := progressNumber(n)
	if task > s.p.Task && s.taskStarted != nil {
		s.taskStarted(s.p)
	}
	s.p.Task = task
	if hasTotal {
		s.p.TaskTotal, _ = progressNumber(m)
	}
	s.p.TaskTitle = title
	s.p.SubtaskPercent, s.p.SubtaskTitle = 0, ""
}

// validProgressBracket reports whether b, what was between the brackets,
// makes a progress line.
func validProgressBracket(b []byte) bool {
	if n, ok := bytes.CutSuffix(b, []byte("%")); ok {
		p, ok := progressNumber(n)
		return ok && p <= 100
	}
	n, m, hasTotal := bytes.Cut(b, []byte("/"))
	task, ok := progressNumber(n)
	if !ok || task < 1 {
		return false
	}
	if hasTotal {
		total, ok := progressNumber(m)
		return ok && total >= 1
	}
	return true
}

// progressNumber parses 1 to maxProgressNumber decimal digits.
func progressNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > maxProgressNumber {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// progressTitle makes a title of the raw bytes kept of it (leading blanks
// already skipped); truncated says the line had more.
func progressTitle(raw []byte, truncated bool) string {
	if truncated {
		// Drop a character the cut split.
		for i := len(raw) - 1; i >= 0 && i >= len(raw)-utf8.UTFMax; i-- {
			if utf8.RuneStart(raw[i]) {
				if !utf8.FullRune(raw[i:]) {
					raw = raw[:i]
				}
				break
			}
		}
	}
	t := strings.ToValidUTF8(string(raw), "\uFFFD")
	if len(t) > maxProgressTitle {
		i := maxProgressTitle
		for !utf8.RuneStart(t[i]) {
			i--
		}
		t = t[:i]
	}
	return strings.TrimRight(t, " \t")
}
