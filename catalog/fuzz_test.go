package catalog_test

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rexec/rexec/catalog"
)

// FuzzParse checks that Parse never panics, that every error is a
// *ParseError on a real line, and that every script it accepts keeps the
// package's promises: a valid unique name, Concurrency >= 1, no executable
// exactly when no process, an Argv that takes exactly NumArgs arguments,
// keeps each one literal and lets none become an option, and a String that
// Parse reads back as the same script.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a /bin/true",
		"-u=0 -g=0 -s=5 test /usr/bin/php /var/scripts/myscript.php -o=@@1 @@2",
		"-n test4 @@1 @@2\ntest3\n# comment",
		`-d="/srv/a b" -e='X=y z' -i -m=3 -r a /bin/echo "@@1" 'x'\''y' \#`,
		"-a -t=1d12h f find /srv @@1\n-t=90s g /bin/rm -f -- @@1 x@@2 @@2-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := catalog.Parse(strings.NewReader(text))
		if err != nil {
			var pe *catalog.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if lines := strings.Count(text, "\n") + 1; pe.Line < 1 || pe.Line > lines {
				t.Fatalf("error on line %d of a %d-line text: %v", pe.Line, lines, err)
			}
			if c != nil {
				t.Fatal("a catalogue returned with an error")
			}
			return
		}
		names := c.Names()
		if len(names) != c.Len() || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("Names() = %q, Len() = %d", names, c.Len())
		}
		for _, name := range names {
			s, ok := c.Lookup(name)
			if !ok || s.Name != name {
				t.Fatalf("Lookup(%q) = %v, %v", name, s, ok)
			}
			checkScript(t, s)
		}
	})
}

// attack is the argument every run of checkScript gives: it must stay literal.
const attack = "; rm -rf / $(id) @@1 '\"\n"

var placeholder = regexp.MustCompile(`@@[1-9][0-9]*`)

func checkScript(t *testing.T, s *catalog.Script) {
	t.Helper()
	if s.Name == "" || len(s.Name) > catalog.MaxNameLen ||
		strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" ||
		s.Name[0] == '.' || s.Name[0] == '-' {
		t.Fatalf("invalid name %q", s.Name)
	}
	if s.Concurrency < 1 || s.MaxQueue < 0 || s.Line < 1 || s.Timeout < 0 || s.Timeout > catalog.MaxTimeout {
		t.Fatalf("%q: Concurrency %d, MaxQueue %d, Line %d, Timeout %v", s.Name, s.Concurrency, s.MaxQueue, s.Line, s.Timeout)
	}
	if s.NoProcess != (s.Path == "") {
		t.Fatalf("%q: NoProcess %v with Path %q", s.Name, s.NoProcess, s.Path)
	}
	if s.NoProcess && (s.Dir != "" || len(s.Env) > 0 || s.User != "" || s.Group != "" || s.AllowStdin ||
		s.AllowOptionArgs || s.Timeout != 0) {
		t.Fatalf("%q: process options on a script without a process: %+v", s.Name, s)
	}
	if strings.HasPrefix(s.Path, "-") || strings.Contains(s.Path, "\x00") {
		t.Fatalf("%q: executable %q", s.Name, s.Path)
	}
	for _, kv := range s.Env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			t.Fatalf("%q: env %q", s.Name, kv)
		}
	}
	if _, err := s.Credential(); err != nil {
		t.Fatalf("%q: accepted but Credential fails: %v", s.Name, err)
	}

	n := s.NumArgs()
	if n < 0 || n > catalog.MaxArgs {
		t.Fatalf("%q: NumArgs %d", s.Name, n)
	}
	args := make([]string, n)
	for i := range args {
		args[i] = attack
	}
	argv, err := s.Argv(args)
	if err != nil {
		t.Fatalf("%q: Argv with %d args: %v", s.Name, n, err)
	}
	if len(argv) != len(s.Params) {
		t.Fatalf("%q: %d params gave %d argv elements", s.Name, len(s.Params), len(argv))
	}
	for i, a := range argv {
		// Every argument is the same, so a plain replacement (which does
		// not rescan what it inserts either) is the expected result.
		if want := placeholder.ReplaceAllLiteralString(s.Params[i], attack); a != want {
			t.Fatalf("%q: param %q gave %q, want %q", s.Name, s.Params[i], a, want)
		}
	}
	if _, err := s.Argv(append(args, "extra")); !errors.Is(err, catalog.ErrTooManyArguments) {
		t.Fatalf("%q: Argv with one extra argument: %v", s.Name, err)
	}
	if n > 0 {
		if _, err := s.Argv(args[:n-1]); !errors.Is(err, catalog.ErrMissingArgument) {
			t.Fatalf("%q: Argv with one argument short: %v", s.Name, err)
		}
	}

	for _, arg := range []string{"-opt", ""} {
		checkOptionArgs(t, s, arg)
	}

	line := s.String()
	back, err := catalog.Parse(strings.NewReader(line))
	if err != nil {
		t.Fatalf("%q printed as %q, which does not parse: %v", s.Name, line, err)
	}
	b, _ := back.Lookup(s.Name)
	b.Line = s.Line
	if !reflect.DeepEqual(s, b) {
		t.Fatalf("printed as %q\nreads back as %#v\nwant %#v", line, b, s)
	}
}

// checkOptionArgs runs s with every argument arg and checks that Argv
// refuses exactly when an element would begin with a '-' that its param
// does not begin with, before any param "--", on a script that starts a
// process without -a; and otherwise gives the plain replacement.
func checkOptionArgs(t *testing.T, s *catalog.Script, arg string) {
	t.Helper()
	args := make([]string, s.NumArgs())
	for i := range args {
		args[i] = arg
	}
	argv, err := s.Argv(args)
	want := make([]string, len(s.Params))
	refuse := false
	ended := s.NoProcess || s.AllowOptionArgs
	for i, p := range s.Params {
		want[i] = placeholder.ReplaceAllLiteralString(p, arg)
		if !ended && strings.HasPrefix(want[i], "-") && !strings.HasPrefix(p, "-") {
			refuse = true
			break
		}
		if p == "--" {
			ended = true
		}
	}
	if refuse {
		if !errors.Is(err, catalog.ErrOptionArgument) || argv != nil {
			t.Fatalf("%q: Argv with arguments %q = %q, %v; want %v", s.Name, arg, argv, err, catalog.ErrOptionArgument)
		}
		return
	}
	if err != nil || !slices.Equal(argv, want) {
		t.Fatalf("%q: Argv with arguments %q = %q, %v; want %q", s.Name, arg, argv, err, want)
	}
}
