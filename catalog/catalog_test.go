package catalog_test

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
)

// mustParse parses text and fails the test on an error.
func mustParse(t *testing.T, text string) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return c
}

// mustScript parses a one-script text and returns its script.
func mustScript(t *testing.T, text string) *catalog.Script {
	t.Helper()
	c := mustParse(t, text)
	if c.Len() != 1 {
		t.Fatalf("Parse(%q): %d scripts, want 1", text, c.Len())
	}
	s, _ := c.Lookup(c.Names()[0])
	return s
}

// needUserGroup skips the test when nobody or nogroup is missing.
func needUserGroup(t *testing.T) {
	t.Helper()
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skipf("no user nobody on this machine: %v", err)
	}
	if _, err := user.LookupGroup("nogroup"); err != nil {
		t.Skipf("no group nogroup on this machine (Debian has it): %v", err)
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name string
		line string
		want catalog.Script
	}{
		{"executable only", "a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 1}},
		{"params", "a /bin/echo x @@1 --o=@@2",
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"x", "@@1", "--o=@@2"}, Concurrency: 1}},
		{"bare executable name", "a echo hi",
			catalog.Script{Name: "a", Path: "echo", Params: []string{"hi"}, Concurrency: 1}},
		{"-d", "-d=/var/log/apache2 a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Dir: "/var/log/apache2", Concurrency: 1}},
		{"-e once", "-e=LANG=C a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Env: []string{"LANG=C"}, Concurrency: 1}},
		{"-e repeated, empty value, = in value", "-e=A=1 -e=B= -e=C=x=y a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Env: []string{"A=1", "B=", "C=x=y"}, Concurrency: 1}},
		{"-i", "-i a /bin/cat",
			catalog.Script{Name: "a", Path: "/bin/cat", AllowStdin: true, Concurrency: 1}},
		{"-m", "-m=7 a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", MaxQueue: 7, Concurrency: 1}},
		{"-m=0 is unlimited", "-m=0 a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 1}},
		{"-n with params", "-n test4 @@1 @@2",
			catalog.Script{Name: "test4", NoProcess: true, Params: []string{"@@1", "@@2"}, Concurrency: 1}},
		{"-n takes a path-like token as a param", "-n a /bin/echo",
			catalog.Script{Name: "a", NoProcess: true, Params: []string{"/bin/echo"}, Concurrency: 1}},
		{"-n alone", "-n a",
			catalog.Script{Name: "a", NoProcess: true, Concurrency: 1}},
		{"name alone starts no process", "test3",
			catalog.Script{Name: "test3", NoProcess: true, Concurrency: 1}},
		{"-r", "-r a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", RemoveDone: true, Concurrency: 1}},
		{"-s", "-s=5 a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 5}},
		{"-u and -g by id", "-u=0 -g=0 a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", User: "0", Group: "0", Concurrency: 1}},
		{"-a", "-a f find /srv @@1",
			catalog.Script{Name: "f", Path: "find", Params: []string{"/srv", "@@1"}, AllowOptionArgs: true, Concurrency: 1}},
		{"-t seconds", "-t=30s a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 30 * time.Second, Concurrency: 1}},
		{"-t hours and minutes", "-t=2h45m a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 2*time.Hour + 45*time.Minute, Concurrency: 1}},
		{"-t as time.Duration prints it", "-t=1h30m0s a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 90 * time.Minute, Concurrency: 1}},
		{"-t days", "-t=1d a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 24 * time.Hour, Concurrency: 1}},
		{"-t days and hours", "-t=1d12h a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 36 * time.Hour, Concurrency: 1}},
		{"-t zero days and a second", "-t=0d1s a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: time.Second, Concurrency: 1}},
		{"-t fraction", "-t=1.5s a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 1500 * time.Millisecond, Concurrency: 1}},
		{"-t at most", "-t=36525d a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: catalog.MaxTimeout, Concurrency: 1}},
		{"-t quoted", "-t='10m' a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Timeout: 10 * time.Minute, Concurrency: 1}},
		{"-n -r -m -s together", "-n -r -m=3 -s=2 notify",
			catalog.Script{Name: "notify", NoProcess: true, RemoveDone: true, MaxQueue: 3, Concurrency: 2}},
		{"every process option", "-d=/tmp -e=A=1 -g=0 -i -m=4 -r -s=3 -t=1m -u=0 -a -e=B=2 all /bin/sh -c 'echo @@1'",
			catalog.Script{Name: "all", Path: "/bin/sh", Params: []string{"-c", "echo @@1"}, Dir: "/tmp",
				Env: []string{"A=1", "B=2"}, User: "0", Group: "0", AllowOptionArgs: true, AllowStdin: true, MaxQueue: 4,
				RemoveDone: true, Concurrency: 3, Timeout: time.Minute}},
		{"options in any order", "-s=2 -i -d=/ a /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Dir: "/", AllowStdin: true, Concurrency: 2}},
		{"option-like params after the name", "a /bin/ls -l -s=2 -- -x",
			catalog.Script{Name: "a", Path: "/bin/ls", Params: []string{"-l", "-s=2", "--", "-x"}, Concurrency: 1}},
		{"quoted option value", `-d="/srv/my dir" -e='MSG=a b' a /bin/true`,
			catalog.Script{Name: "a", Path: "/bin/true", Dir: "/srv/my dir", Env: []string{"MSG=a b"}, Concurrency: 1}},
		{"quoted params", `a /bin/echo "a b" 'c  d' e\ f "" '' x"y"z`,
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"a b", "c  d", "e f", "", "", "xyz"}, Concurrency: 1}},
		{"escapes in double quotes", `a /bin/echo "q\"q" "b\\b" "d\$x" "keep\n"`,
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{`q"q`, `b\b`, `d$x`, `keep\n`}, Concurrency: 1}},
		{"single quotes are literal", `a /bin/echo '\"$x' 'it'\''s'`,
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{`\"$x`, "it's"}, Concurrency: 1}},
		{"# mid-line is not a comment", "a /bin/echo #1 # x",
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"#1", "#", "x"}, Concurrency: 1}},
		{"tabs and extra blanks", "\t -s=2 \t a\t/bin/echo   x  ",
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"x"}, Concurrency: 2}},
		{"name charset", "A.b_c-9 /bin/true",
			catalog.Script{Name: "A.b_c-9", Path: "/bin/true", Concurrency: 1}},
		{"@@ not followed by a digit is literal", "a /bin/echo @@ a@@b @@x mail@@",
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"@@", "a@@b", "@@x", "mail@@"}, Concurrency: 1}},
		{"@@ in a name-like executable that is not a placeholder", "a /opt/x@@y/run",
			catalog.Script{Name: "a", Path: "/opt/x@@y/run", Concurrency: 1}},
		{"CRLF line end", "a /bin/echo x\r\n",
			catalog.Script{Name: "a", Path: "/bin/echo", Params: []string{"x"}, Concurrency: 1}},
		{"byte order mark", "\ufeffa /bin/true",
			catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustScript(t, tt.line)
			tt.want.Line = 1
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.line, *got, tt.want)
			}
		})
	}
}

func TestParseUserGroupNames(t *testing.T) {
	needUserGroup(t)
	s := mustScript(t, "-u=nobody -g=nogroup a /bin/true")
	if s.User != "nobody" || s.Group != "nogroup" {
		t.Errorf("User, Group = %q, %q; want nobody, nogroup", s.User, s.Group)
	}
}

func TestParseCommentsAndBlankLines(t *testing.T) {
	text := strings.Join([]string{
		"# a comment",
		"",
		"   ",
		"\t# an indented comment",
		"#-s=2 commented /bin/true",
		"one /bin/true",
		"  # another",
		"",
		"two /bin/false",
		"#",
	}, "\n")
	c := mustParse(t, text)
	if got, want := c.Names(), []string{"one", "two"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	one, _ := c.Lookup("one")
	two, _ := c.Lookup("two")
	if one.Line != 6 || two.Line != 9 {
		t.Errorf("lines = %d, %d; want 6, 9", one.Line, two.Line)
	}
	if _, ok := c.Lookup("commented"); ok {
		t.Error("a commented-out line defined a script")
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "\n\n", "# only comments\n# here", "\r\n"} {
		c := mustParse(t, text)
		if c.Len() != 0 || len(c.Names()) != 0 {
			t.Errorf("Parse(%q): %d scripts, want 0", text, c.Len())
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		line int
		kind error
	}{
		{"unknown option", "a /bin/true\n-x a2 /bin/true", 2, catalog.ErrUnknownOption},
		{"long option", "--dir=/tmp a /bin/true", 1, catalog.ErrUnknownOption},
		{"combined flags", "-in a /bin/true", 1, catalog.ErrUnknownOption},
		{"lone dash", "- a /bin/true", 1, catalog.ErrUnknownOption},
		{"-s with a space", "-s 5 a /bin/true", 1, catalog.ErrBadOption},
		{"-s glued", "-s5 a /bin/true", 1, catalog.ErrUnknownOption},
		{"-s=0", "-s=0 a /bin/true", 1, catalog.ErrBadOption},
		{"-s negative", "-s=-1 a /bin/true", 1, catalog.ErrBadOption},
		{"-s not a number", "-s=two a /bin/true", 1, catalog.ErrBadOption},
		{"-s plus sign", "-s=+2 a /bin/true", 1, catalog.ErrBadOption},
		{"-s too large", "-s=99999999999 a /bin/true", 1, catalog.ErrBadOption},
		{"-m not a number", "-m=1.5 a /bin/true", 1, catalog.ErrBadOption},
		{"-m empty", "-m= a /bin/true", 1, catalog.ErrBadOption},
		{"-d relative", "-d=var/log a /bin/true", 1, catalog.ErrBadOption},
		{"-d without value", "-d a /bin/true", 1, catalog.ErrBadOption},
		{"-d with a placeholder", "-d=/srv/@@1 a /bin/true", 1, catalog.ErrBadOption},
		{"-e without =", "-e=LANG a /bin/true", 1, catalog.ErrBadOption},
		{"-e bad name", "-e=1X=y a /bin/true", 1, catalog.ErrBadOption},
		{"-e empty name", "-e==y a /bin/true", 1, catalog.ErrBadOption},
		{"-e same variable twice", "-e=A=1 -e=A=2 a /bin/true", 1, catalog.ErrBadOption},
		{"-e with a placeholder", "-e=A=@@1 a /bin/true", 1, catalog.ErrBadOption},
		{"-i with a value", "-i=yes a /bin/true", 1, catalog.ErrBadOption},
		{"-n with a value", "-n=1 a", 1, catalog.ErrBadOption},
		{"-r with a value", "-r=1 a /bin/true", 1, catalog.ErrBadOption},
		{"-u empty", "-u= a /bin/true", 1, catalog.ErrBadOption},
		{"-g empty", "-g='' a /bin/true", 1, catalog.ErrBadOption},
		{"-a with a value", "-a=1 a /bin/true", 1, catalog.ErrBadOption},
		{"-a twice", "-a -a a /bin/true", 1, catalog.ErrBadOption},
		{"-a on -n", "-n -a a @@1", 1, catalog.ErrBadOption},
		{"-a on a name alone", "-a a", 1, catalog.ErrBadOption},
		{"-t without value", "-t a /bin/true", 1, catalog.ErrBadOption},
		{"-t empty", "-t= a /bin/true", 1, catalog.ErrBadOption},
		{"-t twice", "-t=1s -t=2s a /bin/true", 1, catalog.ErrBadOption},
		{"-t zero", "-t=0 a /bin/true", 1, catalog.ErrBadOption},
		{"-t zero seconds", "-t=0s a /bin/true", 1, catalog.ErrBadOption},
		{"-t zero days", "-t=0d a /bin/true", 1, catalog.ErrBadOption},
		{"-t negative", "-t=-5s a /bin/true", 1, catalog.ErrBadOption},
		{"-t plus sign", "-t=+5s a /bin/true", 1, catalog.ErrBadOption},
		{"-t days minus hours", "-t=1d-1h a /bin/true", 1, catalog.ErrBadOption},
		{"-t plus sign after days", "-t=1d+1h a /bin/true", 1, catalog.ErrBadOption},
		{"-t no unit", "-t=5 a /bin/true", 1, catalog.ErrBadOption},
		{"-t unknown unit", "-t=1w a /bin/true", 1, catalog.ErrBadOption},
		{"-t fractional days", "-t=1.5d a /bin/true", 1, catalog.ErrBadOption},
		{"-t d alone", "-t=d a /bin/true", 1, catalog.ErrBadOption},
		{"-t days twice", "-t=1d1d a /bin/true", 1, catalog.ErrBadOption},
		{"-t days last", "-t=12h1d a /bin/true", 1, catalog.ErrBadOption},
		{"-t a space", "-t='1 h' a /bin/true", 1, catalog.ErrBadOption},
		{"-t over 100 years in days", "-t=36526d a /bin/true", 1, catalog.ErrBadOption},
		{"-t over 100 years by a nanosecond", "-t=36525d1ns a /bin/true", 1, catalog.ErrBadOption},
		{"-t over 100 years in hours", "-t=876601h a /bin/true", 1, catalog.ErrBadOption},
		{"-t days overflowing", "-t=99999999999999999999d a /bin/true", 1, catalog.ErrBadOption},
		{"-t hours overflowing", "-t=9999999999h a /bin/true", 1, catalog.ErrBadOption},
		{"-t on -n", "-n -t=1s a", 1, catalog.ErrBadOption},
		{"-t on a name alone", "-t=1s a", 1, catalog.ErrBadOption},
		{"option twice", "-s=2 -s=3 a /bin/true", 1, catalog.ErrBadOption},
		{"flag twice", "-i -i a /bin/true", 1, catalog.ErrBadOption},
		{"-d on -n", "-n -d=/tmp a", 1, catalog.ErrBadOption},
		{"-e on -n", "-n -e=A=1 a", 1, catalog.ErrBadOption},
		{"-u on a name alone", "-u=0 a", 1, catalog.ErrBadOption},
		{"-g on a name alone", "-g=0 a", 1, catalog.ErrBadOption},
		{"-i on a name alone", "-i a", 1, catalog.ErrBadOption},
		{"only options", "-s=2 -i", 1, catalog.ErrSyntax},
		{"unterminated single quote", "a /bin/echo 'x", 1, catalog.ErrSyntax},
		{"unterminated double quote", "\n\na /bin/echo \"x", 3, catalog.ErrSyntax},
		{"trailing backslash", "a /bin/echo x\\", 1, catalog.ErrSyntax},
		{"control character", "a /bin/echo \x01", 1, catalog.ErrSyntax},
		{"NUL byte", "a /bin/echo x\x00y", 1, catalog.ErrSyntax},
		{"invalid UTF-8", "a /bin/echo \xff", 1, catalog.ErrSyntax},
		{"line too long", "a /bin/echo " + strings.Repeat("x", catalog.MaxLineLen), 1, catalog.ErrSyntax},
		{"line too long after others", "a /bin/true\n\nb /bin/echo " + strings.Repeat("x", 3*catalog.MaxLineLen) + "\nc", 3, catalog.ErrSyntax},
		{"name with a slash", "a/b /bin/true", 1, catalog.ErrBadName},
		{"name with a space (quoted)", "'a b' /bin/true", 1, catalog.ErrBadName},
		{"name with a shell character", "a;b /bin/true", 1, catalog.ErrBadName},
		{"name non-ASCII", "café /bin/true", 1, catalog.ErrBadName},
		{"name starting with a dot", ".. /bin/true", 1, catalog.ErrBadName},
		{"name empty", "-s=2 '' /bin/true", 1, catalog.ErrBadName},
		{"name too long", strings.Repeat("n", catalog.MaxNameLen+1) + " /bin/true", 1, catalog.ErrBadName},
		{"// is no comment", "// /bin/true", 1, catalog.ErrBadName},
		{"duplicate name", "a /bin/true\n\nb /bin/true\na /bin/false", 4, catalog.ErrDuplicateName},
		{"duplicate notify-only name", "a\n-n a", 2, catalog.ErrDuplicateName},
		{"relative executable", "a ./run.sh", 1, catalog.ErrBadExecutable},
		{"relative executable in a dir", "a bin/run", 1, catalog.ErrBadExecutable},
		{"executable from an argument", "a @@1", 1, catalog.ErrBadExecutable},
		{"executable with an embedded placeholder", "a /usr/bin/@@1", 1, catalog.ErrBadExecutable},
		{"option after the name", "a -s=2 /bin/true", 1, catalog.ErrBadExecutable},
		{"empty executable", "a '' x", 1, catalog.ErrBadExecutable},
		{"@@0", "a /bin/echo @@0", 1, catalog.ErrBadParam},
		{"leading zero", "a /bin/echo @@01", 1, catalog.ErrBadParam},
		{"placeholder too high", "a /bin/echo @@257", 1, catalog.ErrBadParam},
		{"placeholder absurdly high", "a /bin/echo @@99999999999999999999", 1, catalog.ErrBadParam},
		{"@@0 on -n", "-n a @@0", 1, catalog.ErrBadParam},
		{"unknown user", "-u=rexec-no-such-user a /bin/true", 1, catalog.ErrUnknownUser},
		{"unknown group", "\n-g=rexec-no-such-group a /bin/true", 2, catalog.ErrUnknownGroup},
		{"numeric uid without entry and without -g", "-u=4000000000 a /bin/true", 1, catalog.ErrUnknownUser},
		{"uid out of range", "-u=4294967296 a /bin/true", 1, catalog.ErrUnknownUser},
		{"gid -1", "-g=4294967295 a /bin/true", 1, catalog.ErrUnknownGroup},
		{"first error wins", "-x a\n-y b", 1, catalog.ErrUnknownOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := catalog.Parse(strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("Parse(%q) = %d scripts, want an error", tt.text, c.Len())
			}
			if c != nil {
				t.Errorf("Parse(%q) returned a catalog with its error", tt.text)
			}
			var pe *catalog.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v (%T) is not a *ParseError", tt.text, err, err)
			}
			if pe.Line != tt.line {
				t.Errorf("Parse(%q): line %d, want %d (%v)", tt.text, pe.Line, tt.line, err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Parse(%q): %v is not %v", tt.text, err, tt.kind)
			}
			if pe.Msg == "" {
				t.Errorf("Parse(%q): empty message", tt.text)
			}
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	text := strings.Repeat("# comment\n", 11) + "-x a /bin/true\n"
	_, err := catalog.Parse(strings.NewReader(text))
	if want := "exectab:12: unknown option -x: not one of -a -d -e -g -i -m -n -r -s -t -u"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}

	_, err = catalog.Parse(strings.NewReader("-t=1w a /bin/true"))
	if want := "exectab:1: -t=1w: not a duration such as 30s, 10m, 2h, 1d or 1d12h (positive, at most 36525d)"; err == nil || err.Error() != want {
		t.Errorf("a bad -t's error = %v, want %s", err, want)
	}

	_, err = catalog.Parse(strings.NewReader("-t=1h a"))
	if want := `exectab:1: -t has no effect on script "a", which starts no process`; err == nil || err.Error() != want {
		t.Errorf("-t on a name alone: error = %v, want %s", err, want)
	}

	_, err = catalog.Parse(strings.NewReader("a/b /bin/true"))
	if err == nil || !strings.Contains(err.Error(), "letters, digits, '.', '_' and '-'") {
		t.Errorf("a bad name's error %v does not say which characters are allowed", err)
	}

	_, err = catalog.Parse(strings.NewReader("-u=rexec-no-such-user a /bin/true"))
	if err == nil || !strings.Contains(err.Error(), `"rexec-no-such-user"`) {
		t.Errorf("an unknown user's error %v does not name the user", err)
	}

	_, err = catalog.Parse(strings.NewReader("a /bin/true\na /bin/true"))
	if err == nil || err.Error() != `exectab:2: script "a" is already defined on line 1` {
		t.Errorf("duplicate error = %v", err)
	}
}

// An environment value may be a secret: no error about -e shows it.
func TestParseErrorHidesEnvValues(t *testing.T) {
	for _, line := range []string{
		"-e=1X=s3cret a /bin/true",
		"-e=A=s3cret@@1 a /bin/true",
		"-e=A=x -e=A=s3cret a /bin/true",
		"-e=s3cret a /bin/true",
		"-n -e=A=s3cret a",
	} {
		_, err := catalog.Parse(strings.NewReader(line))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", line)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Parse(%q) error shows the value: %v", line, err)
		}
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := catalog.Parse(iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want the reader's", err)
	}
	var pe *catalog.ParseError
	if errors.As(err, &pe) {
		t.Errorf("a read error is reported as a malformed line: %v", err)
	}
}

func TestParseLongLineWithinLimit(t *testing.T) {
	param := strings.Repeat("x", catalog.MaxLineLen-len("a /bin/echo \n"))
	s := mustScript(t, "a /bin/echo "+param+"\n")
	if len(s.Params) != 1 || s.Params[0] != param {
		t.Errorf("a line of exactly MaxLineLen bytes lost its param")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("a /bin/true\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Errorf("Len() = %d, want 2", c.Len())
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("a /bin/true\n\n-z b /bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = catalog.Load(bad)
	var pe *catalog.ParseError
	if !errors.As(err, &pe) || pe.Line != 3 || pe.File != bad {
		t.Fatalf("Load(bad) error = %#v, want line 3 of %s", err, bad)
	}
	if want := bad + ":3: unknown option -z: not one of -a -d -e -g -i -m -n -r -s -t -u"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	_, err = catalog.Load(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestLoadExample(t *testing.T) {
	needUserGroup(t)
	c, err := catalog.Load("testdata/exectab.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"backup", "findname", "list", "number", "report", "sleep", "test", "test2", "test3", "test4"}
	if got := c.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	test, _ := c.Lookup("test")
	argv, err := test.Argv([]string{"out.txt", "x y"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/var/scripts/myscript.php", "-o=out.txt", "x y"}; !slices.Equal(argv, want) {
		t.Errorf("test argv = %q, want %q", argv, want)
	}
	if test.User != "nobody" || test.Group != "nogroup" || test.Concurrency != 5 || test.MaxQueue != 0 {
		t.Errorf("test = %+v", test)
	}
	report, _ := c.Lookup("report")
	if report.Dir != "/srv/shared files" {
		t.Errorf("report Dir = %q", report.Dir)
	}
	argv, err = report.Argv([]string{"$(id)"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`%s\n`, "it's $(id)", "plain text"}; !slices.Equal(argv, want) {
		t.Errorf("report argv = %q, want %q", argv, want)
	}
	for _, name := range []string{"test3", "test4"} {
		if s, _ := c.Lookup(name); !s.NoProcess || s.Path != "" {
			t.Errorf("%s: NoProcess %v, Path %q; want a script that starts no process", name, s.NoProcess, s.Path)
		}
	}
	if s, _ := c.Lookup("backup"); !s.AllowStdin || !s.RemoveDone || s.MaxQueue != 10 || len(s.Env) != 2 {
		t.Errorf("backup = %+v", s)
	}
	if s, _ := c.Lookup("sleep"); s.Timeout != time.Hour || s.Concurrency != 2 {
		t.Errorf("sleep = %+v", s)
	}
	findname, _ := c.Lookup("findname")
	if _, err := findname.Argv([]string{"-delete"}); !errors.Is(err, catalog.ErrOptionArgument) {
		t.Errorf("findname with -delete: %v, want %v", err, catalog.ErrOptionArgument)
	}
	list, _ := c.Lookup("list")
	argv, err = list.Argv([]string{"-rf"})
	if want := []string{"-l", "--", "-rf"}; err != nil || !slices.Equal(argv, want) || list.Timeout != 30*time.Second {
		t.Errorf("list: argv %q, %v, Timeout %v; want %q, 30s", argv, err, list.Timeout, want)
	}
	number, _ := c.Lookup("number")
	argv, err = number.Argv([]string{"-12"})
	if want := []string{`%d\n`, "-12"}; err != nil || !slices.Equal(argv, want) || !number.AllowOptionArgs {
		t.Errorf("number: argv %q, %v, AllowOptionArgs %v; want %q, true", argv, err, number.AllowOptionArgs, want)
	}
}

func TestCatalogLookup(t *testing.T) {
	c := mustParse(t, "zeta /bin/true\nalpha /bin/echo @@1\nmid\n")
	if got, want := c.Names(), []string{"alpha", "mid", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if c.Len() != 3 {
		t.Errorf("Len() = %d, want 3", c.Len())
	}
	if _, ok := c.Lookup("nope"); ok {
		t.Error("Lookup of an unknown name succeeded")
	}
	if _, ok := c.Lookup("ALPHA"); ok {
		t.Error("Lookup is case-insensitive")
	}

	// What Lookup and Names hand out cannot change the catalogue.
	s, _ := c.Lookup("alpha")
	s.Params[0] = "changed"
	s.Path = "/bin/rm"
	c.Names()[0] = "changed"
	again, _ := c.Lookup("alpha")
	if again.Path != "/bin/echo" || again.Params[0] != "@@1" || c.Names()[0] != "alpha" {
		t.Errorf("changing a looked-up script changed the catalogue: %+v, %q", again, c.Names())
	}

	var none *catalog.Catalog
	if none.Len() != 0 || none.Names() != nil {
		t.Error("a nil catalogue is not empty")
	}
	if _, ok := none.Lookup("a"); ok {
		t.Error("Lookup in a nil catalogue succeeded")
	}
}

func TestArgvInjectionStaysLiteral(t *testing.T) {
	s := mustScript(t, `a /bin/echo @@1 --file=@@2 "pre @@3 post" @@1@@2`)
	attacks := [][]string{
		{"; rm -rf /", "$(id)", "`id`"},
		{"a b c", "x\ny", "'\"\\"},
		{"@@2", "@@1", "@@3"},        // an argument is not scanned for placeholders
		{"x --help", "-rf", "|| -x"}, // -rf goes after --file=: see TestArgvOptionArguments
		{"", "", ""},
		{"*", "~root", "$HOME"},
	}
	for _, args := range attacks {
		argv, err := s.Argv(args)
		if err != nil {
			t.Fatalf("Argv(%q): %v", args, err)
		}
		want := []string{args[0], "--file=" + args[1], "pre " + args[2] + " post", args[0] + args[1]}
		if !slices.Equal(argv, want) {
			t.Errorf("Argv(%q) = %q, want %q", args, argv, want)
		}
	}
}

func TestArgvCounts(t *testing.T) {
	tests := []struct {
		name string
		line string
		args []string
		want []string
		kind error
	}{
		{"no params, no args", "a /bin/true", nil, []string{}, nil},
		{"no params, one arg", "a /bin/true", []string{"x"}, nil, catalog.ErrTooManyArguments},
		{"exact", "a /bin/echo @@1 @@2", []string{"1", "2"}, []string{"1", "2"}, nil},
		{"missing one", "a /bin/echo @@1 @@2", []string{"1"}, nil, catalog.ErrMissingArgument},
		{"missing all", "a /bin/echo @@1", nil, nil, catalog.ErrMissingArgument},
		{"one extra", "a /bin/echo @@1", []string{"1", "2"}, nil, catalog.ErrTooManyArguments},
		{"gap: @@2 alone needs two", "a /bin/echo @@2", []string{"unused", "2"}, []string{"2"}, nil},
		{"gap: one is missing", "a /bin/echo @@2", []string{"1"}, nil, catalog.ErrMissingArgument},
		{"repeated placeholder", "a /bin/echo @@1 @@1", []string{"x"}, []string{"x", "x"}, nil},
		{"empty argument is present", "a /bin/echo @@1", []string{""}, []string{""}, nil},
		{"NUL in an argument", "a /bin/echo @@1", []string{"a\x00b"}, nil, catalog.ErrInvalidArgument},
		{"invalid UTF-8", "a /bin/echo @@1", []string{"a\xffb"}, nil, catalog.ErrInvalidArgument},
		{"truncated UTF-8", "a /bin/echo @@1", []string{"caf\xc3"}, nil, catalog.ErrInvalidArgument},
		{"surrogate half", "a /bin/echo @@1", []string{"\xed\xa0\x80"}, nil, catalog.ErrInvalidArgument},
		{"invalid UTF-8 in an unused argument", "a /bin/echo @@2", []string{"\xff", "x"}, nil, catalog.ErrInvalidArgument},
		{"invalid UTF-8 on -n", "-n a @@1", []string{"\xff"}, nil, catalog.ErrInvalidArgument},
		{"valid UTF-8 kept as it is", "a /bin/echo @@1", []string{"café \u2028 \U0001F600 \ufffd"}, []string{"café \u2028 \U0001F600 \ufffd"}, nil},
		{"highest placeholder", "a /bin/echo @@256", make([]string, 256), []string{""}, nil},
		{"two-digit placeholder", "a /bin/echo @@10:@@1", []string{"1", "", "", "", "", "", "", "", "", "10"}, []string{"10:1"}, nil},
		{"-n params for monitors", "-n a @@1 @@2", []string{"x", "y"}, []string{"x", "y"}, nil},
		{"-n missing", "-n a @@1 @@2", []string{"x"}, nil, catalog.ErrMissingArgument},
		{"name alone with an arg", "a", []string{"x"}, nil, catalog.ErrTooManyArguments},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustScript(t, tt.line)
			argv, err := s.Argv(tt.args)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("Argv(%q) = %q, %v; want %v", tt.args, argv, err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("Argv(%q): %v", tt.args, err)
			}
			if !slices.Equal(argv, tt.want) || argv == nil {
				t.Errorf("Argv(%q) = %#v, want %#v", tt.args, argv, tt.want)
			}
		})
	}
}

func TestNumArgs(t *testing.T) {
	for line, want := range map[string]int{
		"a /bin/true":                0,
		"a":                          0,
		"a /bin/echo @@1":            1,
		"a /bin/echo @@3 @@1":        3,
		"a /bin/echo x=@@12,y=@@2":   12,
		"-n a @@4":                   4,
		"a /bin/echo @@ @@x user@@1": 1,
	} {
		if got := mustScript(t, line).NumArgs(); got != want {
			t.Errorf("%q: NumArgs() = %d, want %d", line, got, want)
		}
	}
}

func TestEnviron(t *testing.T) {
	s := mustScript(t, "-e=LANG=C -e=NEW=1 a /bin/true")
	base := []string{"PATH=/bin", "LANG=en_US.UTF-8", "HOME=/root"}
	got := s.Environ(base)
	want := []string{"PATH=/bin", "HOME=/root", "LANG=C", "NEW=1"}
	if !slices.Equal(got, want) {
		t.Errorf("Environ = %q, want %q", got, want)
	}
	if base[1] != "LANG=en_US.UTF-8" {
		t.Error("Environ changed its base")
	}
	plain := mustScript(t, "a /bin/true")
	if got := plain.Environ(base); !slices.Equal(got, base) {
		t.Errorf("Environ without -e = %q, want the base", got)
	}
}

func TestStringRoundTrip(t *testing.T) {
	lines := []string{
		"a /bin/true",
		"test3",
		"-n test4 @@1 @@2",
		"-n -s=2 x",
		`-d="/srv/my dir" -e='A=b c' -e=B= -i -m=3 -r -s=4 -u=0 -g=0 b /bin/echo "" 'it'\''s' "tab	in" \\ -x=@@1`,
		`c /bin/printf '%s\n' #x "a\"b"`,
		"-a f find /srv @@1",
		"-a -t=1d12h -s=2 f find /srv -- @@1",
		"-t=1ns a /bin/true",
		"-t=1.5s a /bin/true",
		"-t=90m a /bin/true",
		"-t=1h0m0.25s a /bin/true",
		"-t=36525d a /bin/true",
	}
	for _, line := range lines {
		s := mustScript(t, line)
		back := mustScript(t, s.String())
		if !reflect.DeepEqual(s, back) {
			t.Errorf("%q\nprinted as %q\nreads back as %#v\nwant %#v", line, s.String(), back, s)
		}
	}
	if got := mustScript(t, "-s=1 -m=0 -n a").String(); got != "a" {
		t.Errorf("defaults printed: %q, want %q", got, "a")
	}
	for line, want := range map[string]string{
		"-t=90m a /bin/true":               "-t=1h30m a /bin/true",
		"-t=1d a /bin/true":                "-t=24h a /bin/true",
		"-t=10m0s a /bin/true":             "-t=10m a /bin/true",
		"-t=1500ms a /bin/true":            "-t=1.5s a /bin/true",
		"-t=1h0m0.5s a /bin/true":          "-t=1h0m0.5s a /bin/true",
		"-t=1m -a -s=2 x /bin/echo -- @@1": "-a -s=2 -t=1m x /bin/echo -- @@1",
	} {
		if got := mustScript(t, line).String(); got != want {
			t.Errorf("%q printed as %q, want %q", line, got, want)
		}
	}
}

func TestArgvOptionArguments(t *testing.T) {
	tests := []struct {
		name string
		line string
		args []string
		want []string // nil: refused with ErrOptionArgument
		msg  string   // part of the refusal's message
	}{
		{"option injection refused", "f find /srv @@1", []string{"-delete"}, nil, `argument 1 ("-delete") begins with '-'`},
		{"long option refused", "f /bin/ls @@1", []string{"--version"}, nil, `argument 1 ("--version")`},
		{"a lone dash refused", "f /bin/cat @@1", []string{"-"}, nil, `argument 1 ("-")`},
		{"a -- from the run is no end of options", "f /bin/rm @@1 @@2", []string{"--", "-rf"}, nil, `argument 1 ("--")`},
		{"second argument refused", "f /bin/echo @@1 @@2", []string{"x", "-n"}, nil, `argument 2 ("-n")`},
		{"first element that begins with '-' is blamed", "f /bin/echo @@2 @@1", []string{"-a", "-b"}, nil, `argument 2 ("-b")`},
		{"empty first argument, second begins with '-'", "f /bin/echo @@1@@2", []string{"", "-x"}, nil, `argument 2 ("-x")`},
		{"placeholders in reverse order", "f /bin/echo @@2@@1", []string{"-x", ""}, nil, `argument 1 ("-x")`},
		{"empty argument before the param's own '-'", "f /bin/echo @@1-x", []string{""}, nil,
			`argument 1 is empty, so param "@@1-x" gives "-x", which begins with '-'`},
		{"empty arguments before the param's own '-'", "f /bin/echo @@2@@1-x", []string{"", ""}, nil,
			`argument 2 is empty, so param "@@2@@1-x" gives "-x"`},
		{"-- after the param does not help", "f /bin/echo @@1 --", []string{"-x"}, nil, `argument 1 ("-x")`},
		{"-- between two uses of one argument", "f /bin/echo @@1 -- @@1", []string{"-x"}, nil, `argument 1 ("-x")`},
		{"--- is not --", "f /bin/echo --- @@1", []string{"-x"}, nil, `argument 1`},
		{"'-- ' is not --", "f /bin/echo '-- ' @@1", []string{"-x"}, nil, `argument 1`},
		{"--=x is not --", "f /bin/echo --=x @@1", []string{"-x"}, nil, `argument 1`},
		{"a -- made by a placeholder is not --", "f /bin/echo -@@1 @@2", []string{"-", "-x"}, nil, `argument 2 ("-x")`},
		{"a huge argument is cut", "f /bin/echo @@1", []string{"-" + strings.Repeat("x", 1<<20)}, nil,
			`argument 1 ("-` + strings.Repeat("x", 39) + `"...) begins`},
		{"an argument is cut between characters", "f /bin/echo @@1", []string{"-" + strings.Repeat("é", 30)}, nil,
			`argument 1 ("-` + strings.Repeat("é", 19) + `"...) begins`},
		{"an argument of 40 bytes is not cut", "f /bin/echo @@1", []string{"-" + strings.Repeat("x", 39)}, nil,
			`argument 1 ("-` + strings.Repeat("x", 39) + `") begins`},
		{"the way out names the param", "f /bin/echo 'pre @@1'", []string{"x"}, []string{"pre x"}, ""},

		{"-a allows it", "-a f find /srv @@1", []string{"-delete"}, []string{"/srv", "-delete"}, ""},
		{"-a allows an empty argument before '-'", "-a f /bin/echo @@1-x", []string{""}, []string{"-x"}, ""},
		{"-- before allows it", "f /bin/rm -f -- @@1", []string{"-rf"}, []string{"-f", "--", "-rf"}, ""},
		{"-- allows every later param", "f /bin/echo -- @@1 x @@2", []string{"-a", "--b"}, []string{"--", "-a", "x", "--b"}, ""},
		{"-- allows only later params", "f /bin/echo @@2 -- @@1", []string{"-x", "y"}, []string{"y", "--", "-x"}, ""},
		{"-- written quoted is --", `f /bin/echo "--" @@1`, []string{"-x"}, []string{"--", "-x"}, ""},
		{"the param's own '-'", "f /bin/x -o=@@1", []string{"-x"}, []string{"-o=-x"}, ""},
		{"the param's own '--'", "f /bin/x --out=@@1", []string{"--"}, []string{"--out=--"}, ""},
		{"the param's own '-' before the argument", "f /bin/x -@@1", []string{"-x"}, []string{"--x"}, ""},
		{"the param's own '-' before an empty argument", "f /bin/x -@@1", []string{""}, []string{"-"}, ""},
		{"'-' inside the element", "f /bin/x x@@1 @@1-", []string{"-y"}, nil, `argument 1 ("-y")`},
		{"'-' after the start", "f /bin/x x@@1 @@1-", []string{"y-"}, []string{"xy-", "y--"}, ""},
		{"a param without a placeholder is untouched", "f /bin/x -v @@1 -", []string{"y"}, []string{"-v", "y", "-"}, ""},
		{"a blank first", "f /bin/x @@1", []string{" -x"}, []string{" -x"}, ""},
		{"a Unicode hyphen is no '-'", "f /bin/x @@1", []string{"\u2010x"}, []string{"\u2010x"}, ""},
		{"an empty argument", "f /bin/x @@1", []string{""}, []string{""}, ""},
		{"-n: monitors get anything", "-n f @@1 @@2", []string{"-x", "--"}, []string{"-x", "--"}, ""},
		{"a name alone has no params", "f", nil, []string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustScript(t, tt.line)
			argv, err := s.Argv(tt.args)
			if tt.want != nil {
				if err != nil || !slices.Equal(argv, tt.want) {
					t.Errorf("Argv(%q) = %q, %v; want %q", tt.args, argv, err, tt.want)
				}
				return
			}
			if !errors.Is(err, catalog.ErrOptionArgument) {
				t.Fatalf("Argv(%q) = %q, %v; want %v", tt.args, argv, err, catalog.ErrOptionArgument)
			}
			if argv != nil {
				t.Errorf("Argv(%q) returned %q with its error", tt.args, argv)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Argv(%q) error\n%s\ndoes not hold\n%s", tt.args, err, tt.msg)
			}
			if len(err.Error()) > 400 {
				t.Errorf("Argv(%q) error is %d bytes long", tt.args, len(err.Error()))
			}
		})
	}
}

func TestArgvOptionArgumentMessage(t *testing.T) {
	s := mustScript(t, "f find /srv @@1")
	_, err := s.Argv([]string{"-delete"})
	want := `option-like argument: argument 1 ("-delete") begins with '-': it would reach find as an option; ` +
		`the exectab line can allow that with -a, or put -- before @@1`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}

	s = mustScript(t, "f /usr/bin/x 'say @@1' @@2@@1")
	_, err = s.Argv([]string{"", "-x"})
	want = `option-like argument: argument 2 ("-x") begins with '-': it would reach /usr/bin/x as an option; ` +
		`the exectab line can allow that with -a, or put -- before @@2@@1`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}

	long := "@@1" + strings.Repeat("y", 100)
	s = mustScript(t, "f /bin/x "+long)
	_, err = s.Argv([]string{"-x"})
	if want := "put -- before @@1" + strings.Repeat("y", 37) + "..."; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error = %v, want it to end with %s", err, want)
	}
}

func TestArgvInvalidUTF8Message(t *testing.T) {
	s := mustScript(t, "a /bin/echo @@1 @@2")
	_, err := s.Argv([]string{"ok", "caf\xc3"})
	if want := "invalid argument: argument 2 is not valid UTF-8"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

// loadWithin runs Load(path) and fails the test if it does not return
// within a few seconds.
func loadWithin(t *testing.T, path string) (*catalog.Catalog, error) {
	t.Helper()
	type result struct {
		c   *catalog.Catalog
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := catalog.Load(path)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-time.After(5 * time.Second):
		// Release a Load blocked opening a FIFO, so the test ends.
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatalf("Load(%s) is still blocked after 5s", path)
		return nil, nil
	}
}

func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string
	}{
		{fifo, fifo + ": not a regular file (a FIFO)"},
		{link, link + ": not a regular file (a FIFO)"},
		{sub, sub + ": not a regular file (a directory)"},
		{"/dev/null", "/dev/null: not a regular file (a character device)"},
	}
	for _, tt := range tests {
		if _, err := os.Lstat(tt.path); err != nil {
			t.Logf("skipping %s: %v", tt.path, err)
			continue
		}
		c, err := loadWithin(t, tt.path)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Load(%s) = %v, %v; want error %s", tt.path, c, err, tt.want)
		}
		if c != nil {
			t.Errorf("Load(%s) returned a catalogue with its error", tt.path)
		}
	}
}

func TestLoadRegularThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "exectab")
	if err := os.WriteFile(file, []byte("-t=1h a /bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	c, err := loadWithin(t, link)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := c.Lookup("a"); !ok || s.Timeout != time.Hour {
		t.Errorf("Lookup(a) = %+v, %v", s, ok)
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name                    string
		old, new                string // "nil": a nil catalogue
		added, removed, changed []string
	}{
		{"both nil", "nil", "nil", nil, nil, nil},
		{"from nil", "nil", "b /bin/true\na /bin/true", []string{"a", "b"}, nil, nil},
		{"to nil", "b /bin/true\na /bin/true", "nil", nil, []string{"a", "b"}, nil},
		{"nil and empty", "nil", "# nothing", nil, nil, nil},
		{"same", "a /bin/true\nb", "a /bin/true\nb", nil, nil, nil},
		{"moved lines are no change", "a /bin/true\nb /bin/echo @@1", "\n# moved\nb /bin/echo @@1\n\na /bin/true", nil, nil, nil},
		{"same script written differently", "-s=1 -m=0 a /bin/echo 'x y'", `a /bin/echo x\ y`, nil, nil, nil},
		{"everything at once",
			"keep /bin/true\ngone1 /bin/true\nedit /bin/echo 1\ngone2\nedit2 /bin/true",
			"zadd /bin/true\nedit /bin/echo 2\nkeep /bin/true\nadd\n-t=1s edit2 /bin/true",
			[]string{"add", "zadd"}, []string{"gone1", "gone2"}, []string{"edit", "edit2"}},
	}
	parse := func(text string) *catalog.Catalog {
		if text == "nil" {
			return nil
		}
		return mustParse(t, text)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed, changed := catalog.Diff(parse(tt.old), parse(tt.new))
			if !slices.Equal(added, tt.added) || !slices.Equal(removed, tt.removed) || !slices.Equal(changed, tt.changed) {
				t.Errorf("Diff = %q, %q, %q; want %q, %q, %q", added, removed, changed, tt.added, tt.removed, tt.changed)
			}
		})
	}
}

// TestDiffEveryField changes each field of Script in turn, and fails when a
// field is added to Script without a case here.
func TestDiffEveryField(t *testing.T) {
	changes := map[string][2]string{
		"Path":            {"s /bin/true", "s /bin/false"},
		"Params":          {"s /bin/echo a", "s /bin/echo b"},
		"Dir":             {"-d=/ s /bin/true", "-d=/tmp s /bin/true"},
		"Env":             {"-e=A=1 -e=B=2 s /bin/true", "-e=B=2 -e=A=1 s /bin/true"},
		"User":            {"-g=0 s /bin/true", "-u=0 -g=0 s /bin/true"},
		"Group":           {"-g=0 s /bin/true", "-g=1 s /bin/true"},
		"AllowOptionArgs": {"s /bin/true", "-a s /bin/true"},
		"AllowStdin":      {"s /bin/true", "-i s /bin/true"},
		"MaxQueue":        {"s /bin/true", "-m=2 s /bin/true"},
		"NoProcess":       {"-n s /bin/true", "s /bin/true"},
		"RemoveDone":      {"s /bin/true", "-r s /bin/true"},
		"Concurrency":     {"s /bin/true", "-s=2 s /bin/true"},
		"Timeout":         {"-t=1h s /bin/true", "-t=61m s /bin/true"},
		"Limits":          {"--memory=64M s /bin/true", "--memory=64M --pids=10 --cpu=0.5 s /bin/true"},
		"AllowTTY":        {"s /bin/true", "--tty s /bin/true"},
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[catalog.Script]()) {
		if f.Name == "Name" || f.Name == "Line" {
			continue
		}
		pair, ok := changes[f.Name]
		if !ok {
			t.Errorf("Script.%s: no case in TestDiffEveryField", f.Name)
			continue
		}
		old, new := mustParse(t, pair[0]), mustParse(t, pair[1])
		o, _ := old.Lookup("s")
		n, _ := new.Lookup("s")
		if reflect.DeepEqual(reflect.ValueOf(*o).FieldByIndex(f.Index).Interface(), reflect.ValueOf(*n).FieldByIndex(f.Index).Interface()) {
			t.Errorf("Script.%s: %q and %q do not differ in it", f.Name, pair[0], pair[1])
		}
		added, removed, changed := catalog.Diff(old, new)
		if len(added) != 0 || len(removed) != 0 || !slices.Equal(changed, []string{"s"}) {
			t.Errorf("Script.%s: Diff(%q, %q) = %q, %q, %q; want s changed", f.Name, pair[0], pair[1], added, removed, changed)
		}
	}
}

func TestLimitOptions(t *testing.T) {
	c := mustParse(t, "--memory=256MiB --pids=64 --cpu=1.5 s /bin/true\n--cpu=250m t /bin/true")
	s, _ := c.Lookup("s")
	if want := (cgroup.Limits{Memory: 256 << 20, Pids: 64, CPU: 1500}); s.Limits != want {
		t.Fatalf("limits %+v, want %+v", s.Limits, want)
	}
	if got := s.String(); !strings.Contains(got, "--memory=256MiB --pids=64 --cpu=1.5 s") {
		t.Fatalf("String() = %q", got)
	}
	if tt, _ := c.Lookup("t"); tt.Limits.CPU != 250 {
		t.Fatalf("--cpu=250m read as %d", tt.Limits.CPU)
	}
	for line, want := range map[string]string{
		"--memory s /bin/true":          "--memory needs a value",
		"--memory=lots s /bin/true":     "not a size",
		"--memory=1M s /bin/true":       "below the least a run needs",
		"--pids=1 s /bin/true":          "below the least a run needs",
		"--pids=-3 s /bin/true":         "not a whole number",
		"--cpu=0.001 s /bin/true":       "below the least",
		"--cpu=NaN s /bin/true":         "not a CPU amount",
		"--pids=4 --pids=5 s /bin/true": "given twice",
		"--swap=1G s /bin/true":         "unknown option --swap",
		"-n --pids=4 s":                 "no effect",
	} {
		_, err := catalog.Parse(strings.NewReader(line))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one saying %q", line, err, want)
		}
	}
}

func TestTTYOption(t *testing.T) {
	c := mustParse(t, "--tty -i s /bin/sh\nt /bin/sh")
	s, _ := c.Lookup("s")
	if !s.AllowTTY {
		t.Fatal("--tty did not allow a terminal")
	}
	if got := s.String(); got != "-i --tty s /bin/sh" {
		t.Fatalf("String() = %q", got)
	}
	if again := mustParse(t, s.String()); !slices.Equal(again.Names(), []string{"s"}) {
		t.Fatalf("String() does not parse back: %v", again.Names())
	} else if s2, _ := again.Lookup("s"); !s2.AllowTTY {
		t.Fatal("String() lost --tty")
	}
	if tt, _ := c.Lookup("t"); tt.AllowTTY {
		t.Fatal("a line without --tty allows a terminal")
	}
	for line, want := range map[string]string{
		"--tty=1 s /bin/true":     "--tty takes no value",
		"--tty= s /bin/true":      "--tty takes no value",
		"--tty --tty s /bin/true": "given twice",
		"-n --tty s":              "no effect",
		"--tty s":                 "no effect",
		"--ttys s /bin/true":      "unknown option --ttys: not one of --memory=SIZE --pids=N --cpu=CORES --tty",
	} {
		_, err := catalog.Parse(strings.NewReader(line))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one saying %q", line, err, want)
		}
		if err != nil && !errors.Is(err, catalog.ErrBadOption) && !errors.Is(err, catalog.ErrUnknownOption) {
			t.Errorf("%q: error %v is of neither option kind", line, err)
		}
	}
}
