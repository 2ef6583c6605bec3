package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rexec/rexec/client"
)

// What the commands of detached runs print for people: tables and lists,
// times in this machine's zone. Scripts use --json instead.

const timeLayout = "2006-01-02 15:04:05"

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func printScripts(w io.Writer, scripts []client.Script) error {
	if len(scripts) == 0 {
		_, err := fmt.Fprintln(w, "no scripts")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tARGS\tSTDIN\tAT ONCE\tMAX QUEUED\tTIMEOUT\t")
	for _, s := range scripts {
		var notes []string
		if s.NotifyOnly {
			notes = append(notes, "notify only (-n)")
		}
		if s.RemoveDone {
			notes = append(notes, "removed when done (-r)")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Args, yesNo(s.Stdin), s.Concurrency,
			orNone(s.MaxQueue), duration(time.Duration(s.Timeout)), strings.Join(notes, ", "))
	}
	return tw.Flush()
}

func printActive(w io.Writer, a client.ActiveRuns, now time.Time) error {
	if len(a.Queued)+len(a.Running) == 0 {
		_, err := fmt.Fprintln(w, "no run queued or running")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSINCE\t")
	for _, r := range append(a.Running, a.Queued...) {
		since := r.Queued
		if r.State == client.StateRunning {
			since = r.Started
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.State, when(since, now), detail(r, now))
	}
	return tw.Flush()
}

func printHistory(w io.Writer, runs []client.RunStatus, now time.Time) error {
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "no runs")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tNAME\tQUEUED\tTOOK\tSTATE\t")
	for _, r := range runs {
		took := ""
		if !r.Started.IsZero() && !r.EndedAt.IsZero() {
			took = "<1s" // the times are whole seconds
			if d := r.EndedAt.Sub(r.Started.Time); d > 0 {
				took = duration(d)
			}
		}
		state := string(r.State)
		if r.State == client.StateDone {
			state = outcome(r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.Queued.Local().Format(timeLayout), took, state, detail(r, now))
	}
	return tw.Flush()
}

// printStatus shows one run, a field a line.
func printStatus(w io.Writer, r client.RunStatus, now time.Time) error {
	tw := table(w)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	line("id", r.ID)
	line("name", r.Name)
	line("args", quoteArgs(r.Args))
	line("who", r.Who)
	state := string(r.State)
	switch r.State {
	case client.StateDone:
		state += ": " + outcome(r)
	case client.StateQueued, client.StateRunning:
		if d := detail(r, now); d != "" {
			state += ": " + d
		}
	}
	line("state", state)
	line("queued", when(r.Queued, now))
	if r.StartAt.After(r.Queued.Time) {
		line("start at", when(r.StartAt, now))
	}
	line("started", when(r.Started, now))
	if !r.EndedAt.IsZero() {
		ended := when(r.EndedAt, now)
		if !r.Started.IsZero() {
			ended += ", after " + duration(r.EndedAt.Sub(r.Started.Time))
		}
		line("ended", ended)
	}
	if r.Timeout > 0 {
		line("timeout", duration(time.Duration(r.Timeout)))
	}
	if r.State == client.StateDone {
		line("progress", progress(r.Progress))
	}
	out := fmt.Sprintf("%d bytes", r.OutputSize)
	if r.OutputTruncated != "" {
		out += " (truncated: " + r.OutputTruncated + ")"
	}
	line("output", out)
	if len(r.Result) > 0 && string(r.Result) != "null" {
		line("result", string(r.Result))
	}
	return tw.Flush()
}

// detail is what a queued or running run is doing: its place and why it
// waits, or its progress.
func detail(r client.RunStatus, now time.Time) string {
	switch r.State {
	case client.StateQueued:
		var why string
		switch r.Waiting {
		case "start_time":
			why = "starts " + when(r.StartAt, now)
		case "slot":
			why = "waiting for a free slot"
		case "script_missing":
			why = "waiting for its script to come back to the exectab"
		case "resources":
			why = "waiting for the server's resources"
		default:
			why = r.Waiting
		}
		if r.Position > 0 {
			return fmt.Sprintf("#%d, %s", r.Position, why)
		}
		return why
	case client.StateRunning:
		return progress(r.Progress)
	}
	return ""
}

func progress(p client.Progress) string {
	var parts []string
	switch {
	case p.TaskTotal > 0:
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("[%d/%d] %s", p.Task, p.TaskTotal, p.TaskTitle)))
	case p.Task > 0:
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("[%d] %s", p.Task, p.TaskTitle)))
	}
	if p.SubtaskPercent > 0 || p.SubtaskTitle != "" {
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%d%% %s", p.SubtaskPercent, p.SubtaskTitle)))
	}
	return strings.Join(parts, "; ")
}

// outcome says how a done run ended.
func outcome(r client.RunStatus) string {
	var how string
	switch {
	case r.Signal != "":
		how = r.Signal
	case r.ExitCode != nil:
		how = "exit " + strconv.Itoa(*r.ExitCode)
	}
	switch r.Ended {
	case client.EndedExit:
		if how == "" {
			return "done" // a -n script's run
		}
		return how
	case client.EndedCancelled:
		return join("cancelled", how)
	case client.EndedTimeout:
		return join("timed out", how)
	case client.EndedInterrupted:
		return join("interrupted", how)
	case client.EndedStartFailed:
		return "could not start"
	}
	return join(string(r.Ended), how)
}

func join(what, how string) string {
	if how == "" {
		return what
	}
	return what + " (" + how + ")"
}

func submittedState(a client.Submitted) string {
	switch a.State {
	case client.StateQueued:
		return detail(client.RunStatus{State: a.State, Position: a.Position, Waiting: a.Waiting}, time.Now())
	case client.StateDone:
		if a.Ended != client.EndedExit && a.Ended != "" {
			return "done: " + outcome(client.RunStatus{State: a.State, Ended: a.Ended})
		}
	}
	return string(a.State)
}

// when is a time for people: local, with how long ago or how soon.
func when(t client.UnixTime, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t.Time).Round(time.Second)
	rel := duration(d) + " ago"
	switch {
	case d < 0:
		rel = "in " + duration(-d)
	case d == 0:
		rel = "now"
	}
	return t.Local().Format(timeLayout) + " (" + rel + ")"
}

// duration is a duration for people: 1d2h, 3m4s, 250ms.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d >= 24*time.Hour:
		days := d / (24 * time.Hour)
		rest := (d - days*24*time.Hour).Round(time.Hour)
		if rest == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, rest/time.Hour)
	}
	s := d.Round(time.Second).String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		s = "0s"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNone(n int) string {
	if n <= 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// quoteArgs shows arguments as a shell would need them, quoting those with
// spaces or quotes.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// historyJSON is the answer of several pages of the history as one: the
// runs as the server sent them.
func historyJSON(runs []client.RunStatus) []byte {
	raws := make([]json.RawMessage, len(runs))
	for i, r := range runs {
		raws[i] = r.Raw
	}
	b, _ := json.Marshal(struct {
		Success bool              `json:"success"`
		Runs    []json.RawMessage `json:"runs"`
	}{true, raws})
	return b
}

// parseWhen reads a time on the command line: RFC 3339
// (2026-01-02T03:04:05Z), a local time (2026-01-02T03:04[:05], or a day
// 2026-01-02), or a duration from now (90s, 10m, 2h, 1d, 1d12h): after it
// when future, before it otherwise.
func parseWhen(s string, now time.Time, future bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	d, err := parseDays(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a time (RFC 3339, 2026-01-02T03:04:05Z; or 2026-01-02T03:04 or 2026-01-02 in local time) or a duration (90s, 10m, 2h, 1d)", s)
	}
	if future {
		return now.Add(d), nil
	}
	return now.Add(-d), nil
}

// parseDays reads a Go duration that may begin with a number of days:
// 1d, 1d12h, 36h. It is never negative.
func parseDays(s string) (time.Duration, error) {
	var days int64
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, errors.New("bad days")
		}
		days, s = n, s[i+1:]
		if s == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || strings.HasPrefix(s, "+") {
		return 0, errors.New("bad duration")
	}
	if whole := time.Duration(days) * 24 * time.Hour; d <= math.MaxInt64-whole {
		return whole + d, nil
	}
	return 0, errors.New("duration too long")
}
