package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rexec/rexec/client"
)

// The client commands of detached runs (/scripts/v1): scripts, submit,
// status, logs, cancel, history. Each is a thin layer on package client: it
// parses its flags, makes one call (or a few), prints the answer for people
// or, with --json, as the server sent it, and turns errors into the exit
// codes of apiExits.

// apiFlags are the flags every command of detached runs takes.
type apiFlags struct {
	serverFlags `embed:""`
	Token       string `env:"REXEC_TOKEN" help:"The server's bearer token, or a guest key (prefer REXEC_TOKEN: ps shows the command line)."`
}

// jsonFlag is --json, of the commands that print an answer.
type jsonFlag struct {
	JSON bool `name:"json" env:"-" help:"Print the server's answer as JSON (one object, the /scripts/v1 API's), for scripts, instead of text for people."`
}

func (f *apiFlags) client() (*client.Client, error) {
	cl, err := f.serverFlags.client(f.Token)
	if err != nil {
		return nil, &exitError{exitRunUsage, err}
	}
	return cl, nil
}

// The commands of detached runs exit with the codes of "rexec run"
// (exitForStatus), where 404 is a script or run not found and 409 a run
// already done; and submit --wait with the run's own.
const exitNotFound = exitRunStartFailed // 404, or a run that could not start

// apiExits are the exit codes of the commands of detached runs, for their
// help (exitsHelp); README.md has the same table.
var apiExits = [][2]string{
	{"0", "done"},
	{"2", "bad command line, or the server refused the request as invalid (400, 413, 416)"},
	{"3", "refused: not authorized (401: wrong or missing --token / REXEC_TOKEN) or forbidden (403: a guest key without that right)"},
	{"4", "not found (404): no such script or run, or the server runs no scripts"},
	{"5", "the run is already done (409: cancel)"},
	{"6", "the server is busy or shutting down (503), a limit is reached (429), or the server could not be reached: nothing was done, safe to retry"},
	{"7", "any other error: another HTTP status, or an answer that is not rexec's"},
	{"130", "interrupted by SIGINT (Ctrl-C; 143: by SIGTERM)"},
}

// exitsHelp is the exit status table of a command's help, with what more
// some codes mean for it.
func exitsHelp(more map[string]string) string {
	var b strings.Builder
	b.WriteString("Exit status:\n\n")
	for _, e := range apiExits {
		meaning := e[1]
		if m := more[e[0]]; m != "" {
			meaning += "; " + m
		}
		fmt.Fprintf(&b, "    %-7s %s\n", e[0], meaning)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// apiFailure is the exit for a failed call. sent is for a request that
// may have been carried out even though its answer was lost (a submit).
func apiFailure(url string, err error, sent bool) error {
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return &exitError{exitForStatus(se.StatusCode), fmt.Errorf("the server refused (%d %s%s): %s", se.StatusCode, http.StatusText(se.StatusCode),
			codeSuffix(se.Code), se.Message)}
	case errors.Is(err, client.ErrUnreachable):
		return &exitError{exitRunUnavailable, fmt.Errorf("%s: %w (nothing was done)", url, err)}
	case errors.Is(err, client.ErrNoAnswer) && sent:
		return &exitError{exitRunOther, fmt.Errorf("%s: %w: the run may have been submitted (see rexec history)", url, err)}
	case errors.Is(err, client.ErrNoAnswer), errors.Is(err, client.ErrOutputCut):
		return &exitError{exitRunUnavailable, fmt.Errorf("%s: %w", url, err)}
	}
	return &exitError{exitRunOther, err}
}

func codeSuffix(code string) string {
	if code == "" {
		return ""
	}
	return ", " + code
}

// printJSON writes an answer as the server sent it, on a line.
func printJSON(raw []byte) error {
	_, err := os.Stdout.Write(append(raw[:len(raw):len(raw)], '\n'))
	return err
}

// --- rexec scripts

type scriptsCmd struct {
	apiFlags `embed:""`
	jsonFlag `embed:""`
}

func (c *scriptsCmd) Help() string {
	return `Lists the scripts of the server's exectab: their name, how many arguments a run gives them, whether they take stdin (-i), how many runs at once (-s), how many queued (-m), their longest run (-t), and whether a run only notifies (-n) or leaves the history when it succeeds (-r).

With --json: the answer of GET /scripts/v1/scripts.

` + exitsHelp(nil)
}

func (c *scriptsCmd) Validate() error { return c.validate() }

func (c *scriptsCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	ctx := context.Background() // a signal ends the process: 128+N
	l, err := cl.Scripts(ctx)
	if err != nil {
		return apiFailure(c.URL, err, false)
	}
	if c.JSON {
		return printJSON(l.Raw)
	}
	return printScripts(os.Stdout, l.Scripts)
}

// --- rexec submit

type submitCmd struct {
	apiFlags `embed:""`
	jsonFlag `embed:""`
	Stdin    string        `env:"-" placeholder:"FILE" help:"The run's stdin, from FILE ('-': this stdin): text, at most 1 MiB, for a script with -i."`
	Queue    string        `env:"-" placeholder:"WHEN" help:"Start the run at WHEN instead of now: a time (RFC 3339, 2026-01-02T03:04:05Z; or 2026-01-02T03:04 and 2026-01-02 in local time) or a delay (90s, 10m, 2h, 1d)."`
	Timeout  time.Duration `env:"-" help:"Have the server terminate the run after this long (e.g. 30m); the script's -t caps it."`
	Wait     bool          `env:"-" help:"Wait for the run's end, writing its output here as it comes, and exit with its exit code."`
	RetryFor time.Duration `env:"-" default:"1m" placeholder:"DURATION" help:"With --wait: how long to keep trying to resume a cut connection without getting further."`
	Name     string        `arg:"" help:"The script to run."`
	Args     []string      `arg:"" optional:"" help:"The script's arguments, after --."`
}

func (c *submitCmd) Help() string {
	return `Submits a detached run of script NAME: the server queues it and runs it when its script's -s allows (or at --queue), whether or not anything waits for it. Prints the run's id (with --json, the server's answer), for "rexec status", "rexec logs", "rexec cancel".

    id=$(rexec submit backup -- s3://bucket)
    rexec logs -f "$id"

With --wait it writes the run's output (stdout and stderr merged) here as it comes, its id on stderr, and exits as the run did. Ctrl-C stops the waiting, not the run ("rexec cancel ID" does).

` + exitsHelp(map[string]string{"4": "or the run could not start (its process failed to start)"}) + `

With --wait, when the run ended:

    0-255   the run's exit code
    128+N   the run was killed by signal N: 143 for SIGTERM (cancelled, its --timeout, the server's shutdown), 137 for SIGKILL; 143 too for a run cancelled before it started
    255     the server died during the run (interrupted, with no exit status), or the run could no longer be followed: its end is unknown here`
}

func (c *submitCmd) Validate() error {
	if c.Timeout < 0 {
		return errors.New("--timeout must be positive")
	}
	if c.RetryFor <= 0 {
		return errors.New("--retry-for must be positive")
	}
	if c.JSON && c.Wait {
		return errors.New("--json and --wait do not go together: --wait writes the run's output")
	}
	if c.Queue != "" {
		if _, err := parseWhen(c.Queue, time.Now(), true); err != nil {
			return fmt.Errorf("--queue: %w", err)
		}
	}
	return c.validate()
}

func (c *submitCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	s := client.Submission{Name: c.Name, Args: c.Args, Timeout: c.Timeout}
	if c.Queue != "" {
		if s.StartAt, err = parseWhen(c.Queue, time.Now(), true); err != nil {
			return &exitError{exitRunUsage, fmt.Errorf("--queue: %w", err)}
		}
	}
	if c.Stdin != "" {
		if s.Stdin, err = readStdinFile(c.Stdin); err != nil {
			return &exitError{exitRunUsage, fmt.Errorf("--stdin: %w", err)}
		}
	}
	ctx, caught, stop := interruptible()
	defer stop()
	a, err := cl.Submit(ctx, s)
	if err != nil {
		if sig := caught(); sig != nil {
			return interrupted(sig, "the run may have been submitted (see rexec history --name "+c.Name+")")
		}
		return apiFailure(c.URL, err, true)
	}
	switch {
	case c.JSON:
		if err := printJSON(a.Raw); err != nil {
			return err
		}
	case c.Wait:
		fmt.Fprintf(os.Stderr, "rexec: run %s: %s\n", a.ID, submittedState(a))
	default:
		fmt.Println(a.ID)
	}
	if a.State == client.StateDone && a.Ended == client.EndedStartFailed {
		return &exitError{exitNotFound, fmt.Errorf("run %s could not start (rexec logs %s may say why)", a.ID, a.ID)}
	}
	if !c.Wait {
		return nil
	}
	st, next, err := cl.Follow(ctx, a.ID, os.Stdout, client.OutputOptions{RetryFor: c.RetryFor, Retrying: retryNote})
	switch {
	case err == nil:
		return runEnd(st)
	case errors.Is(err, client.ErrRunRemoved):
		fmt.Fprintf(os.Stderr, "rexec: run %s ended and its script (-r) removed it from the history: it succeeded, or was cancelled\n", a.ID)
		return nil
	}
	if sig := caught(); sig != nil {
		return interrupted(sig, fmt.Sprintf("stopped waiting; the run goes on (rexec logs -f %s --offset %d; rexec cancel %s)", a.ID, next, a.ID))
	}
	return &exitError{exitRunLost, fmt.Errorf("run %s: %w; its end is unknown here (rexec logs -f %s --offset %d)", a.ID, followError(c.URL, err), a.ID, next)}
}

// readStdinFile reads a run's stdin: at most client.MaxStdin bytes of text.
func readStdinFile(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, client.MaxStdin+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) > client.MaxStdin:
		return nil, fmt.Errorf("more than %d bytes (1 MiB), the most a detached run takes", client.MaxStdin)
	case !utf8.Valid(b):
		return nil, errors.New("not text (UTF-8): a detached run's stdin travels as a JSON string")
	}
	return b, nil
}

// runEnd is the exit of submit --wait for a run that ended as st says: its
// exit code, or 128+N for signal N, as "rexec run" gives.
func runEnd(st client.RunStatus) error {
	switch {
	case st.Signal != "":
		how := "was killed by " + st.Signal
		switch st.Ended {
		case client.EndedCancelled:
			how = "was cancelled: " + how
		case client.EndedTimeout:
			how = "timed out (--timeout, or its script's -t) and " + how
		case client.EndedInterrupted:
			how = "was interrupted by the server's shutdown and " + how
		}
		return &exitError{128 + signalNumber(st.Signal), fmt.Errorf("run %s %s", st.ID, how)}
	case st.ExitCode != nil && (*st.ExitCode < 0 || *st.ExitCode > 255):
		return &exitError{exitRunOther, fmt.Errorf("run %s: the server reported exit code %d", st.ID, *st.ExitCode)}
	case st.ExitCode != nil && *st.ExitCode != 0:
		return &exitError{*st.ExitCode, nil} // silent, as the run itself would be
	case st.ExitCode != nil:
		return nil
	}
	switch st.Ended {
	case client.EndedCancelled:
		return &exitError{128 + 15, fmt.Errorf("run %s was cancelled before it started", st.ID)}
	case client.EndedInterrupted:
		return &exitError{exitRunLost, fmt.Errorf("run %s was interrupted: the server died during it; its exit status is unknown", st.ID)}
	case client.EndedStartFailed:
		return &exitError{exitNotFound, fmt.Errorf("run %s could not start", st.ID)}
	}
	return nil // a -n script's run: nothing ran, nothing failed
}

// retryNote tells, on stderr, that a cut answer is being resumed.
func retryNote(err error, offset int64, wait time.Duration) {
	fmt.Fprintf(os.Stderr, "rexec: %v; resuming at byte %d in %v\n", err, offset, wait.Round(time.Millisecond))
}

// followError is a failure to read or follow the output, as its message.
func followError(url string, err error) error {
	var ee *exitError
	if errors.As(apiFailure(url, err, false), &ee) && ee.err != nil {
		return ee.err
	}
	return err
}

// --- rexec status

type statusCmd struct {
	apiFlags `embed:""`
	jsonFlag `embed:""`
	ID       string `arg:"" optional:"" help:"The run; without it, the runs queued and running now."`
}

func (c *statusCmd) Help() string {
	return `Shows run ID: its script and arguments, its state (queued: its place and why it waits; running: its progress; done: how it ended, its exit code or signal), its times, its output's size and its result. Without ID, lists the runs queued and running now.

With --json: the answer of GET /scripts/v1/status/ID (or GET /scripts/v1/status).

The run's own state never changes the exit status.

` + exitsHelp(nil)
}

func (c *statusCmd) Validate() error { return c.validate() }

func (c *statusCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	ctx := context.Background() // a signal ends the process: 128+N
	if c.ID == "" {
		a, err := cl.Active(ctx)
		if err != nil {
			return apiFailure(c.URL, err, false)
		}
		if c.JSON {
			return printJSON(a.Raw)
		}
		return printActive(os.Stdout, a, time.Now())
	}
	st, err := cl.Status(ctx, c.ID)
	if err != nil {
		return apiFailure(c.URL, err, false)
	}
	if c.JSON {
		return printJSON(st.Raw)
	}
	return printStatus(os.Stdout, st, time.Now())
}

// --- rexec logs

type logsCmd struct {
	apiFlags `embed:""`
	Follow   bool          `short:"f" env:"-" help:"Keep writing the output as the run writes it, until the run ends (waiting for a queued run to start)."`
	Offset   int64         `env:"-" placeholder:"N" help:"Start at byte N of the output (where an earlier rexec logs stopped)."`
	RetryFor time.Duration `env:"-" default:"1m" placeholder:"DURATION" help:"How long to keep trying to resume a cut connection without getting further."`
	ID       string        `arg:"" help:"The run."`
}

func (c *logsCmd) Help() string {
	return `Writes run ID's output (its stdout and stderr, merged, as the server keeps it) to stdout, byte for byte: as it is now, or with -f as the run writes it, until the run ends.

A cut connection, or a restart of the server, is resumed from the byte after the last one written, for up to --retry-for (a minute) without getting further (waits from 100 ms to 5 s), so nothing is written twice or skipped; the resumptions are told on stderr. Ctrl-C stops it, not the run. When it stops early it says, on stderr, the --offset to go on from.

` + exitsHelp(map[string]string{"6": "or the connection was cut and could not be resumed (--retry-for)"})
}

func (c *logsCmd) Validate() error {
	if c.Offset < 0 {
		return errors.New("--offset must be 0 or more")
	}
	if c.RetryFor <= 0 {
		return errors.New("--retry-for must be positive")
	}
	return c.validate()
}

func (c *logsCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	ctx, caught, stop := interruptible()
	defer stop()
	opts := client.OutputOptions{Offset: c.Offset, RetryFor: c.RetryFor, Retrying: retryNote}
	var next int64
	if c.Follow {
		_, next, err = cl.Follow(ctx, c.ID, os.Stdout, opts)
		if errors.Is(err, client.ErrRunRemoved) {
			err = nil // it ended, and its output is all written
		}
	} else {
		next, err = cl.CopyOutput(ctx, c.ID, os.Stdout, opts)
	}
	if err == nil {
		return nil
	}
	resume := fmt.Sprintf("rexec logs %s --offset %d", c.ID, next)
	if c.Follow {
		resume = fmt.Sprintf("rexec logs -f %s --offset %d", c.ID, next)
	}
	if sig := caught(); sig != nil {
		return interrupted(sig, "stopped at byte "+fmt.Sprint(next)+"; the run goes on ("+resume+")")
	}
	if next == c.Offset {
		return apiFailure(c.URL, err, false)
	}
	exit := apiFailure(c.URL, err, false).(*exitError)
	return &exitError{exit.code, fmt.Errorf("%w; stopped at byte %d (%s)", exit.err, next, resume)}
}

// --- rexec cancel

type cancelCmd struct {
	apiFlags `embed:""`
	jsonFlag `embed:""`
	ID       string `arg:"" help:"The run."`
}

func (c *cancelCmd) Help() string {
	return `Cancels run ID: a queued run is dropped; a running one is terminated (SIGTERM to its process group, SIGKILL after the server's --kill-grace). Returns once the server took the cancel; "rexec status ID" shows the run's end.

With --json: the answer of POST /scripts/v1/cancel/ID.

` + exitsHelp(nil)
}

func (c *cancelCmd) Validate() error { return c.validate() }

func (c *cancelCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	ctx := context.Background() // a signal ends the process: 128+N
	if err := cl.Cancel(ctx, c.ID); err != nil {
		return apiFailure(c.URL, err, false)
	}
	if c.JSON {
		return printJSON([]byte(`{"success":true}`))
	}
	fmt.Printf("cancelled %s\n", c.ID)
	return nil
}

// --- rexec history

type historyCmd struct {
	apiFlags `embed:""`
	jsonFlag `embed:""`
	Name     string `env:"-" placeholder:"SCRIPT" help:"Only the runs of this script."`
	State    string `env:"-" placeholder:"STATE" help:"Only runs in this state: queued, running or done."`
	Since    string `env:"-" placeholder:"WHEN" help:"Only runs queued at or after WHEN: a time (RFC 3339; or 2026-01-02T03:04 and 2026-01-02 in local time) or how long ago (24h, 7d)."`
	Until    string `env:"-" placeholder:"WHEN" help:"Only runs queued before WHEN, as --since."`
	Limit    int    `env:"-" placeholder:"N" help:"The most runs to show (a page; the server's default is 100, its most 1000)."`
	All      bool   `env:"-" help:"Every run that matches, page after page."`
	Cursor   string `env:"-" help:"Go on after the page whose next cursor this is (rexec history says it on stderr)."`
}

func (c *historyCmd) Help() string {
	return `Lists the runs of the history, newest first: those that ended (until the server's --retain deletes them), and those queued and running. One page (--limit runs); when there are more, stderr says how to go on, or --all follows every page.

With --json: the answer of GET /scripts/v1/runs ({"runs":[...],"next_cursor":...}); with --all, the runs of every page in one such answer.

` + exitsHelp(nil)
}

func (c *historyCmd) Validate() error {
	if c.Limit < 0 {
		return errors.New("--limit must be positive")
	}
	switch client.State(c.State) {
	case "", client.StateQueued, client.StateRunning, client.StateDone:
	default:
		return fmt.Errorf("--state %q: want queued, running or done", c.State)
	}
	if _, err := c.query(time.Now()); err != nil {
		return err
	}
	return c.validate()
}

func (c *historyCmd) query(now time.Time) (client.HistoryQuery, error) {
	q := client.HistoryQuery{Name: c.Name, State: client.State(c.State), Limit: c.Limit, Cursor: c.Cursor}
	var err error
	if c.Since != "" {
		if q.Since, err = parseWhen(c.Since, now, false); err != nil {
			return q, fmt.Errorf("--since: %w", err)
		}
	}
	if c.Until != "" {
		if q.Until, err = parseWhen(c.Until, now, false); err != nil {
			return q, fmt.Errorf("--until: %w", err)
		}
	}
	return q, nil
}

func (c *historyCmd) Run() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	q, err := c.query(time.Now())
	if err != nil {
		return &exitError{exitRunUsage, err}
	}
	ctx := context.Background() // a signal ends the process: 128+N
	var runs []client.RunStatus
	for {
		p, err := cl.History(ctx, q)
		if err != nil {
			return apiFailure(c.URL, err, false)
		}
		if !c.All {
			if c.JSON {
				return printJSON(p.Raw)
			}
			if err := printHistory(os.Stdout, p.Runs, time.Now()); err != nil {
				return err
			}
			if p.NextCursor != "" {
				fmt.Fprintf(os.Stderr, "rexec: more runs: --cursor %s (or --all)\n", p.NextCursor)
			}
			return nil
		}
		runs = append(runs, p.Runs...)
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	if c.JSON {
		return printJSON(historyJSON(runs))
	}
	return printHistory(os.Stdout, runs, time.Now())
}
