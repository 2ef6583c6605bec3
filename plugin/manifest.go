package plugin

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"
)

// A plugin's manifest is YAML, as Serverboards writes it:
//
//	id: serverboards.core.actions
//	name: Core actions
//	version: 0.1.0
//	description: The actions every install has.
//	components:
//	  - name: Core actions.
//	    type: cmd
//	    id: cmd
//	    timeout: 1000s
//	    strategy: one_for_one
//	    perms: settings.view[serverboards.core.actions/settings] event.emit
//	    command: serverboards-core.py
//	    user_perms: plugin
//	    env: {LANG: C.UTF-8}
//
// The top level takes the keys id (required), name, version, description,
// author, url and components; a component of type cmd takes the keys id,
// type, name, command, strategy, timeout, perms, user_perms and env, where
// env is rexec's own. Any other key there is an error (a misspelt key must
// not silently give a default). Components of other types are kept with
// their id, name and type, and may hold any key.
//
// A key given with no value (null) counts as absent, but for id, type and
// command, which need one, and user_perms, where absent and empty differ:
// an empty user_perms opens the command to every caller, so it must be
// written as [] or "". Aliases (*name) are refused, merge keys (<<) with
// them.

// Limits of the manifest.
const (
	// MaxManifestSize is the largest manifest, in bytes.
	MaxManifestSize = 1 << 20
	// MaxIDLen is the longest plugin or component id, in bytes.
	MaxIDLen = 128
	// MaxTimeout is the longest timeout of a command: 10 years of 365 days.
	MaxTimeout = 10 * 365 * 24 * time.Hour
)

// manifestNames are the file names of a manifest in a plugin's folder; a
// folder has exactly one of them.
var manifestNames = []string{"manifest.yaml", "manifest.yml"}

// ManifestError is a problem of a plugin's manifest, or of its folder.
type ManifestError struct {
	// File is the manifest's path, or the folder's when the problem is the
	// folder's (no manifest, not a folder).
	File string
	// Line is the 1-based line of the YAML node at fault; 0 when the
	// problem is the whole file's or the folder's.
	Line int
	Msg  string // what is wrong
}

func (e *ManifestError) Error() string {
	file := e.File
	if file == "" {
		file = "manifest"
	}
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", file, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
}

// Set is the plugins of a --plugins folder, read by Load: immutable, and
// safe for concurrent use. The methods of a nil *Set behave as for an empty
// one.
type Set struct {
	plugins []Plugin             // sorted by ID
	comps   map[string]Component // by full id
}

// Plugins returns the plugins, sorted by id. They are copies: changing them
// changes nothing in the Set.
func (s *Set) Plugins() []Plugin {
	if s == nil {
		return nil
	}
	ps := make([]Plugin, len(s.plugins))
	for i, p := range s.plugins {
		ps[i] = p.clone()
	}
	return ps
}

// Component returns a copy of the component whose full id (Component.FullID)
// is fullID: "<plugin id>/<component id>".
func (s *Set) Component(fullID string) (Component, bool) {
	if s == nil {
		return Component{}, false
	}
	c, ok := s.comps[fullID]
	if !ok {
		return Component{}, false
	}
	return c.clone(), true
}

func (p Plugin) clone() Plugin {
	p.Components = slices.Clone(p.Components)
	for i := range p.Components {
		p.Components[i] = p.Components[i].clone()
	}
	return p
}

// clone copies the slices of c; slices.Clone keeps nil nil and empty empty,
// which UserPerms needs.
func (c Component) clone() Component {
	c.Perms = slices.Clone(c.Perms)
	c.UserPerms = slices.Clone(c.UserPerms)
	c.Env = slices.Clone(c.Env)
	return c
}

// Load reads the plugins of the folder dir: each subfolder whose name does
// not start with "." is a plugin (LoadPlugin); a symbolic link to a folder
// is one too. Plain files and hidden entries are skipped; an empty folder
// gives an empty Set. Plugin ids must be unique across the folder.
//
// Every problem of every plugin is a *ManifestError, and Load returns them
// all, joined (errors.Join) and ordered by file then line, with a nil Set.
// A dir that cannot be read is an error of its own, not a *ManifestError.
func Load(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins folder: %w", err)
	}
	var (
		errs    []*ManifestError
		plugins []Plugin
		first   = map[string]string{} // "file:line" of each id, for duplicates
	)
	for _, e := range entries { // sorted by name
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			if e.Type()&fs.ModeSymlink == 0 {
				continue // a plain file (or a device, a FIFO...)
			}
			st, err := os.Stat(path)
			if err != nil {
				errs = append(errs, &ManifestError{File: path, Msg: fmt.Sprintf("a symbolic link that does not lead to a folder: %v", unwrapPath(err))})
				continue
			}
			if !st.IsDir() {
				continue
			}
		}
		p, idLine, perrs := loadPlugin(path)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		file := filepath.Join(path, filepath.Base(p.Manifest)) // as errors name it
		if f, ok := first[p.ID]; ok {
			errs = append(errs, &ManifestError{File: file, Line: idLine,
				Msg: fmt.Sprintf("duplicate plugin id %q: %s has it too", p.ID, f)})
			continue
		}
		first[p.ID] = fmt.Sprintf("%s:%d", file, idLine)
		plugins = append(plugins, p)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	slices.SortFunc(plugins, func(a, b Plugin) int { return strings.Compare(a.ID, b.ID) })
	s := &Set{plugins: plugins, comps: map[string]Component{}}
	for _, p := range plugins {
		for _, c := range p.Components {
			s.comps[c.FullID()] = c
		}
	}
	return s, nil
}

// LoadPlugin reads the plugin in the folder dir: its manifest is
// manifest.yaml or manifest.yml (not both), at most MaxManifestSize bytes.
// Plugin.Dir is dir made absolute and without symbolic links; commands are
// resolved inside it, and must be executable regular files there.
//
// Every problem is a *ManifestError, which names the folder or the manifest
// by the path dir as given; LoadPlugin returns them all, ordered by line:
// the error itself when there is one, else joined (errors.Join).
func LoadPlugin(dir string) (Plugin, error) {
	p, _, errs := loadPlugin(dir)
	if len(errs) > 0 {
		return Plugin{}, joinErrors(errs)
	}
	return p, nil
}

// loadPlugin is LoadPlugin, which also returns the line of the plugin's id.
// Its errors name the folder and the manifest by the path dir, as given.
func loadPlugin(dir string) (Plugin, int, []*ManifestError) {
	dir = filepath.Clean(dir)
	folderErr := func(format string, a ...any) (Plugin, int, []*ManifestError) {
		return Plugin{}, 0, []*ManifestError{{File: dir, Msg: fmt.Sprintf(format, a...)}}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return folderErr("%v", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return folderErr("cannot read the plugin's folder: %v", unwrapPath(err))
	}
	st, err := os.Stat(real)
	if err != nil {
		return folderErr("cannot read the plugin's folder: %v", unwrapPath(err))
	}
	if !st.IsDir() {
		return folderErr("not a folder: a plugin is a folder with a manifest")
	}
	var found []string
	for _, name := range manifestNames {
		if _, err := os.Lstat(filepath.Join(real, name)); err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return folderErr("%v", unwrapPath(err))
		}
	}
	switch len(found) {
	case 0:
		return folderErr("no manifest: a plugin's folder needs a %s", strings.Join(manifestNames, " or a "))
	case 2:
		return folderErr("two manifests, %s: keep one", strings.Join(found, " and "))
	}
	file := filepath.Join(dir, found[0])
	data, err := readManifest(filepath.Join(real, found[0]))
	if err != nil {
		return Plugin{}, 0, []*ManifestError{{File: file, Msg: err.Error()}}
	}
	p, idLine, errs := parseManifest(file, real, data)
	p.Manifest = filepath.Join(real, found[0])
	return p, idLine, errs
}

// readManifest reads the file at path, refusing anything but a regular file
// without blocking on it (a FIFO with no writer would block the open), and
// a file larger than MaxManifestSize without reading more than that.
func readManifest(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("the manifest is not a regular file: it is %s", fileKind(st.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("the manifest is larger than %d bytes", MaxManifestSize)
	}
	return data, nil
}

// fileKind names the type of a file that is not regular, for an error
// message.
func fileKind(mode fs.FileMode) string {
	switch mode.Type() {
	case fs.ModeDir:
		return "a folder"
	case fs.ModeNamedPipe:
		return "a FIFO"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeDevice:
		return "a block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	case fs.ModeSymlink:
		return "a symbolic link"
	}
	return "of type " + mode.Type().String()
}

// unwrapPath drops the path of a *fs.PathError, which the ManifestError
// around it already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// joinErrors sorts errs by file then line and joins them; a single error is
// returned as itself.
func joinErrors(errs []*ManifestError) error {
	slices.SortStableFunc(errs, func(a, b *ManifestError) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	if len(errs) == 1 {
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Keys of a manifest's top level and of a command, as error messages list
// them. Serverboards' manifests also carry icon, tags, license and
// postinst, which mean nothing here and are accepted as they are.
var (
	topKeys = []string{"id", "name", "version", "description", "author", "url", "components", "icon", "tags", "license", "postinst"}
	cmdKeys = []string{"id", "type", "name", "command", "strategy", "timeout", "perms", "user_perms", "env"}
)

// parseManifest parses the manifest data of the plugin in the folder dir,
// which must be absolute and without symbolic links; file is the manifest's
// path, for the errors and Plugin.Manifest. It returns the plugin and the
// line of its id, or every problem found.
func parseManifest(file, dir string, data []byte) (Plugin, int, []*ManifestError) {
	p := &manifestParser{file: file, dir: dir}
	plugin, idLine := p.parse(data)
	if len(p.errs) > 0 {
		return Plugin{}, 0, p.errs
	}
	return plugin, idLine, nil
}

// manifestParser is the state of parseManifest: where the manifest is, and
// the problems found so far.
type manifestParser struct {
	file string
	dir  string
	errs []*ManifestError
}

// errorf records a problem at line.
func (p *manifestParser) errorf(line int, format string, a ...any) {
	p.errs = append(p.errs, &ManifestError{File: p.file, Line: line, Msg: fmt.Sprintf(format, a...)})
}

// parse parses data into a plugin and returns it with the line of its id.
func (p *manifestParser) parse(data []byte) (Plugin, int) {
	if len(data) > MaxManifestSize {
		p.errorf(0, "the manifest is larger than %d bytes", MaxManifestSize)
		return Plugin{}, 0
	}
	if !utf8.Valid(data) {
		p.errorf(badByteLine(data), "invalid UTF-8")
		return Plugin{}, 0
	}
	root := p.decode(data)
	if root == nil {
		return Plugin{}, 0
	}
	if p.refuseAliases(root); len(p.errs) > 0 {
		return Plugin{}, 0
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "the manifest must be a mapping of keys (%s), not %s", strings.Join(topKeys, ", "), kindName(root))
		return Plugin{}, 0
	}
	fields := p.fields(root)
	p.unknownKeys(fields, topKeys)
	plugin := Plugin{Dir: p.dir, Manifest: p.file}
	idLine := root.Line
	if f, ok := fields.get("id"); ok {
		idLine = f.val.Line
		plugin.ID, _ = p.id("id", f.val)
	} else {
		p.errorf(root.Line, `no id: a manifest needs one, as "id: serverboards.core.actions"`)
	}
	plugin.Name = p.optString(fields, "name")
	plugin.Version = p.optString(fields, "version")
	plugin.Description = p.optString(fields, "description")
	p.optString(fields, "author")
	p.optString(fields, "url")
	if f, ok := fields.get("components"); ok && !isNull(f.val) {
		if f.val.Kind != yaml.SequenceNode {
			p.errorf(f.val.Line, "components must be a list, not %s", kindName(f.val))
		} else {
			seen := map[string]int{} // component id -> its line
			for _, n := range f.val.Content {
				c, ok := p.component(n, plugin.ID)
				if !ok {
					continue
				}
				if line, dup := seen[c.ID]; dup {
					p.errorf(c.Line, "duplicate component id %q: the component at line %d has it too", c.ID, line)
					continue
				}
				seen[c.ID] = c.Line
				plugin.Components = append(plugin.Components, c)
			}
		}
	}
	return plugin, idLine
}

// decode parses data as one YAML document and returns its top node, or nil
// after recording why it cannot.
func (p *manifestParser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		// The parser reads what anyone may write in a plugin folder: a bug
		// of it must not take the server down.
		if r := recover(); r != nil {
			p.errorf(0, "the YAML parser failed: %v", r)
			root = nil
		}
	}()
	l, err := yaml.NewLoader(bytes.NewReader(data))
	if err != nil {
		p.errorf(0, "%v", err)
		return nil
	}
	var doc yaml.Node
	switch err := l.Load(&doc); {
	case err == io.EOF:
		p.errorf(1, `the manifest is empty: it needs at least an id, as "id: serverboards.core.actions"`)
		return nil
	case err != nil:
		p.yamlError(data, err)
		return nil
	}
	var next yaml.Node
	switch err := l.Load(&next); {
	case err == io.EOF:
	case err != nil:
		p.yamlError(data, err)
		return nil
	default:
		p.errorf(next.Line, "a second YAML document: a manifest is one document")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.errorf(doc.Line, "the manifest is not one YAML document")
		return nil
	}
	return doc.Content[0]
}

// yamlError records an error of the YAML parser at its line, or when it
// has none (the reader's, as a control character), at the line of the first
// character YAML does not allow.
func (p *manifestParser) yamlError(data []byte, err error) {
	var le *yaml.LoadError
	if !errors.As(err, &le) {
		p.errorf(0, "invalid YAML: %v", err)
		return
	}
	line := le.Mark.Line
	if line <= 0 {
		line = badByteLine(data)
	}
	msg := le.Message
	if le.ContextMsg != "" {
		msg += " (" + le.ContextMsg + ")"
	}
	p.errorf(line, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// badByteLine is the line of the first byte of data that is not valid
// UTF-8 or is a control character other than tab, LF and CR; 1 when there
// is none.
func badByteLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line
		case r == '\n':
			line++
		case r < ' ' && r != '\t' && r != '\r', r == 0x7f:
			return line
		}
		i += size
	}
	return 1
}

// refuseAliases records every alias in the tree of n. A manifest has no use
// for them, and refusing them rules out the "billion laughs".
func (p *manifestParser) refuseAliases(n *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		p.errorf(n.Line, "an alias (*%s): a manifest may not use YAML aliases; write the value out", n.Value)
		return
	}
	for _, c := range n.Content {
		p.refuseAliases(c)
	}
}

// field is a key of a mapping and its value.
type field struct{ key, val *yaml.Node }

// mapping is the keys of a YAML mapping, by name and in the manifest's
// order.
type mapping struct {
	list   []field
	byName map[string]field
}

func (m mapping) get(name string) (field, bool) {
	f, ok := m.byName[name]
	return f, ok
}

// fields returns the keys of the mapping m, recording keys that are not
// plain strings and duplicates (the first is kept).
func (p *manifestParser) fields(m *yaml.Node) mapping {
	fm := mapping{byName: make(map[string]field, len(m.Content)/2)}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			p.errorf(k.Line, "a key that is not a string (%s)", kindName(k))
			continue
		}
		if f, dup := fm.byName[k.Value]; dup {
			p.errorf(k.Line, "duplicate key %s: line %d has it too", quote(k.Value), f.key.Line)
			continue
		}
		fm.byName[k.Value] = field{k, v}
		fm.list = append(fm.list, field{k, v})
	}
	return fm
}

// unknownKeys records the keys of fm that are not in known, naming the
// known ones.
func (p *manifestParser) unknownKeys(fm mapping, known []string) {
	for _, f := range fm.list {
		name := f.key.Value
		if slices.Contains(known, name) {
			continue
		}
		hint := ""
		if s := closest(name, known); s != "" {
			hint = fmt.Sprintf("did you mean %q? ", s)
		}
		p.errorf(f.key.Line, "unknown key %s: %sthe keys are %s", quote(name), hint, strings.Join(known, ", "))
	}
}

// closest returns the word of known nearest to s, if it is near enough to
// be a typo of it (at most two edits, fewer than len(s)); else "".
func closest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestDist && d < len(s) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // far from any key; bounds the work on hostile input
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// quote quotes s for an error message, cut after 64 bytes: a manifest may
// hold a value of any length.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// isNull tells whether n is a YAML null: "~", "null", or no value at all.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names the kind of n for an error message.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a YAML node of kind " + strconv.Itoa(int(n.Kind))
}

// str returns the scalar n as a string, as written: any plain or quoted
// scalar is one (version: 1.0 is the string "1.0"), but not one tagged
// explicitly as something else (!!binary). It must be valid UTF-8 without
// NUL.
func (p *manifestParser) str(key string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, "%s must be a string, not %s", key, kindName(n))
		return "", false
	}
	if n.Style&yaml.TaggedStyle != 0 && n.ShortTag() != "!!str" {
		p.errorf(n.Line, "%s must be a string, not a value tagged %s", key, n.Tag)
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		p.errorf(n.Line, "%s: invalid UTF-8", key)
		return "", false
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		p.errorf(n.Line, "%s: a NUL character", key)
		return "", false
	}
	return n.Value, true
}

// optString returns the string of the optional key, "" when absent or null.
func (p *manifestParser) optString(fields mapping, key string) string {
	f, ok := fields.get(key)
	if !ok || isNull(f.val) {
		return ""
	}
	s, _ := p.str(key, f.val)
	return s
}

// id returns the id in n, a plugin's or a component's.
func (p *manifestParser) id(key string, n *yaml.Node) (string, bool) {
	if isNull(n) {
		p.errorf(n.Line, "%s has no value", key)
		return "", false
	}
	s, ok := p.str(key, n)
	if !ok {
		return "", false
	}
	if !validID(s) {
		p.errorf(n.Line, "invalid %s %s: an id is a lowercase letter or digit, then lowercase letters, digits, '.', '_' and '-', at most %d bytes", key, quote(s), MaxIDLen)
		return "", false
	}
	return s, true
}

// validID tells whether s is a valid plugin or component id:
// [a-z0-9][a-z0-9._-]*, at most MaxIDLen bytes.
func validID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// component parses the component n of the plugin pluginID.
func (p *manifestParser) component(n *yaml.Node, pluginID string) (Component, bool) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "a component must be a mapping (name, type, id...), not %s", kindName(n))
		return Component{}, false
	}
	nerrs := len(p.errs)
	fields := p.fields(n)
	c := Component{Plugin: pluginID, Line: n.Line}
	if f, ok := fields.get("type"); !ok || isNull(f.val) {
		p.errorf(n.Line, "a component needs a type (%s for a command)", TypeCmd)
	} else {
		c.Type, _ = p.str("type", f.val)
	}
	if f, ok := fields.get("id"); ok {
		c.ID, _ = p.id("component id", f.val)
	} else {
		p.errorf(n.Line, "a component needs an id")
	}
	c.Name = p.optString(fields, "name")
	if c.Type == TypeCmd {
		p.unknownKeys(fields, cmdKeys)
		p.command(n, fields, &c)
	}
	return c, len(p.errs) == nerrs
}

// command parses the fields of the command (component of type cmd) n into
// c.
func (p *manifestParser) command(n *yaml.Node, fields mapping, c *Component) {
	c.Dir = p.dir
	c.Strategy = OneForOne
	if f, ok := fields.get("command"); !ok || isNull(f.val) {
		p.errorf(n.Line, "a command needs a command: the executable to run, relative to the plugin's folder")
	} else if s, ok := p.str("command", f.val); ok {
		cmd, err := resolveCommand(p.dir, s)
		if err != nil {
			p.errorf(f.val.Line, "command %s: %v", quote(s), err)
		}
		c.Command = cmd
	}
	if f, ok := fields.get("strategy"); ok && !isNull(f.val) {
		if s, ok := p.str("strategy", f.val); ok {
			switch Strategy(s) {
			case OneForOne, Singleton:
				c.Strategy = Strategy(s)
			default:
				p.errorf(f.val.Line, "unknown strategy %s: it is %s (the default) or %s", quote(s), OneForOne, Singleton)
			}
		}
	}
	if f, ok := fields.get("timeout"); ok && !isNull(f.val) {
		if s, ok := p.str("timeout", f.val); ok {
			d, err := ParseTimeout(s)
			if err != nil {
				p.errorf(f.val.Line, "%v", err)
			}
			c.Timeout = d
		}
	}
	if f, ok := fields.get("perms"); ok && !isNull(f.val) {
		c.Perms = p.permList("perms", f.val)
	}
	if f, ok := fields.get("user_perms"); ok {
		if isNull(f.val) {
			p.errorf(f.val.Line, `user_perms has no value: write [] to let every caller call the command, or leave the key out`)
		} else {
			c.UserPerms = make([]string, 0)
			for _, s := range p.permList("user_perms", f.val) {
				c.UserPerms = append(c.UserPerms, s.String())
			}
		}
	}
	if f, ok := fields.get("env"); ok && !isNull(f.val) {
		c.Env = p.env(f.val)
	}
}

// permList parses the perms of n: a string of perms separated by spaces, or
// a list of strings that are one perm each.
func (p *manifestParser) permList(key string, n *yaml.Node) []Perm {
	var perms []Perm
	add := func(s string, line int) {
		perm, err := parsePerm(s)
		if err != nil {
			p.errorf(line, "%s: %v", key, err)
			return
		}
		perms = append(perms, perm)
	}
	if n.Kind == yaml.SequenceNode {
		for _, item := range n.Content {
			if s, ok := p.str(key+" item", item); ok {
				add(s, item.Line)
			}
		}
		return perms
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, "%s must be a string of perms separated by spaces, or a list, not %s", key, kindName(n))
		return nil
	}
	if s, ok := p.str(key, n); ok {
		for _, f := range strings.Fields(s) {
			add(f, n.Line)
		}
	}
	return perms
}

// parsePerm parses a perm as a manifest writes it: "name" or
// "name[context]". A name is lowercase letters, digits and '.', '_', '/',
// '-'; a context is not empty and has no brackets or white space.
func parsePerm(s string) (Perm, error) {
	name, ctx, hasCtx := strings.Cut(s, "[")
	if !validPermName(name) {
		return Perm{}, fmt.Errorf("invalid perm %s: a perm is a name of lowercase letters, digits, '.', '_', '/' and '-', and may have a context in brackets, as settings.view[serverboards.core.actions/settings]", quote(s))
	}
	if !hasCtx {
		return Perm{Name: name}, nil
	}
	ctx, ok := strings.CutSuffix(ctx, "]")
	if !ok || ctx == "" || strings.ContainsAny(ctx, "[]") || strings.IndexFunc(ctx, isSpace) >= 0 {
		return Perm{}, fmt.Errorf("invalid perm %s: a context is in brackets at the end, not empty, without brackets or white space, as settings.view[serverboards.core.actions/settings]", quote(s))
	}
	return Perm{Name: name, Context: ctx}, nil
}

func validPermName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-') {
			return false
		}
	}
	return true
}

// isSpace tells whether r is white space or a control character: neither
// belongs in a perm.
func isSpace(r rune) bool {
	return r <= ' ' || r == 0x7f || r == 0x85 || r == 0xa0 || r >= 0x2000 && r <= 0x200a ||
		r == 0x2028 || r == 0x2029 || r == 0x3000 || r == 0x1680 || r == 0x202f || r == 0x205f || r == 0xfeff
}

// env parses the mapping n of environment variables into sorted
// "NAME=value" pairs.
func (p *manifestParser) env(n *yaml.Node) []string {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "env must be a mapping of NAME: value, not %s", kindName(n))
		return nil
	}
	env := []string{}
	for _, f := range p.fields(n).list {
		name := f.key.Value
		if !validEnvName(name) {
			p.errorf(f.key.Line, "env: invalid variable name %s: a name is a letter or '_', then letters, digits and '_'", quote(name))
			continue
		}
		if isNull(f.val) {
			p.errorf(f.val.Line, `env: %s has no value: write "" for an empty one`, name)
			continue
		}
		if v, ok := p.str("env "+name, f.val); ok {
			env = append(env, name+"="+v)
		}
	}
	slices.Sort(env)
	return env
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// resolveCommand resolves the command cmd of a manifest in the plugin's
// folder dir (absolute, without symbolic links): it must be a relative path
// without "..", lead to a regular file inside dir once its symbolic links
// are resolved, and be executable. It returns the file's resolved path.
func resolveCommand(dir, cmd string) (string, error) {
	switch {
	case cmd == "":
		return "", errors.New("empty")
	case strings.HasPrefix(cmd, "/"):
		return "", errors.New("must be relative to the plugin's folder")
	case slices.Contains(strings.Split(cmd, "/"), ".."):
		return "", errors.New(`must not have a ".." element`)
	}
	clean := filepath.Clean(cmd)
	if clean == "." {
		return "", errors.New("names the plugin's folder, not an executable")
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, clean))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errors.New("no such file in the plugin's folder")
		}
		return "", unwrapPath(err)
	}
	if rel, err := filepath.Rel(dir, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("leads to %s, outside the plugin's folder", real)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", unwrapPath(err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file: it is %s", fileKind(st.Mode()))
	}
	if st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("not executable (mode %#o)", st.Mode().Perm())
	}
	return real, nil
}

// ParseTimeout parses a command's timeout, with the seed's shortcuts: "0",
// or a positive whole number and one unit of ms, s, m (minutes), h, d
// (days), M (months of 30 days) or y (years of 365 days), as "1000ms" or
// "7d"; at most MaxTimeout.
func ParseTimeout(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("invalid timeout %s: %s; a timeout is 0, or a positive whole number and one unit of ms, s, m, h, d, M (30 days) or y (365 days), as 1000ms, 30s, 5m, 2h, 7d, 1M or 1y, at most 10y", quote(v), why)
	}
	i := 0
	for i < len(v) && '0' <= v[i] && v[i] <= '9' {
		i++
	}
	num, unit := v[:i], v[i:]
	if num == "" {
		return bad("no number")
	}
	var per time.Duration
	switch unit {
	case "ms":
		per = time.Millisecond
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	case "d":
		per = 24 * time.Hour
	case "M":
		per = 30 * 24 * time.Hour
	case "y":
		per = 365 * 24 * time.Hour
	case "":
		return bad("no unit")
	default:
		return bad(fmt.Sprintf("unknown unit %s", quote(unit)))
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil || n > int64(MaxTimeout/per):
		return bad("too long")
	case n == 0:
		return bad("zero with a unit (write 0)")
	}
	return time.Duration(n) * per, nil
}
