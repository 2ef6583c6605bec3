package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TaskSpan is one task of a run that has ended: its title and when it started and ended.
type TaskSpan struct {
	Title      string
	Start, End time.Time
}

// MaxTaskSpans is the most ended tasks a run keeps (Run.Tasks): past it,
// the oldest are dropped, so the list always ends with the latest.
const MaxTaskSpans = 256

// AppendTaskSpan appends s to spans and returns the result, dropping the
// oldest spans so that at most MaxTaskSpans remain. Like append, it may
// write into the spare capacity of spans; when it drops spans, the result
// is a new array and spans is left as it was.
func AppendTaskSpan(spans []TaskSpan, s TaskSpan) []TaskSpan {
	if len(spans) < MaxTaskSpans {
		return append(spans, s)
	}
	out := make([]TaskSpan, 0, MaxTaskSpans)
	out = append(out, spans[len(spans)-MaxTaskSpans+1:]...)
	return append(out, s)
}

// Task times in the runs table (migration 5): task_started_ns is
// Run.TaskStartedAt in UNIX nanoseconds, 0 for the zero time, and tasks is
// Run.Tasks as a JSON array of {"t": title, "s": start, "e": end}, the times
// in UNIX nanoseconds (0 for the zero time), oldest first.

// taskSpanJSON is a TaskSpan in the tasks column.
type taskSpanJSON struct {
	T string `json:"t"`
	S int64  `json:"s"`
	E int64  `json:"e"`
}

// toTaskNanos is t in UNIX nanoseconds, 0 for the zero time.
func toTaskNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromTaskNanos is the time of toTaskNanos's n.
func fromTaskNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// encodeTasks is the tasks column of spans, of which only the last
// MaxTaskSpans are kept.
func encodeTasks(spans []TaskSpan) (string, error) {
	if len(spans) > MaxTaskSpans {
		spans = spans[len(spans)-MaxTaskSpans:]
	}
	if len(spans) == 0 {
		return "[]", nil
	}
	js := make([]taskSpanJSON, len(spans))
	for i, s := range spans {
		js[i] = taskSpanJSON{T: s.Title, S: toTaskNanos(s.Start), E: toTaskNanos(s.End)}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<" as itself, not "\u003c": the column is not HTML
	if err := enc.Encode(js); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// decodeTasks reads a tasks column; none is nil.
func decodeTasks(col string) ([]TaskSpan, error) {
	if col == "" || col == "[]" {
		return nil, nil
	}
	var js []taskSpanJSON
	if err := json.Unmarshal([]byte(col), &js); err != nil {
		return nil, err
	}
	if len(js) == 0 {
		return nil, nil
	}
	spans := make([]TaskSpan, len(js))
	for i, s := range js {
		spans[i] = TaskSpan{Title: s.T, Start: fromTaskNanos(s.S), End: fromTaskNanos(s.E)}
	}
	return spans, nil
}

// closeTask ends the current task of progress p, started at started, at
// end: it returns tasks with that task appended, and true, when there is a
// task (p.Task > 0) whose start is known (a run whose progress was only
// ever set by SetProgress has none); tasks and false otherwise.
func closeTask(tasks []TaskSpan, p Progress, started, end time.Time) ([]TaskSpan, bool) {
	if p.Task <= 0 || started.IsZero() {
		return tasks, false
	}
	return AppendTaskSpan(tasks, TaskSpan{Title: p.TaskTitle, Start: started, End: end}), true
}

// CheckTaskTimes is the ErrInvalid error SetTaskProgress refuses the task
// times with, nil when it takes them: every time must be one the history
// can store (see StorableTime).
func CheckTaskTimes(taskStartedAt time.Time, tasks []TaskSpan) error {
	if err := checkTime("task start time", taskStartedAt); err != nil {
		return err
	}
	for _, t := range tasks {
		if err := checkTime("task start time", t.Start); err != nil {
			return err
		}
		if err := checkTime("task end time", t.End); err != nil {
			return err
		}
	}
	return nil
}

// SetTaskProgress implements History.
func (s *Store) SetTaskProgress(ctx context.Context, id string, p Progress, taskStartedAt time.Time, tasks []TaskSpan) error {
	return s.setTaskProgress(ctx, 0, id, p, taskStartedAt, tasks)
}

func (s *Store) setTaskProgress(ctx context.Context, seq uint64, id string, p Progress, taskStartedAt time.Time, tasks []TaskSpan) (err error) {
	defer classifyTo(&err)
	if err := CheckTaskTimes(taskStartedAt, tasks); err != nil {
		return fmt.Errorf("store: set task progress %q: %w", id, s.refuse(ctx, seq, err))
	}
	col, err := encodeTasks(tasks)
	if err != nil {
		return fmt.Errorf("store: set task progress %q: %w", id, err)
	}
	return s.update(ctx, seq, "set task progress", id, []State{StateQueued, StateRunning},
		`task = ?, task_total = ?, task_title = ?, subtask_percent = ?, subtask_title = ?, task_started_ns = ?, tasks = ?`,
		p.Task, p.TaskTotal, p.TaskTitle, p.SubtaskPercent, p.SubtaskTitle, toTaskNanos(taskStartedAt), col)
}
