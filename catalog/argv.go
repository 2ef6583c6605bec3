package catalog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// element can carry.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Argv returns the arguments that follow the executable (argv[1:], the shape
// of child.Spec.Args; Path is argv[0]), with each @@N in Params replaced by
// args[N-1]. The replacement is literal and never rescanned, and no shell is
// involved: an argument such as "; rm -rf /" or "$(id)" stays inside the one
// element its param makes. The run must give exactly NumArgs arguments: fewer
// is ErrMissingArgument, more ErrTooManyArguments. For a NoProcess script
// the result is what monitors are given.
func (s *Script) Argv(args []string) ([]string, error) {
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("%w: argument %d holds a NUL byte", ErrInvalidArgument, i+1)
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
	var b strings.Builder
	for i, p := range s.Params {
		b.Reset()
		_, err := scanParam(p, func(lit string, n int) {
			b.WriteString(lit)
			if n > 0 {
				b.WriteString(args[n-1])
			}
		})
		if err != nil {
			return nil, fmt.Errorf("script %q: param %q: %w", s.Name, p, err)
		}
		argv[i] = b.String()
	}
	return argv, nil
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
	if s.User != "" {
		toks = append(toks, "-u="+s.User)
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
