package catalog_test

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rexec/rexec/catalog"
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
		{"-n -r -m -s together", "-n -r -m=3 -s=2 notify",
			catalog.Script{Name: "notify", NoProcess: true, RemoveDone: true, MaxQueue: 3, Concurrency: 2}},
		{"every process option", "-d=/tmp -e=A=1 -g=0 -i -m=4 -r -s=3 -u=0 -e=B=2 all /bin/sh -c 'echo @@1'",
			catalog.Script{Name: "all", Path: "/bin/sh", Params: []string{"-c", "echo @@1"}, Dir: "/tmp",
				Env: []string{"A=1", "B=2"}, User: "0", Group: "0", AllowStdin: true, MaxQueue: 4,
				RemoveDone: true, Concurrency: 3}},
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
	if err == nil || err.Error() != "exectab:12: unknown option -x" {
		t.Errorf("error = %v, want exectab:12: unknown option -x", err)
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
	if want := bad + ":3: unknown option -z"; err.Error() != want {
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
	want := []string{"backup", "report", "sleep", "test", "test2", "test3", "test4"}
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
		{"@@2", "@@1", "@@3"}, // an argument is not scanned for placeholders
		{"--help", "-rf", "|| true"},
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
}
