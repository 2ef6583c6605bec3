package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The /scripts/v1 API: detached runs of the scripts of a server's exectab.
// Every answer is a JSON object with "success"; a refusal also has "error"
// and "errorcode", which come as a *ServerError.

// MaxStdin is the most stdin a detached run may carry, as the server's
// limit (launch.MaxStdin; a test of the rexec command checks they agree).
const MaxStdin = 1 << 20

// maxAnswer bounds how much of a JSON answer is read: a page of the history
// holds at most 1000 runs, each with a result of at most 64 KiB.
const maxAnswer = 128 << 20

// State is where a detached run is in its life.
type State string

const (
	StateQueued  State = "queued"  // waiting for its start time or a free slot
	StateRunning State = "running" // its process runs
	StateDone    State = "done"    // it ended; RunStatus.Ended says how
)

// Ended says how a detached run ended.
type Ended string

const (
	EndedExit        Ended = "exit"         // the process ended by itself (ExitCode or Signal)
	EndedCancelled   Ended = "cancelled"    // cancelled while queued or running
	EndedTimeout     Ended = "timeout"      // terminated at its time limit
	EndedInterrupted Ended = "interrupted"  // the server stopped or died while it ran
	EndedStartFailed Ended = "start_failed" // its process could not be started
)

// UnixTime is a time that the API sends as UNIX seconds, 0 for none (the
// zero time).
type UnixTime struct{ time.Time }

func (t UnixTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("0"), nil
	}
	return strconv.AppendInt(nil, t.Unix(), 10), nil
}

func (t *UnixTime) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if n == 0 {
		t.Time = time.Time{}
		return nil
	}
	t.Time = time.Unix(int64(n), 0)
	return nil
}

// Seconds is a duration that the API sends as a number of seconds (or, from
// a server that sends it so, a Go duration string such as "30m").
type Seconds time.Duration

func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'f', -1, 64), nil
}

func (s *Seconds) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		*s = 0
	case float64:
		*s = Seconds(v * float64(time.Second))
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*s = Seconds(d)
	default:
		return fmt.Errorf("a duration: want seconds, not %s", b)
	}
	return nil
}

// Script is a script of the server's exectab (GET /scripts/v1/scripts).
type Script struct {
	Name        string  `json:"name"`
	Args        int     `json:"args"`        // how many arguments a run gives it
	Stdin       bool    `json:"stdin"`       // -i: a run may pass stdin
	Concurrency int     `json:"concurrency"` // -s: runs at once
	MaxQueue    int     `json:"max_queue"`   // -m: runs queued and running together; 0 is no limit
	Timeout     Seconds `json:"timeout"`     // -t: the longest a run may take; 0 is none
	NotifyOnly  bool    `json:"notify_only"` // -n: a run starts no process
	RemoveDone  bool    `json:"remove_done"` // -r: successful and cancelled runs leave the history
	// Raw is the script as the server sent it, with any field this package
	// does not know.
	Raw json.RawMessage `json:"-"`
}

// Progress is what a run's output (or its callback) last said of its
// progress.
type Progress struct {
	Task           int    `json:"task"`
	TaskTotal      int    `json:"task_total"`
	TaskTitle      string `json:"task_title"`
	SubtaskPercent int    `json:"subtask_percent"`
	SubtaskTitle   string `json:"subtask_title"`
}

// RunStatus is a detached run as the server shows it
// (GET /scripts/v1/status/{id}; the history's runs have the same shape).
type RunStatus struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"` // the script
	Args  []string `json:"args"`
	State State    `json:"state"`
	// Who submitted it: a guest key's id, a client certificate's subject
	// (mutual TLS), or "" for the admin token.
	Who      string   `json:"who"`
	Queued   UnixTime `json:"queued"`   // when it was submitted
	StartAt  UnixTime `json:"start_at"` // the start time it asked for
	Started  UnixTime `json:"started"`
	EndedAt  UnixTime `json:"ended_at"`
	Timeout  Seconds  `json:"timeout"`
	Position int      `json:"position"` // while queued: its 1-based place in its script's queue
	// Waiting, while queued, says why it has not started: "start_time",
	// "slot", "script_missing", "resources" or "storage".
	Waiting string `json:"waiting"`
	// Ended, once done, says how; then ExitCode or Signal (the signal's
	// name, such as "SIGTERM") tell the process's end, when it had one.
	Ended    Ended  `json:"ended"`
	ExitCode *int   `json:"exit_code"`
	Signal   string `json:"signal"`

	Progress   Progress `json:"progress"`
	OutputSize int64    `json:"output_size"`
	// OutputTruncated says why the output was cut, when it was.
	OutputTruncated string `json:"output_truncated"`
	// Result is the JSON object the run posted as its result, if any.
	Result json.RawMessage `json:"result"`
	// Raw is the run as the server sent it, with any field this package
	// does not know.
	Raw json.RawMessage `json:"-"`
}

func (s *RunStatus) UnmarshalJSON(b []byte) error {
	type plain RunStatus
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.Raw = append(json.RawMessage(nil), b...)
	return nil
}

func (s *Script) UnmarshalJSON(b []byte) error {
	type plain Script
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// ScriptList is the answer of GET /scripts/v1/scripts.
type ScriptList struct {
	Scripts []Script `json:"scripts"`
	// Raw is the answer as it came.
	Raw json.RawMessage `json:"-"`
}

// Scripts lists the scripts of the server's exectab, as they are now.
func (c *Client) Scripts(ctx context.Context) (ScriptList, error) {
	var l ScriptList
	raw, err := c.call(ctx, http.MethodGet, c.endpoint("scripts/v1/scripts"), nil, &l)
	l.Raw = raw
	return l, err
}

// Submission is a detached run to submit.
type Submission struct {
	Name string   // the script
	Args []string // its arguments
	// Stdin, when not nil, is the run's stdin: text (valid UTF-8) of at
	// most MaxStdin bytes, for a script with -i.
	Stdin []byte
	// StartAt, when not zero, queues the run until then (it is sent in
	// whole seconds).
	StartAt time.Time
	// Timeout, when positive, bounds the run (the script's -t caps it).
	Timeout time.Duration
}

// Submitted is the server's answer to a submission: where the run is once
// its start has settled.
type Submitted struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	State    State    `json:"state"`
	Queued   UnixTime `json:"queued"`
	Position int      `json:"position"`
	Waiting  string   `json:"waiting"` // why it waits, when queued
	Ended    Ended    `json:"ended"`   // when done at once: a -n script, or start_failed
	// Raw is the answer as it came.
	Raw json.RawMessage `json:"-"`
}

// Submit submits a detached run and returns the server's answer. When the
// answer is lost (ErrNoAnswer), the run may have been submitted: look in the
// history before submitting it again.
func (c *Client) Submit(ctx context.Context, s Submission) (Submitted, error) {
	w := struct {
		Name    string   `json:"name"`
		Args    []string `json:"args,omitempty"`
		Stdin   *string  `json:"stdin,omitempty"`
		Queue   int64    `json:"queue,omitempty"`
		Timeout string   `json:"timeout,omitempty"`
	}{Name: s.Name, Args: s.Args}
	switch {
	case s.Name == "":
		return Submitted{}, errors.New("no script name")
	case s.Timeout < 0:
		return Submitted{}, fmt.Errorf("negative timeout %v", s.Timeout)
	case len(s.Stdin) > MaxStdin:
		return Submitted{}, fmt.Errorf("stdin of %d bytes: a detached run takes at most %d", len(s.Stdin), MaxStdin)
	case s.Stdin != nil && !utf8.Valid(s.Stdin):
		return Submitted{}, errors.New("stdin is not text (UTF-8): a detached run's stdin travels as a JSON string")
	}
	if s.Stdin != nil {
		in := string(s.Stdin)
		w.Stdin = &in
	}
	if !s.StartAt.IsZero() {
		w.Queue = s.StartAt.Unix()
		if w.Queue <= 0 {
			return Submitted{}, fmt.Errorf("start time %v is before 1970", s.StartAt)
		}
	}
	if s.Timeout > 0 {
		w.Timeout = s.Timeout.String()
	}
	body, err := json.Marshal(w)
	if err != nil {
		return Submitted{}, err
	}
	var a Submitted
	raw, err := c.call(ctx, http.MethodPost, c.endpoint("scripts/v1/run"), body, &a)
	a.Raw = raw
	if err == nil && a.ID == "" {
		err = fmt.Errorf("%w: the answer has no run id", ErrProtocol)
	}
	return a, err
}

// Status returns run id as it is now.
func (c *Client) Status(ctx context.Context, id string) (RunStatus, error) {
	u, err := c.runEndpoint("scripts/v1/status", id)
	if err != nil {
		return RunStatus{}, err
	}
	var st RunStatus
	_, err = c.call(ctx, http.MethodGet, u, nil, &st)
	return st, err
}

// ActiveRuns is the answer of GET /scripts/v1/status: the runs queued and
// running now.
type ActiveRuns struct {
	Queued  []RunStatus // oldest first, then by place in the queue
	Running []RunStatus // oldest first
	// Raw is the answer as it came.
	Raw json.RawMessage
}

// Active lists the runs queued and running now.
func (c *Client) Active(ctx context.Context) (ActiveRuns, error) {
	var a struct {
		Queued  map[string]RunStatus `json:"queued"`
		Running map[string]RunStatus `json:"running"`
	}
	raw, err := c.call(ctx, http.MethodGet, c.endpoint("scripts/v1/status"), nil, &a)
	if err != nil {
		return ActiveRuns{}, err
	}
	return ActiveRuns{Queued: oldestFirst(a.Queued), Running: oldestFirst(a.Running), Raw: raw}, nil
}

func oldestFirst(m map[string]RunStatus) []RunStatus {
	rs := make([]RunStatus, 0, len(m))
	for _, r := range m {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b RunStatus) int {
		return cmp.Or(a.Queued.Compare(b.Queued.Time), cmp.Compare(a.Position, b.Position), cmp.Compare(a.ID, b.ID))
	})
	return rs
}

// Cancel cancels run id: a queued run is dropped, a running one terminated
// (SIGTERM to its group, SIGKILL after the server's grace). A run that is
// already done is a *ServerError 409 with Code "already_done".
func (c *Client) Cancel(ctx context.Context, id string) error {
	u, err := c.runEndpoint("scripts/v1/cancel", id)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, http.MethodPost, u, nil, nil)
	return err
}

// HistoryQuery selects runs of the history. Its zero value is the newest
// page of every run.
type HistoryQuery struct {
	Name         string    // only this script's runs
	State        State     // only runs in this state
	Since, Until time.Time // queued from Since (included) to Until (excluded), in whole seconds; zero: no bound
	Limit        int       // the most runs of a page; 0: the server's default (100)
	Cursor       string    // a NextCursor, to continue after its page
}

// HistoryPage is a page of the history, newest run first.
type HistoryPage struct {
	Runs []RunStatus `json:"runs"`
	// NextCursor continues after this page; "" when it is the last.
	NextCursor string `json:"next_cursor"`
	// Raw is the answer as it came.
	Raw json.RawMessage `json:"-"`
}

// History returns a page of the history (GET /scripts/v1/runs).
func (c *Client) History(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	unix := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return strconv.FormatInt(t.Unix(), 10)
	}
	if q.Limit < 0 {
		return HistoryPage{}, fmt.Errorf("negative limit %d", q.Limit)
	}
	set("name", q.Name)
	set("state", string(q.State))
	set("since", unix(q.Since))
	set("until", unix(q.Until))
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	u := c.endpoint("scripts/v1/runs")
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	var p HistoryPage
	raw, err := c.call(ctx, http.MethodGet, u, nil, &p)
	p.Raw = raw
	if err == nil && p.NextCursor != "" && p.NextCursor == q.Cursor {
		err = fmt.Errorf("%w: the history's next cursor is the one asked for", ErrProtocol)
	}
	return p, err
}

// runEndpoint is the URL of a run's resource: prefix/{id}, the id escaped.
func (c *Client) runEndpoint(prefix, id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", fmt.Errorf("run id %q: want the id that submit or status gave", id)
	}
	return c.endpoint(prefix) + "/" + url.PathEscape(id), nil
}

// call sends a /scripts/v1 request (a JSON body, when body is not nil) and
// decodes its answer into v (when not nil). It returns the answer as it
// came; a refusal is a *ServerError.
func (c *Client) call(ctx context.Context, method, u string, body []byte, v any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.doOK(ctx, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("%w: 200 with Content-Type %q, not application/json", ErrProtocol, resp.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("%w to the request: %w", ErrNoAnswer, err)
	case len(raw) > maxAnswer:
		return nil, fmt.Errorf("%w: an answer larger than %d bytes", ErrProtocol, maxAnswer)
	}
	var ok struct {
		Success *bool `json:"success"`
	}
	if err := json.Unmarshal(raw, &ok); err != nil || ok.Success == nil || !*ok.Success {
		return nil, fmt.Errorf("%w: 200 without \"success\":true: %s", ErrProtocol, excerpt(raw))
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
	}
	return bytes.TrimSpace(raw), nil
}
