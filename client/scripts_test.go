//go:build linux

package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/client"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// scriptsClient is a client of a real server running the exectab lines
// (EXE is the test binary, for fake children).
func scriptsClient(t *testing.T, token string, lines ...string) (*client.Client, string) {
	t.Helper()
	exe, _ := testchild.Command("")
	tab := filepath.Join(t.TempDir(), "exectab")
	text := strings.ReplaceAll(strings.Join(lines, "\n"), "EXE", "'"+exe+"'") + "\n"
	if err := os.WriteFile(tab, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	url := testserver.Start(t, node.Config{ScriptsFile: tab, Web: webapi.Config{Token: token}}).URL
	return mustClient(t, url, token), url
}

func wantServerCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) || se.StatusCode != status || se.Code != code {
		t.Fatalf("error %v, want a ServerError %d %s", err, status, code)
	}
}

func TestDetachedRuns(t *testing.T) {
	c, _ := scriptsClient(t, "",
		"-e=TESTCHILD=lines lines EXE @@1 @@2",
		"-e=TESTCHILD=exit code EXE @@1",
		"-e=TESTCHILD=cat -i cat EXE",
		"-e=TESTCHILD=hang -s=1 -t=1h hang EXE",
		"-n -r note @@1",
	)
	ctx := context.Background()

	t.Run("Scripts", func(t *testing.T) {
		l, err := c.Scripts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range l.Scripts {
			names = append(names, s.Name)
		}
		i := slices.IndexFunc(l.Scripts, func(s client.Script) bool { return s.Name == "hang" })
		if !slices.Equal(names, []string{"cat", "code", "hang", "lines", "note"}) || i < 0 ||
			time.Duration(l.Scripts[i].Timeout) != time.Hour || l.Scripts[i].Concurrency != 1 || l.Scripts[i].Args != 0 {
			t.Fatalf("%+v", l.Scripts)
		}
		if n := l.Scripts[slices.IndexFunc(l.Scripts, func(s client.Script) bool { return s.Name == "note" })]; !n.NotifyOnly || !n.RemoveDone || n.Args != 1 {
			t.Fatalf("note: %+v", n)
		}
		var raw map[string]any
		if json.Unmarshal(l.Raw, &raw) != nil || raw["success"] != true {
			t.Fatalf("raw %s", l.Raw)
		}
	})

	t.Run("Submit, Follow, Status", func(t *testing.T) {
		a, err := c.Submit(ctx, client.Submission{Name: "lines", Args: []string{"5", "10ms"}, Timeout: time.Minute})
		if err != nil || a.ID == "" || a.Name != "lines" || a.Queued.IsZero() || len(a.Raw) == 0 {
			t.Fatalf("%+v %v", a, err)
		}
		var out bytes.Buffer
		st, next, err := c.Follow(ctx, a.ID, &out, client.OutputOptions{})
		want := "line 0\nline 1\nline 2\nline 3\nline 4\n"
		if err != nil || out.String() != want || next != int64(len(want)) {
			t.Fatalf("%q %d %v", out.String(), next, err)
		}
		if st.State != client.StateDone || st.Ended != client.EndedExit || st.ExitCode == nil || *st.ExitCode != 0 ||
			st.OutputSize != next || time.Duration(st.Timeout) != time.Minute || st.Started.IsZero() || st.EndedAt.Before(st.Started.Time) ||
			!slices.Equal(st.Args, []string{"5", "10ms"}) {
			t.Fatalf("status at the end %+v", st)
		}
		got, err := c.Status(ctx, a.ID)
		if err != nil || got.ID != a.ID || got.OutputSize != st.OutputSize || !bytes.Contains(got.Raw, []byte(`"success":true`)) {
			t.Fatalf("%+v %v", got, err)
		}

		// Output, one answer, from an offset.
		o, err := c.Output(ctx, a.ID, 7, false)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(o)
		o.Close()
		if err != nil || string(b) != want[7:] || o.Offset() != int64(len(want)) {
			t.Fatalf("%q %v at %d", b, err, o.Offset())
		}
		if _, err := c.Output(ctx, a.ID, 1000, false); err == nil {
			t.Fatal("an offset past the end was taken")
		} else {
			wantServerCode(t, err, 416, "invalid_offset")
		}
	})

	t.Run("Submit with stdin and a start time", func(t *testing.T) {
		// Two seconds ahead: the API takes whole seconds, so at least one
		// is left when the answer is made, however loaded the machine.
		a, err := c.Submit(ctx, client.Submission{Name: "cat", Stdin: []byte("in\n"), StartAt: time.Now().Add(2 * time.Second)})
		if err != nil || a.State != client.StateQueued || a.Waiting != "start_time" || a.Position != 1 {
			t.Fatalf("%+v %v", a, err)
		}
		var out bytes.Buffer
		if _, _, err := c.Follow(ctx, a.ID, &out, client.OutputOptions{}); err != nil || out.String() != "in\n" {
			t.Fatalf("%q %v", out.String(), err)
		}
		for _, s := range []client.Submission{
			{Name: "cat", Stdin: bytes.Repeat([]byte("x"), client.MaxStdin+1)},
			{Name: "cat", Stdin: []byte{0xff}},
			{Name: ""},
			{Name: "cat", Timeout: -time.Second},
		} {
			if _, err := c.Submit(ctx, s); err == nil || errors.As(err, new(*client.ServerError)) {
				t.Errorf("%.40v: %v, want a refusal here", s, err)
			}
		}
	})

	t.Run("Active and Cancel", func(t *testing.T) {
		running, err := c.Submit(ctx, client.Submission{Name: "hang"})
		if err != nil {
			t.Fatal(err)
		}
		queued, err := c.Submit(ctx, client.Submission{Name: "hang"})
		if err != nil || queued.State != client.StateQueued || queued.Waiting != "slot" {
			t.Fatalf("%+v %v", queued, err)
		}
		a, err := c.Active(ctx)
		if err != nil || len(a.Running) != 1 || a.Running[0].ID != running.ID || len(a.Queued) != 1 || a.Queued[0].ID != queued.ID ||
			a.Queued[0].Position != 1 || a.Queued[0].Waiting != "slot" {
			t.Fatalf("%+v %v", a, err)
		}
		for _, id := range []string{queued.ID, running.ID} {
			if err := c.Cancel(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		st, _, err := c.Follow(ctx, running.ID, io.Discard, client.OutputOptions{})
		if err != nil || st.Ended != client.EndedCancelled || st.Signal != "SIGTERM" {
			t.Fatalf("%+v %v", st, err)
		}
		wantServerCode(t, c.Cancel(ctx, running.ID), 409, "already_done")
		if st, err := c.Status(ctx, queued.ID); err != nil || st.Ended != client.EndedCancelled || st.Started.IsZero() != true {
			t.Fatalf("%+v %v", st, err)
		}
	})

	t.Run("History", func(t *testing.T) {
		var ids []string
		for _, code := range []string{"1", "2", "3"} {
			a, err := c.Submit(ctx, client.Submission{Name: "code", Args: []string{code}})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Follow(ctx, a.ID, io.Discard, client.OutputOptions{}); err != nil {
				t.Fatal(err)
			}
			ids = append([]string{a.ID}, ids...) // newest first
		}
		var got []string
		q := client.HistoryQuery{Name: "code", Limit: 2, Since: time.Now().Add(-time.Hour)}
		for pages := 0; ; pages++ {
			p, err := c.History(ctx, q)
			if err != nil || pages > 2 {
				t.Fatalf("page %d: %v", pages, err)
			}
			for _, r := range p.Runs {
				got = append(got, r.ID)
				if r.ExitCode == nil || r.Name != "code" || len(r.Raw) == 0 {
					t.Fatalf("%+v", r)
				}
			}
			if p.NextCursor == "" {
				break
			}
			q.Cursor = p.NextCursor
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("history %v, want %v", got, ids)
		}
		p, err := c.History(ctx, client.HistoryQuery{Name: "code", State: client.StateQueued})
		if err != nil || len(p.Runs) != 0 || p.NextCursor != "" {
			t.Fatalf("%+v %v", p, err)
		}
		_, err = c.History(ctx, client.HistoryQuery{Cursor: "junk"})
		wantServerCode(t, err, 400, "invalid_request")
	})

	t.Run("errors have kinds", func(t *testing.T) {
		_, err := c.Submit(ctx, client.Submission{Name: "nosuch"})
		wantServerCode(t, err, 404, "invalid_name")
		_, err = c.Submit(ctx, client.Submission{Name: "code"})
		wantServerCode(t, err, 400, "invalid_args")
		_, err = c.Status(ctx, "nosuchrun")
		wantServerCode(t, err, 404, "invalid_id")
		_, _, err = c.Follow(ctx, "nosuchrun", io.Discard, client.OutputOptions{})
		wantServerCode(t, err, 404, "invalid_id")
		wantServerCode(t, c.Cancel(ctx, "nosuchrun"), 404, "invalid_id")
		for _, id := range []string{"", ".", ".."} {
			if _, err := c.Status(ctx, id); err == nil || errors.As(err, new(*client.ServerError)) {
				t.Errorf("id %q: %v", id, err)
			}
		}
		// An id is one path segment, whatever it holds.
		_, err = c.Status(ctx, "../../healthz")
		wantServerCode(t, err, 404, "invalid_id")
	})

	t.Run("a token", func(t *testing.T) {
		authed, url := scriptsClient(t, "s3cret", "-n note @@1")
		_, err := mustClient(t, url, "").Scripts(ctx)
		wantServerCode(t, err, 401, "unauthorized")
		if _, err := authed.Scripts(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestScriptsOfAServerWithoutScripts(t *testing.T) {
	c := mustClient(t, newServer(t, webapi.Config{}), "")
	_, err := c.Scripts(context.Background())
	wantServerCode(t, err, 404, "no_scripts")
}
