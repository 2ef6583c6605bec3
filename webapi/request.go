package webapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rexec/rexec/broker"
	"github.com/rexec/rexec/catalog"
	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/child"
	"github.com/rexec/rexec/launch"
	"github.com/rexec/rexec/store"
)

// processRequest is the JSON body of POST /process.
type processRequest struct {
	Alias   string            `json:"alias"`
	Cmd     string            `json:"cmd"`
	Script  string            `json:"script"`
	Args    []string          `json:"args"`
	Cwd     string            `json:"cwd"`
	Envs    map[string]string `json:"envs"`
	Stdin   *string           `json:"stdin"`
	Stderr  string            `json:"stderr"`
	Timeout string            `json:"timeout"`
	// Memory, Pids and CPU are the limits the run asks for (its cgroup's):
	// a size ("256MiB" or bytes), a count, cores ("0.5", "250m" or 0.5).
	Memory json.RawMessage `json:"memory"`
	Pids   json.RawMessage `json:"pids"`
	CPU    json.RawMessage `json:"cpu"`
	// TTY runs the command on a terminal of Rows by Cols (0: 24 by 80),
	// its stderr merged (launch.CheckTTY).
	TTY  bool `json:"tty"`
	Rows int  `json:"rows"`
	Cols int  `json:"cols"`

	timeout time.Duration // Timeout, parsed
	limits  cgroup.Limits // Memory, Pids and CPU, parsed
}

// badRequest is an error in what the client sent: a 400 with its text.
// field, when set, is the top-level member of the body it is about.
type badRequest struct{ msg, field string }

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, a ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, a...)}
}

// fieldErrorf is a badRequest about the body's member field.
func fieldErrorf(field, format string, a ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, a...), field: field}
}

const maxAliasLen = 128

// attachAlias is the one alias a run may not have: /process/attach is the
// path of interactive runs, never a run's (DELETE /process/{alias}).
const attachAlias = "attach"

// decodeProcessRequest parses and validates a request body. Every error it
// returns is a *badRequest whose text says what is wrong.
func decodeProcessRequest(body []byte) (*processRequest, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequestf("empty body: expected a JSON object")
	}
	var req processRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	return &req, nil
}

func (r *processRequest) validate() error {
	if err := validAlias(r.Alias); err != nil {
		return err
	}
	switch {
	case r.Cmd == "" && r.Script == "":
		return badRequestf("field \"cmd\" (or \"script\") is required")
	case r.Cmd != "" && r.Script != "":
		return badRequestf("fields \"cmd\" and \"script\" exclude each other: run a command or a script")
	case r.Script != "" && r.Cwd != "":
		return badRequestf("field \"cwd\" cannot be used with a script: its exectab line sets the directory")
	case r.Script != "" && len(r.Envs) > 0:
		return badRequestf("field \"envs\" cannot be used with a script: its exectab line sets the environment")
	}
	if strings.ContainsRune(r.Cmd, 0) {
		return badRequestf("field \"cmd\" contains a NUL byte")
	}
	for i, a := range r.Args {
		if strings.ContainsRune(a, 0) {
			return badRequestf("args[%d] contains a NUL byte", i)
		}
	}
	if strings.ContainsRune(r.Cwd, 0) {
		return badRequestf("field \"cwd\" contains a NUL byte")
	}
	for k, v := range r.Envs {
		switch {
		case k == "":
			return badRequestf("envs: empty variable name")
		case strings.ContainsAny(k, "=\x00"):
			return badRequestf("envs: variable name %q contains '=' or a NUL byte", k)
		case strings.ContainsRune(v, 0):
			return badRequestf("envs: the value of %q contains a NUL byte", k)
		}
	}
	switch r.Stderr {
	case "", "discard", "merge":
	default:
		return badRequestf("field \"stderr\" must be \"discard\" or \"merge\", not %q", r.Stderr)
	}
	d, err := parseTimeout(r.Timeout)
	r.timeout = d
	if err != nil {
		return err
	}
	r.limits, err = parseLimits(r.Memory, r.Pids, r.CPU)
	return err
}

// parseLimits reads a request's limit fields: "memory" a size as a string
// ("256MiB") or a number of bytes, "pids" a whole number, "cpu" cores as a
// string ("0.5", "250m") or a number. Absent or null is none.
func parseLimits(memory, pids, cpu json.RawMessage) (cgroup.Limits, error) {
	var l cgroup.Limits
	field := func(name string, raw json.RawMessage, parse func(string) (int64, error), numbers bool) (int64, error) {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" {
			return 0, nil
		}
		var text string
		if raw[0] == '"' {
			if err := json.Unmarshal(raw, &text); err != nil {
				return 0, fieldErrorf(name, "field %q: %v", name, err)
			}
		} else if numbers && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
			text = string(raw)
		} else {
			return 0, fieldErrorf(name, "field %q must be a string or a number", name)
		}
		n, err := parse(text)
		if err != nil {
			return 0, fieldErrorf(name, "field %q: %v", name, err)
		}
		return n, nil
	}
	var err error
	if l.Memory, err = field("memory", memory, cgroup.ParseSize, true); err != nil {
		return l, err
	}
	if l.Pids, err = field("pids", pids, func(s string) (int64, error) {
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number below 2^31", s)
		}
		return int64(n), nil
	}, true); err != nil {
		return l, err
	}
	if l.CPU, err = field("cpu", cpu, cgroup.ParseCPU, true); err != nil {
		return l, err
	}
	if err := l.Check(); err != nil {
		return l, fieldErrorf("", "%v", err)
	}
	return l, nil
}

// parseTimeout reads a request's "timeout" field: a positive Go duration
// such as "30s"; "" is none.
func parseTimeout(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, badRequestf("field \"timeout\" must be a positive duration such as \"30s\", not %q", v)
	}
	return d, nil
}

// unixTimeField reads a request's UNIX time field: 0 is none (the zero
// time), and a time the history cannot keep is refused.
func unixTimeField(name string, v int64) (time.Time, error) {
	switch {
	case v == 0:
		return time.Time{}, nil
	case v < 0:
		return time.Time{}, fieldErrorf(name, "field %q must be a UNIX time", name)
	case !store.StorableTime(time.Unix(v, 0)):
		return time.Time{}, fieldErrorf(name, "field %q is after 2262-04-11, the latest time the server can keep", name)
	}
	return time.Unix(v, 0), nil
}

func validAlias(a string) error {
	if a == "" {
		return badRequestf("field \"alias\" is required")
	}
	if len(a) > maxAliasLen {
		return badRequestf("field \"alias\" is longer than %d characters", maxAliasLen)
	}
	if a == attachAlias {
		return badRequestf("alias %q is reserved: /process/%s is the path of interactive runs", a, attachAlias)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return badRequestf("field \"alias\" may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// spec turns a valid request into what child.Start needs. base is the
// server's environment, already cleared of REXEC_* variables.
func (r *processRequest) spec(base []string, ndjson bool) child.Spec {
	s := child.Spec{
		Path:    r.Cmd,
		Args:    r.Args,
		Dir:     r.Cwd,
		Env:     mergeEnv(base, r.Envs),
		Timeout: r.timeout,
		TTY:     r.TTY,
		Rows:    r.Rows,
		Cols:    r.Cols,
	}
	if r.Stdin != nil {
		s.Stdin = strings.NewReader(*r.Stdin)
	}
	switch {
	case r.TTY && r.Stderr != "discard":
		// The terminal is stdout and stderr at once: merged, whatever the
		// encoding. An explicit "discard" is refused (launch.CheckTTY).
		s.Stderr = child.StderrMerge
	case r.Stderr == "merge":
		s.Stderr = child.StderrMerge
		if ndjson {
			s.Stderr = child.StderrSeparate // lines are labelled by stream
		}
	}
	return s
}

// mergeEnv returns base with envs added, overriding variables of the same
// name. base is returned as is when there is nothing to add.
func mergeEnv(base []string, envs map[string]string) []string {
	if len(envs) == 0 {
		return base
	}
	env := make([]string, 0, len(base)+len(envs))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, overridden := envs[name]; !overridden {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(envs))
	for k := range envs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+envs[k])
	}
	return env
}

// ServerEnv is environ without any REXEC_* variable: what every child
// inherits. The server's token and settings never reach a child.
func ServerEnv(environ []string) []string {
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "REXEC_") {
			env = append(env, kv)
		}
	}
	return env
}

var errScriptsOnly = errors.New(`ad-hoc commands are disabled on this server (--scripts-only): ` +
	`run a script with {"alias":...,"script":"name","args":[...]}`)

// runSpec is what a request starts: an ad-hoc command as it asks, or a
// script of the exectab as package launch makes it, with the stdin, stderr
// and terminal the request chose.
func (s *Server) runSpec(req *processRequest, ndjson, liveStdin bool) (child.Spec, broker.Limit, error) {
	spec, limit, err := s.baseSpec(req, ndjson, liveStdin)
	if err == nil {
		err = launch.CheckTTY(spec)
	}
	return spec, limit, err
}

// baseSpec is runSpec before its terminal is checked.
func (s *Server) baseSpec(req *processRequest, ndjson, liveStdin bool) (child.Spec, broker.Limit, error) {
	if req.Script == "" {
		if s.cfg.ScriptsOnly {
			return child.Spec{}, broker.Limit{}, errScriptsOnly
		}
		spec := req.spec(s.cfg.Env, ndjson)
		limits, err := s.cfg.Limits.ForCommand(req.limits)
		if err != nil {
			return child.Spec{}, broker.Limit{}, err
		}
		spec.Limits = limits
		return spec, broker.Limit{}, nil
	}
	sc, err := launch.Lookup(s.scripts(), req.Script)
	if err != nil {
		return child.Spec{}, broker.Limit{}, err
	}
	lr := launch.Request{Args: req.Args, LiveStdin: liveStdin, Timeout: req.timeout, Limits: req.limits,
		TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}
	if req.Stdin != nil {
		lr.Stdin = int64(len(*req.Stdin))
	}
	spec, err := launch.Spec(sc, lr, s.cfg.Limits, s.cfg.Env)
	if err != nil {
		return child.Spec{}, broker.Limit{}, err
	}
	asked := req.spec(s.cfg.Env, ndjson)
	spec.Stderr = asked.Stderr
	if req.Stdin != nil && *req.Stdin != "" {
		spec.Stdin = strings.NewReader(*req.Stdin)
	}
	return spec, launch.Limit(sc), nil
}

// scripts is the catalogue in force (empty without --scripts).
func (s *Server) scripts() *catalog.Catalog {
	if s.cfg.Scripts == nil {
		return nil
	}
	return s.cfg.Scripts()
}
