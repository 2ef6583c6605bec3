package launch_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/launch"
)

func scripts(t *testing.T) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Parse(strings.NewReader(strings.Join([]string{
		"-i -e=GREETING=hi -d=/tmp -s=3 -t=1m takes /bin/cat @@1",
		"plain /bin/true",
		"-n notify @@1",
		"--tty term /bin/sh",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func lookup(t *testing.T, name string) *catalog.Script {
	t.Helper()
	sc, err := launch.Lookup(scripts(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestLookup(t *testing.T) {
	if _, err := launch.Lookup(scripts(t), "nope"); !errors.Is(err, launch.ErrNoSuchScript) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err %v", err)
	}
	if _, err := launch.Lookup(nil, "plain"); !errors.Is(err, launch.ErrNoSuchScript) {
		t.Fatalf("without an exectab: err %v", err)
	}
}

// The stdin rule is one for every API: an empty stdin is none; any other
// needs -i and fits MaxStdin; live stdin needs -i.
func TestStdinRule(t *testing.T) {
	takes, plain := lookup(t, "takes"), lookup(t, "plain")
	for _, tc := range []struct {
		sc   *catalog.Script
		req  launch.Request
		want error
	}{
		{plain, launch.Request{}, nil},
		{plain, launch.Request{Stdin: 1}, launch.ErrStdin},
		{plain, launch.Request{LiveStdin: true}, launch.ErrStdin},
		{takes, launch.Request{Args: []string{"a"}, Stdin: launch.MaxStdin}, nil},
		{takes, launch.Request{Args: []string{"a"}, LiveStdin: true}, nil},
		{takes, launch.Request{Args: []string{"a"}, Stdin: launch.MaxStdin + 1}, launch.ErrStdin},
		{takes, launch.Request{Args: []string{"a"}, Timeout: -time.Second}, launch.ErrTimeout},
		{takes, launch.Request{}, catalog.ErrMissingArgument},
	} {
		_, err := launch.Spec(tc.sc, tc.req, nil, nil)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s %+v: err %v, want %v", tc.sc.Name, tc.req, err, tc.want)
		}
	}
}

func TestNoProcess(t *testing.T) {
	n := lookup(t, "notify")
	if _, err := launch.Spec(n, launch.Request{Args: []string{"x"}}, nil, nil); !errors.Is(err, launch.ErrNoProcess) {
		t.Fatalf("Spec of a -n script: %v", err)
	}
	// Its arguments and stdin follow the same rules as any script's.
	if _, err := launch.Check(n, launch.Request{Args: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := launch.Check(n, launch.Request{}); !errors.Is(err, catalog.ErrMissingArgument) {
		t.Fatalf("missing argument: %v", err)
	}
	if _, err := launch.Check(n, launch.Request{Args: []string{"x"}, Stdin: 2}); !errors.Is(err, launch.ErrStdin) {
		t.Fatalf("stdin: %v", err)
	}
}

func TestSpec(t *testing.T) {
	sc := lookup(t, "takes")
	base := make([]string, 1, 8) // room to append: the base must not be written
	base[0] = "PATH=/bin"
	spec, err := launch.Spec(sc, launch.Request{Args: []string{"x"}}, nil, base, "REXEC_RUN_ID=1")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Path != "/bin/cat" || !slices.Equal(spec.Args, []string{"x"}) || spec.Dir != "/tmp" {
		t.Fatalf("spec %+v", spec)
	}
	if want := []string{"PATH=/bin", "GREETING=hi", "REXEC_RUN_ID=1"}; !slices.Equal(spec.Env, want) {
		t.Fatalf("env %q, want %q", spec.Env, want)
	}
	if spec.Stderr != child.StderrMerge || spec.Stdin != nil || spec.Timeout != time.Minute {
		t.Fatalf("stderr %v stdin %v timeout %v", spec.Stderr, spec.Stdin, spec.Timeout)
	}
	// A second spec from the same base sees none of the first's extras.
	other, _ := launch.Spec(sc, launch.Request{Args: []string{"y"}}, nil, base, "REXEC_RUN_ID=2")
	if spec.Env[2] != "REXEC_RUN_ID=1" || other.Env[2] != "REXEC_RUN_ID=2" {
		t.Fatalf("envs share their backing array: %q %q", spec.Env, other.Env)
	}
	if lim := launch.Limit(sc); lim.Group != "script takes" || lim.Max != 3 {
		t.Fatalf("limit %+v", lim)
	}
}

func TestTimeout(t *testing.T) {
	sc, plain := lookup(t, "takes"), lookup(t, "plain")
	for _, tc := range []struct {
		sc        *catalog.Script
		asked, is time.Duration
	}{
		{sc, 0, time.Minute},
		{sc, time.Second, time.Second},
		{sc, time.Hour, time.Minute},
		{plain, 0, 0},
		{plain, time.Hour, time.Hour},
		{plain, -1, 0},
	} {
		if got := launch.Timeout(tc.asked, tc.sc); got != tc.is {
			t.Errorf("%s asked %v: %v, want %v", tc.sc.Name, tc.asked, got, tc.is)
		}
	}
}

// A terminal is the exectab's to allow (--tty), and its size and stderr are
// one rule for scripts and commands (CheckTTY).
func TestTTYRule(t *testing.T) {
	term, plain := lookup(t, "term"), lookup(t, "plain")
	if _, err := launch.Spec(plain, launch.Request{TTY: true}, nil, nil); !errors.Is(err, launch.ErrTTY) || !strings.Contains(err.Error(), "--tty") {
		t.Fatalf("a terminal for a script without --tty: %v", err)
	}
	spec, err := launch.Spec(term, launch.Request{TTY: true, Rows: 40, Cols: 120}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !spec.TTY || spec.Rows != 40 || spec.Cols != 120 || spec.Stderr != child.StderrMerge {
		t.Fatalf("spec %+v", spec)
	}
	if err := launch.CheckTTY(spec); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*child.Spec){
		"stderr discarded": func(s *child.Spec) { s.Stderr = child.StderrDiscard },
		"rows 1001":        func(s *child.Spec) { s.Rows = 1001 },
		"cols -1":          func(s *child.Spec) { s.Cols = -1 },
		"a size, no tty":   func(s *child.Spec) { s.TTY = false },
	} {
		bad := spec
		change(&bad)
		if err := launch.CheckTTY(bad); !errors.Is(err, launch.ErrTTY) {
			t.Errorf("%s: %v, want ErrTTY", name, err)
		}
	}
	// A script with --tty runs without one when the request asks for none.
	if spec, err := launch.Spec(term, launch.Request{}, nil, nil); err != nil || spec.TTY || launch.CheckTTY(spec) != nil {
		t.Fatalf("a run of a --tty script without a terminal: %+v %v", spec, err)
	}
}
