package catalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rexec/rexec/cgroup"
)

// Limits of the format.
const (
	// MaxLineLen is the longest line, in bytes, its line end included.
	MaxLineLen = 64 << 10
	// MaxNameLen is the longest script name, in bytes.
	MaxNameLen = 128
	// MaxArgs is the highest N of an @@N placeholder.
	MaxArgs = 256
	// MaxTimeout is the longest -t: 100 years of 365.25 days.
	MaxTimeout = 36525 * 24 * time.Hour
)

// Error kinds of a malformed exectab. A *ParseError unwraps to one of them.
var (
	// ErrSyntax: a line that cannot be split into tokens (an unterminated
	// quote, a control character, invalid UTF-8, too long) or has no name.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownOption: an option that is not one of
	// -a -d -e -g -i -m -n -r -s -t -u.
	ErrUnknownOption = errors.New("unknown option")
	// ErrBadOption: an option with a missing, extra or invalid value, given
	// twice, or meaningless on a script that starts no process.
	ErrBadOption = errors.New("invalid option")
	// ErrBadName: a script name outside the allowed characters or length.
	ErrBadName = errors.New("invalid script name")
	// ErrDuplicateName: a second script with a name already defined.
	ErrDuplicateName = errors.New("duplicate script name")
	// ErrBadExecutable: an executable that is a relative path, looks like an
	// option or holds an @@ placeholder.
	ErrBadExecutable = errors.New("invalid executable")
	// ErrBadParam: a malformed @@N placeholder in a param.
	ErrBadParam = errors.New("invalid parameter")
	// ErrUnknownUser: -u names a user this machine does not have.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUnknownGroup: -g names a group this machine does not have.
	ErrUnknownGroup = errors.New("unknown group")
)

// ParseError is a malformed exectab line.
type ParseError struct {
	File string // the file's path when it came from Load; "" from Parse
	Line int    // 1-based line number
	Msg  string // what is wrong with the line
	// Err is the kind (one of the Err* values) or wraps it; only a failure
	// of the user or group database itself (not an unknown name) has none.
	Err error
}

func (e *ParseError) Error() string {
	file := e.File
	if file == "" {
		file = "exectab"
	}
	return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Script is one line of the exectab. Package launch and package detached
// apply it (see the package doc). Lookup hands out copies: changing one
// changes nothing in its Catalog.
type Script struct {
	Name string // unique in its Catalog
	Line int    // the exectab line that defined it

	// Path is the executable: absolute, or a bare name looked up in PATH.
	// It is "" exactly when NoProcess is set.
	Path string
	// Params are the arguments after the executable as written, with their
	// @@N placeholders; Argv fills them in. For a NoProcess script they are
	// what monitors are given.
	Params []string
	// Dir is the start directory (absolute), "" for the server's.
	Dir string
	// Env are VAR=VALUE pairs added to the server's environment (Environ),
	// in the order of the file. Values may be secrets: never log them.
	Env []string
	// User and Group are -u and -g as written; Credential resolves them.
	User, Group string

	// AllowOptionArgs (-a): a run's arguments may begin with '-' where they
	// start a param. Without it Argv refuses such an argument
	// (ErrOptionArgument) unless a param "--" comes before.
	AllowOptionArgs bool
	AllowStdin      bool // -i: a run may pass stdin
	// MaxQueue (-m) is the most runs of this script queued and running
	// together; 0 is unlimited.
	MaxQueue int
	// NoProcess (-n, or a line with no executable): a run starts nothing
	// and only notifies monitors.
	NoProcess  bool
	RemoveDone bool // -r: successful and cancelled runs leave no history
	// Concurrency (-s) is how many runs may execute at once, at least 1.
	Concurrency int
	// Timeout (-t) is the longest a run of this script may take; a run
	// asking for more is capped to it; the run's process group is
	// terminated when it expires. 0 is none; else at most MaxTimeout.
	Timeout time.Duration
	// Limits (--memory, --pids, --cpu) hold each run of this script in its
	// cgroup; a request may ask for lower ones, never for higher.
	Limits cgroup.Limits
	// AllowTTY (--tty): a run may ask for a terminal (a pseudo-terminal as
	// its stdin, stdout and stderr). Without it such a run is refused.
	AllowTTY bool
}

// Catalog is a parsed exectab: an immutable set of scripts, safe for
// concurrent use. The methods of a nil *Catalog behave as for an empty one.
type Catalog struct {
	scripts map[string]*Script
	names   []string // sorted
}

// Lookup returns a copy of the script called name.
func (c *Catalog) Lookup(name string) (*Script, bool) {
	s, ok := c.lookup(name)
	if !ok {
		return nil, false
	}
	return s.clone(), true
}

// Names returns the script names, sorted.
func (c *Catalog) Names() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.names)
}

// Len is the number of scripts.
func (c *Catalog) Len() int {
	if c == nil {
		return 0
	}
	return len(c.names)
}

func (s *Script) clone() *Script {
	c := *s
	c.Params = slices.Clone(s.Params)
	c.Env = slices.Clone(s.Env)
	return &c
}

// Load parses the exectab file at path. A *ParseError from it names the file.
// Anything but a regular file (a FIFO, a directory, a device) is refused
// without reading from it, and without blocking on it: opening a FIFO that
// has no writer would otherwise wait for one.
func Load(path string) (*Catalog, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Parse(f)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.File = path
	}
	return c, err
}

// openRegular opens path for reading, non-blocking so that a FIFO cannot
// hold it up, and returns it in blocking mode if it is a regular file.
func openRegular(path string) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fileKind(st.Mode))
	}
	// A regular file never blocks; the flag only guarded the open.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fileKind names the file type in a stat mode, for an error message.
func fileKind(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO:
		return "a FIFO"
	case syscall.S_IFDIR:
		return "a directory"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFBLK:
		return "a block device"
	case syscall.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("file type %#o", mode&syscall.S_IFMT)
}

// Parse reads an exectab. Any malformed line, duplicate name, or -u/-g that
// does not resolve on this machine makes it fail with a *ParseError; an
// error reading r is returned wrapped, and is not a *ParseError.
func Parse(r io.Reader) (*Catalog, error) {
	c := &Catalog{scripts: make(map[string]*Script)}
	br := bufio.NewReader(r)
	var raw []byte
	for lineNo := 1; ; lineNo++ {
		var err error
		raw, err = readLine(br, raw[:0])
		if errors.Is(err, errLineTooLong) {
			return nil, &ParseError{Line: lineNo, Err: ErrSyntax,
				Msg: fmt.Sprintf("line longer than %d bytes", MaxLineLen)}
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read exectab: %w", err)
		}
		if len(raw) > 0 {
			line := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
			if lineNo == 1 {
				line = bytes.TrimPrefix(line, []byte("\ufeff"))
			}
			s, perr := parseLine(lineNo, string(line))
			if perr != nil {
				return nil, perr
			}
			if s != nil {
				if prev, dup := c.scripts[s.Name]; dup {
					return nil, &ParseError{Line: lineNo, Err: ErrDuplicateName,
						Msg: fmt.Sprintf("script %q is already defined on line %d", s.Name, prev.Line)}
				}
				c.scripts[s.Name] = s
				c.names = append(c.names, s.Name)
			}
		}
		if err == io.EOF {
			break
		}
	}
	slices.Sort(c.names)
	return c, nil
}

var errLineTooLong = errors.New("line too long")

// readLine appends the next line of br, its '\n' included, to buf. A line
// longer than MaxLineLen is errLineTooLong; the last line may end at io.EOF.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineLen {
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// parseLine parses one line (without its line end). It returns nil, nil for
// a blank line or a comment.
func parseLine(lineNo int, line string) (*Script, *ParseError) {
	p := &lineParser{lineNo: lineNo}
	if err := p.checkText(line); err != nil {
		return nil, err
	}
	if trimmed := strings.TrimLeft(line, " \t"); trimmed == "" || trimmed[0] == '#' {
		return nil, nil
	}
	toks, err := tokenize(line)
	if err != nil {
		return nil, p.fail(ErrSyntax, "%s", err)
	}
	p.s = &Script{Line: lineNo, Concurrency: 1}
	p.seen = make(map[byte]bool)
	p.seenLong = make(map[string]bool)
	p.envNames = make(map[string]bool)
	rest, perr := p.options(toks)
	if perr != nil {
		return nil, perr
	}
	if rest, perr = p.name(rest); perr != nil {
		return nil, perr
	}
	if perr = p.command(rest); perr != nil {
		return nil, perr
	}
	if perr = p.checkNoProcess(); perr != nil {
		return nil, perr
	}
	if _, err := p.s.Credential(); err != nil {
		return nil, p.fail(err, "%s", err)
	}
	return p.s, nil
}

// lineParser is the state of parseLine: the line's number, for its errors,
// and what the line has said so far.
type lineParser struct {
	lineNo   int
	s        *Script
	seen     map[byte]bool   // the options given, by letter
	seenLong map[string]bool // the long options given, by name
	envNames map[string]bool // the variables -e has set
}

// fail is a ParseError of kind on the line.
func (p *lineParser) fail(kind error, format string, a ...any) *ParseError {
	return &ParseError{Line: p.lineNo, Msg: fmt.Sprintf(format, a...), Err: kind}
}

// checkText refuses invalid UTF-8 and control characters other than tab,
// anywhere in the line, comments included.
func (p *lineParser) checkText(line string) *ParseError {
	if !utf8.ValidString(line) {
		return p.fail(ErrSyntax, "not valid UTF-8")
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return p.fail(ErrSyntax, "control character 0x%02x", c)
		}
	}
	return nil
}

// options parses the options at the start of toks, every token that begins
// with '-', and returns the tokens after them.
func (p *lineParser) options(toks []string) ([]string, *ParseError) {
	i := 0
	for ; i < len(toks) && strings.HasPrefix(toks[i], "-"); i++ {
		if err := p.option(toks[i]); err != nil {
			return nil, err
		}
	}
	return toks[i:], nil
}

// option parses one option: -x, or -x=value, or a long one.
func (p *lineParser) option(tok string) *ParseError {
	if strings.HasPrefix(tok, "--") {
		return p.longOption(tok)
	}
	opt, val, hasVal := strings.Cut(tok, "=")
	if len(opt) != 2 || !strings.ContainsRune(optionLetters, rune(opt[1])) {
		return p.fail(ErrUnknownOption, "unknown option %s: not one of %s", opt, optionList)
	}
	o := opt[1]
	if p.seen[o] && o != 'e' {
		return p.fail(ErrBadOption, "%s given twice", opt)
	}
	p.seen[o] = true
	switch o {
	case 'a', 'i', 'n', 'r':
		if hasVal {
			return p.fail(ErrBadOption, "%s takes no value, not %q", opt, val)
		}
		p.s.setFlag(o)
		return nil
	}
	if !hasVal || val == "" {
		return p.fail(ErrBadOption, "%s needs a value: write %s=%s", opt, opt, optMeta[o])
	}
	switch o {
	case 'd':
		return p.dirOption(val)
	case 'e':
		return p.envOption(val)
	case 'g':
		p.s.Group = val
	case 'u':
		p.s.User = val
	case 'm', 's':
		return p.countOption(opt, val)
	case 't':
		return p.timeoutOption(val)
	}
	return nil
}

// longOptions are the long options, --name=VALUE, and what their value is;
// a flag, --name alone, has none ("").
var longOptions = []struct{ name, meta string }{
	{"memory", "SIZE"}, {"pids", "N"}, {"cpu", "CORES"}, {"tty", ""},
}

// longOptionList is longOptions as the documentation writes them.
func longOptionList() string {
	var b []string
	for _, o := range longOptions {
		if o.meta == "" {
			b = append(b, "--"+o.name)
			continue
		}
		b = append(b, "--"+o.name+"="+o.meta)
	}
	return strings.Join(b, " ")
}

// longOption parses one long option, --name=VALUE.
func (p *lineParser) longOption(tok string) *ParseError {
	opt, val, hasVal := strings.Cut(tok, "=")
	name := opt[2:]
	i := slices.IndexFunc(longOptions, func(o struct{ name, meta string }) bool { return o.name == name })
	if i < 0 {
		return p.fail(ErrUnknownOption, "unknown option %s: not one of %s", opt, longOptionList())
	}
	if p.seenLong[name] {
		return p.fail(ErrBadOption, "%s given twice", opt)
	}
	p.seenLong[name] = true
	if longOptions[i].meta == "" { // a flag
		if hasVal {
			return p.fail(ErrBadOption, "%s takes no value, not %q", opt, val)
		}
		switch name {
		case "tty":
			p.s.AllowTTY = true
		}
		return nil
	}
	if !hasVal || val == "" {
		return p.fail(ErrBadOption, "%s needs a value: write %s=%s", opt, opt, longOptions[i].meta)
	}
	var err error
	switch name {
	case "memory":
		p.s.Limits.Memory, err = cgroup.ParseSize(val)
	case "pids":
		var n uint64
		n, err = strconv.ParseUint(val, 10, 31)
		if err != nil {
			err = fmt.Errorf("%q is not a whole number below 2^31", val)
		}
		p.s.Limits.Pids = int64(n)
	case "cpu":
		p.s.Limits.CPU, err = cgroup.ParseCPU(val)
	}
	if err == nil {
		err = p.s.Limits.Check()
	}
	if err != nil {
		return p.fail(ErrBadOption, "%s: %s", opt, err)
	}
	return nil
}

// setFlag sets what a flag option, one without a value, turns on.
func (s *Script) setFlag(o byte) {
	switch o {
	case 'a':
		s.AllowOptionArgs = true
	case 'i':
		s.AllowStdin = true
	case 'n':
		s.NoProcess = true
	case 'r':
		s.RemoveDone = true
	}
}

// dirOption parses -d=DIR.
func (p *lineParser) dirOption(val string) *ParseError {
	if hasPlaceholder(val) {
		return p.fail(ErrBadOption, "-d=%s: @@N placeholders are replaced only in params", val)
	}
	if !filepath.IsAbs(val) {
		return p.fail(ErrBadOption, "-d=%s: the start directory must be an absolute path", val)
	}
	p.s.Dir = val
	return nil
}

// envOption parses one -e=VAR=VALUE. Its messages name the variable, never
// its value: it may be a secret.
func (p *lineParser) envOption(val string) *ParseError {
	name, value, ok := strings.Cut(val, "=")
	if !ok {
		return p.fail(ErrBadOption, "-e needs VAR=VALUE, not a bare name")
	}
	if !validEnvName(name) {
		return p.fail(ErrBadOption, "-e: %q is not a variable name (letters, digits and '_', not starting with a digit)", name)
	}
	if hasPlaceholder(value) {
		return p.fail(ErrBadOption, "-e=%s=...: @@N placeholders are replaced only in params", name)
	}
	if p.envNames[name] {
		return p.fail(ErrBadOption, "-e: %s set twice", name)
	}
	p.envNames[name] = true
	p.s.Env = append(p.s.Env, val)
	return nil
}

// countOption parses -m=N or -s=N.
func (p *lineParser) countOption(opt, val string) *ParseError {
	n, err := strconv.ParseUint(val, 10, 31)
	if err != nil {
		return p.fail(ErrBadOption, "%s=%s: not a whole number below 2^31", opt, val)
	}
	if opt == "-m" {
		p.s.MaxQueue = int(n)
		return nil
	}
	if n < 1 {
		return p.fail(ErrBadOption, "-s=%s: at least one run must be allowed at a time", val)
	}
	p.s.Concurrency = int(n)
	return nil
}

// timeoutOption parses -t=DURATION.
func (p *lineParser) timeoutOption(val string) *ParseError {
	d, err := ParseDuration(val)
	if err != nil || d == 0 {
		return p.fail(ErrBadOption, "-t=%s: %s", val, errBadTimeout)
	}
	p.s.Timeout = d
	return nil
}

// name takes the script name, the first token after the options, and
// returns the tokens after it.
func (p *lineParser) name(toks []string) ([]string, *ParseError) {
	if len(toks) == 0 {
		return nil, p.fail(ErrSyntax, "missing script name after the options")
	}
	p.s.Name = toks[0]
	if msg := checkName(p.s.Name); msg != "" {
		return nil, p.fail(ErrBadName, "script name %q %s", p.s.Name, msg)
	}
	return toks[1:], nil
}

// command takes what follows the name: the executable, unless the script
// starts no process (-n, or nothing after the name), then the params with
// their @@N placeholders.
func (p *lineParser) command(rest []string) *ParseError {
	s := p.s
	if !s.NoProcess {
		if len(rest) == 0 {
			s.NoProcess = true // a name alone only notifies monitors, as in the seed
		} else {
			s.Path, rest = rest[0], rest[1:]
			if msg := checkExecutable(s.Path); msg != "" {
				return p.fail(ErrBadExecutable, "executable %q %s", s.Path, msg)
			}
		}
	}
	if len(rest) > 0 {
		s.Params = rest
	}
	for _, param := range s.Params {
		if _, err := scanParam(param, nil); err != nil {
			return p.fail(ErrBadParam, "param %q: %s", param, err)
		}
	}
	return nil
}

// checkNoProcess refuses, on a script that starts no process, the options
// that could have no effect.
func (p *lineParser) checkNoProcess() *ParseError {
	if !p.s.NoProcess {
		return nil
	}
	for _, o := range []byte("adegitu") {
		if p.seen[o] {
			return p.fail(ErrBadOption, "-%c has no effect on script %q, which starts no process", o, p.s.Name)
		}
	}
	for name := range p.seenLong {
		return p.fail(ErrBadOption, "--%s has no effect on script %q, which starts no process", name, p.s.Name)
	}
	return nil
}

// The options, in the order of the documentation.
const (
	optionLetters = "adegimnrstu"
	optionList    = "-a -d -e -g -i -m -n -r -s -t -u"
)

var optMeta = map[byte]string{'d': "DIR", 'e': "VAR=VALUE", 'g': "GROUP", 'm': "N", 's': "N", 't': "DURATION", 'u': "USER"}

// errBadTimeout says what -t takes.
var errBadTimeout = fmt.Errorf("not a duration such as 30s, 10m, 2h, 1d or 1d12h (positive, at most %dd)",
	MaxTimeout/(24*time.Hour))

// ParseDuration parses a duration as the exectab's -t and rexec's --retain
// write it: a Go duration (30s, 10m, 2h45m), optionally after a whole number
// of days (1d, 1d12h); no sign, at most MaxTimeout. "0" is 0.
func ParseDuration(v string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration such as 30s, 10m, 2h, 1d or 1d12h (at most %dd)", v, MaxTimeout/(24*time.Hour))
	if v == "" || strings.ContainsAny(v, "+-") {
		return 0, bad
	}
	var total time.Duration
	if i := strings.IndexByte(v, 'd'); i >= 0 {
		if i == 0 || i > 5 || strings.Trim(v[:i], "0123456789") != "" {
			return 0, bad
		}
		n, _ := strconv.Atoi(v[:i])
		total = time.Duration(n) * 24 * time.Hour
		v = v[i+1:]
	}
	if v != "" {
		rest, err := time.ParseDuration(v)
		if err != nil || rest > MaxTimeout {
			return 0, bad
		}
		total += rest
	}
	if total > MaxTimeout {
		return 0, bad
	}
	return total, nil
}

// checkName says what is wrong with a script name, or "".
func checkName(n string) string {
	if n == "" {
		return "is empty"
	}
	if len(n) > MaxNameLen {
		return fmt.Sprintf("is longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(n); i++ {
		if !nameByte(n[i]) {
			return "may hold only letters, digits, '.', '_' and '-'"
		}
	}
	if n[0] == '.' || n[0] == '-' {
		return "must start with a letter, digit or '_'"
	}
	return ""
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkExecutable says what is wrong with an executable, or "".
func checkExecutable(p string) string {
	switch {
	case p == "":
		return "is empty"
	case p[0] == '-':
		return "looks like an option: options come before the script name"
	case hasPlaceholder(p):
		return "holds a placeholder: the executable cannot come from a run's arguments"
	case strings.Contains(p, "/") && !filepath.IsAbs(p):
		return "is a relative path: give an absolute path or a bare name looked up in PATH"
	}
	return ""
}

func validEnvName(n string) bool {
	if n == "" || n[0] >= '0' && n[0] <= '9' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Diff compares two catalogues by script name, for reporting what a reload
// changed: added are the names only new has, removed those only old has,
// changed those in both whose scripts differ in anything but Line (the line
// a script is on is not a change). Each list is sorted. A nil Catalog is
// empty.
func Diff(old, new *Catalog) (added, removed, changed []string) {
	for _, name := range old.Names() {
		n, ok := new.lookup(name)
		switch {
		case !ok:
			removed = append(removed, name)
		case !old.scripts[name].same(n):
			changed = append(changed, name)
		}
	}
	for _, name := range new.Names() {
		if _, ok := old.lookup(name); !ok {
			added = append(added, name)
		}
	}
	return added, removed, changed
}

// lookup is Lookup without the copy.
func (c *Catalog) lookup(name string) (*Script, bool) {
	if c == nil {
		return nil, false
	}
	s, ok := c.scripts[name]
	return s, ok
}

// same reports whether s and t are the same script, wherever they are in
// their files: String writes every field but Line, and Parse reads it back.
func (s *Script) same(t *Script) bool { return s.String() == t.String() }
