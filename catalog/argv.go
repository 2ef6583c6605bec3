package catalog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rexec/rexec/cgroup"
)

// Error kinds of a run's arguments; webapi maps them to 400.
var (
	// ErrMissingArgument: a param uses @@N and the run gave fewer than N
	// arguments. An argument is never replaced by an empty string.
	ErrMissingArgument = errors.New("missing argument")
	// ErrTooManyArguments: the run gave more arguments than the script uses
	// (Script.NumArgs). The seed is silent on this; an argument that would
	// be dropped without a word is refused instead.
	ErrTooManyArguments = errors.New("too many arguments")
	// ErrInvalidArgument: an argument holds a NUL byte, which no argv
	// element can carry, or is not valid UTF-8.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrOptionArgument: an argument would make an argv element begin with
	// '-' where its param does not, so that the program would take it as an
	// option (find DIR @@1 run with -delete). The script's -a allows it, and
	// so does a param "--" before the one the argument goes into.
	ErrOptionArgument = errors.New("option-like argument")
)

// Argv returns the arguments that follow the executable (argv[1:], the shape
// of child.Spec.Args; Path is argv[0]), with each @@N in Params replaced by
// args[N-1]. The replacement is literal and never rescanned, and no shell is
// involved: an argument such as "; rm -rf /" or "$(id)" stays inside the one
// element its param makes. The run must give exactly NumArgs arguments: fewer
// is ErrMissingArgument, more ErrTooManyArguments. An argument with a NUL
// byte or that is not valid UTF-8 is ErrInvalidArgument: bytes are never
// replaced.
//
// An argument that would make an element begin with '-' when its param does
// not (@@1 given "-delete") is ErrOptionArgument, unless the script has
// AllowOptionArgs or a param that is exactly "--" comes earlier: the program
// must not take a run's data for an option. A '-' that the param itself
// begins with (-o=@@1) is the exectab's and always allowed. For a NoProcess
// script, which starts no program, the rule does not apply: the result is
// what monitors are given.
func (s *Script) Argv(args []string) ([]string, error) {
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("%w: argument %d holds a NUL byte", ErrInvalidArgument, i+1)
		}
		if !utf8.ValidString(a) {
			return nil, fmt.Errorf("%w: argument %d is not valid UTF-8", ErrInvalidArgument, i+1)
		}
	}
	need := s.NumArgs()
	if len(args) > need {
		return nil, fmt.Errorf("%w: script %q takes %d, the run gave %d", ErrTooManyArguments, s.Name, need, len(args))
	}
	if len(args) < need {
		return nil, fmt.Errorf("%w: script %q uses @@%d, the run gave %d argument(s)", ErrMissingArgument, s.Name, need, len(args))
	}
	argv := make([]string, len(s.Params))
	optionsEnded := s.NoProcess || s.AllowOptionArgs
	var b strings.Builder
	for i, p := range s.Params {
		b.Reset()
		first, firstArg := 0, 0 // the argument of the element's first byte, the first one substituted
		_, err := scanParam(p, func(lit string, n int) {
			b.WriteString(lit)
			if n > 0 {
				if firstArg == 0 {
					firstArg = n
				}
				if b.Len() == 0 && args[n-1] != "" {
					first = n
				}
				b.WriteString(args[n-1])
			}
		})
		if err != nil {
			return nil, fmt.Errorf("script %q: param %q: %w", s.Name, p, err)
		}
		argv[i] = b.String()
		if !optionsEnded && strings.HasPrefix(argv[i], "-") && !strings.HasPrefix(p, "-") {
			return nil, s.optionError(p, argv[i], args, first, firstArg)
		}
		if p == "--" {
			optionsEnded = true
		}
	}
	return argv, nil
}

// optionError is the ErrOptionArgument for param p, whose element elem
// begins with a '-' that came from argument first (1-based) or, when first
// is 0, from the param's own text after empty arguments, the first of which
// is firstArg.
func (s *Script) optionError(p, elem string, args []string, first, firstArg int) error {
	var why string
	if first > 0 {
		why = fmt.Sprintf("argument %d (%s) begins with '-'", first, quoteShort(args[first-1]))
	} else {
		why = fmt.Sprintf("argument %d is empty, so param %s gives %s, which begins with '-'",
			firstArg, quoteShort(p), quoteShort(elem))
	}
	return fmt.Errorf("%w: %s: it would reach %s as an option; the exectab line can allow that with -a, or put -- before %s",
		ErrOptionArgument, why, s.Path, short(p))
}

// maxShown is the most bytes of an argument or a param that an error
// message shows, so that a huge argument does not make a huge message.
const maxShown = 40

// shorten returns s, or its first at most maxShown bytes, cut between UTF-8
// characters, and whether it was cut.
func shorten(s string) (string, bool) {
	if len(s) <= maxShown {
		return s, false
	}
	n := maxShown
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// quoteShort is s quoted with %q, shortened, with "..." after the closing
// quote when it was.
func quoteShort(s string) string {
	s, cut := shorten(s)
	if cut {
		return fmt.Sprintf("%q...", s)
	}
	return fmt.Sprintf("%q", s)
}

// short is s shortened, with "..." when it was.
func short(s string) string {
	s, cut := shorten(s)
	if cut {
		return s + "..."
	}
	return s
}

// NumArgs is the number of arguments a run must give: the highest N of the
// @@N placeholders in Params, or 0.
func (s *Script) NumArgs() int {
	most := 0
	for _, p := range s.Params {
		n, _ := scanParam(p, nil)
		most = max(most, n)
	}
	return most
}

// Environ returns base with Env added, a variable of Env replacing one of
// the same name in base: the complete environment of child.Spec.Env.
func (s *Script) Environ(base []string) []string {
	if len(s.Env) == 0 {
		return base
	}
	env := make([]string, 0, len(base)+len(s.Env))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !s.setsEnv(name) {
			env = append(env, kv)
		}
	}
	return append(env, s.Env...)
}

func (s *Script) setsEnv(name string) bool {
	for _, kv := range s.Env {
		if n, _, _ := strings.Cut(kv, "="); n == name {
			return true
		}
	}
	return false
}

// String is the script as one exectab line, which Parse reads back as the
// same script. It holds the -e values, which may be secrets: do not log it.
func (s *Script) String() string {
	var toks []string
	if s.AllowOptionArgs {
		toks = append(toks, "-a")
	}
	if s.Dir != "" {
		toks = append(toks, "-d="+s.Dir)
	}
	for _, kv := range s.Env {
		toks = append(toks, "-e="+kv)
	}
	if s.Group != "" {
		toks = append(toks, "-g="+s.Group)
	}
	if s.AllowStdin {
		toks = append(toks, "-i")
	}
	if s.MaxQueue > 0 {
		toks = append(toks, "-m="+strconv.Itoa(s.MaxQueue))
	}
	if s.NoProcess && len(s.Params) > 0 {
		toks = append(toks, "-n")
	}
	if s.RemoveDone {
		toks = append(toks, "-r")
	}
	if s.Concurrency > 1 {
		toks = append(toks, "-s="+strconv.Itoa(s.Concurrency))
	}
	if s.Timeout > 0 {
		toks = append(toks, "-t="+formatTimeout(s.Timeout))
	}
	if s.User != "" {
		toks = append(toks, "-u="+s.User)
	}
	if l := s.Limits; l.Memory != 0 {
		toks = append(toks, "--memory="+cgroup.FormatSize(l.Memory))
	}
	if l := s.Limits; l.Pids != 0 {
		toks = append(toks, "--pids="+strconv.FormatInt(l.Pids, 10))
	}
	if l := s.Limits; l.CPU != 0 {
		toks = append(toks, "--cpu="+cgroup.FormatCPU(l.CPU))
	}
	if s.AllowTTY {
		toks = append(toks, "--tty")
	}
	toks = append(toks, s.Name)
	if !s.NoProcess {
		toks = append(toks, s.Path)
	}
	toks = append(toks, s.Params...)
	for i, t := range toks {
		toks[i] = quote(t)
	}
	return strings.Join(toks, " ")
}

// formatTimeout writes d as -t reads it: time.Duration.String without a
// trailing 0s or 0m (1h30m0s is 1h30m, 2h0m0s is 2h).
func formatTimeout(d time.Duration) string {
	t := d.String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}

// scanParam walks p, calling emit (when not nil) with each run of literal
// text and the N of the @@N that follows it (0 after the last run). It
// returns the highest N, or an error for @@0, @@01 or N above MaxArgs.
func scanParam(p string, emit func(lit string, n int)) (int, error) {
	most, start := 0, 0
	for i := 0; i+2 < len(p); {
		if p[i] != '@' || p[i+1] != '@' || !isDigit(p[i+2]) {
			i++
			continue
		}
		j := i + 2
		for j < len(p) && isDigit(p[j]) {
			j++
		}
		digits := p[i+2 : j]
		switch {
		case digits[0] == '0' && len(digits) == 1:
			return 0, errors.New("@@0: arguments are numbered from @@1")
		case digits[0] == '0':
			return 0, fmt.Errorf("@@%s: write @@N without leading zeros", digits)
		case len(digits) > 3:
			return 0, fmt.Errorf("@@%s: at most @@%d", digits, MaxArgs)
		}
		n, _ := strconv.Atoi(digits)
		if n > MaxArgs {
			return 0, fmt.Errorf("@@%s: at most @@%d", digits, MaxArgs)
		}
		if emit != nil {
			emit(p[start:i], n)
		}
		most = max(most, n)
		i, start = j, j
	}
	if emit != nil {
		emit(p[start:], 0)
	}
	return most, nil
}

// hasPlaceholder reports whether s holds @@ followed by a digit.
func hasPlaceholder(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '@' && s[i+1] == '@' && isDigit(s[i+2]) {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
