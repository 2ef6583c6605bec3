package plugin

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFile writes data to path with mode, making its folders.
func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// writeExe writes an executable shell script at path.
func writeExe(t testing.TB, path string) {
	t.Helper()
	writeFile(t, path, "#!/bin/sh\nexit 0\n", 0o755)
}

// realDir returns a new temporary folder, without symbolic links.
func realDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pluginDir makes a plugin folder in a new temporary folder with the
// manifest text and an executable "cmd", and returns the folder.
func pluginDir(t testing.TB, manifest string) string {
	t.Helper()
	dir := realDir(t)
	writeFile(t, filepath.Join(dir, "manifest.yaml"), manifest, 0o644)
	writeExe(t, filepath.Join(dir, "cmd"))
	return dir
}

const fullManifest = `# The seed's example, and more.
id: serverboards.core.actions
name: Core actions
version: 0.1.0
description: >
  The actions every
  install has.
author: David Moreno
url: https://serverboards.io
components:
  - name: Core actions.
    type: cmd
    id: cmd
    timeout: 1000s
    strategy: one_for_one
    perms: settings.view[serverboards.core.actions/settings] event.emit
    command: serverboards-core.py
    user_perms: plugin
    env: {LANG: C.UTF-8, A_1: "x=y z"}
  - id: daemon
    type: cmd
    command: ./bin//daemon
    strategy: singleton
    timeout: 7d
    perms:
      - event.emit
      - run.start[backup]
      - machines.list
    user_perms:
      - plugin
      - serverboards.core.ssh/daemon
      - settings.view[x/y]
    env:
      EMPTY: ""
      PATH: /usr/bin:/bin
  - id: screen
    type: screen
    name: A screen
    traits: [cloud]
    whatever: {any: thing}
`

func TestLoadPluginFull(t *testing.T) {
	dir := realDir(t)
	manifest := filepath.Join(dir, "manifest.yaml")
	writeFile(t, manifest, fullManifest, 0o644)
	writeExe(t, filepath.Join(dir, "serverboards-core.py"))
	writeExe(t, filepath.Join(dir, "bin", "daemon"))

	p, err := LoadPlugin(dir)
	if err != nil {
		t.Fatal(err)
	}
	const id = "serverboards.core.actions"
	want := Plugin{
		ID:          id,
		Name:        "Core actions",
		Version:     "0.1.0",
		Description: "The actions every install has.\n",
		Dir:         dir,
		Manifest:    manifest,
		Components: []Component{{
			Plugin:    id,
			ID:        "cmd",
			Name:      "Core actions.",
			Type:      TypeCmd,
			Line:      11,
			Command:   filepath.Join(dir, "serverboards-core.py"),
			Dir:       dir,
			Strategy:  OneForOne,
			Timeout:   1000 * time.Second,
			Perms:     []Perm{{"settings.view", "serverboards.core.actions/settings"}, {"event.emit", ""}},
			UserPerms: []string{"plugin"},
			Env:       []string{"A_1=x=y z", "LANG=C.UTF-8"},
		}, {
			Plugin:    id,
			ID:        "daemon",
			Type:      TypeCmd,
			Line:      20,
			Command:   filepath.Join(dir, "bin", "daemon"),
			Dir:       dir,
			Strategy:  Singleton,
			Timeout:   7 * 24 * time.Hour,
			Perms:     []Perm{{"event.emit", ""}, {"run.start", "backup"}, {"machines.list", ""}},
			UserPerms: []string{"plugin", "serverboards.core.ssh/daemon", "settings.view[x/y]"},
			Env:       []string{"EMPTY=", "PATH=/usr/bin:/bin"},
		}, {
			Plugin: id,
			ID:     "screen",
			Name:   "A screen",
			Type:   "screen",
			Line:   36,
		}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("LoadPlugin:\n got %#v\nwant %#v", p, want)
	}
	if got := p.Components[0].FullID(); got != id+"/cmd" {
		t.Errorf("FullID = %q", got)
	}
}

func TestLoadPluginDefaults(t *testing.T) {
	dir := pluginDir(t, "id: p\ncomponents:\n- {id: c, type: cmd, command: cmd}\n")
	p, err := LoadPlugin(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Plugin{ID: "p", Dir: dir, Manifest: filepath.Join(dir, "manifest.yaml"), Components: []Component{{
		Plugin: "p", ID: "c", Type: TypeCmd, Line: 3,
		Command: filepath.Join(dir, "cmd"), Dir: dir, Strategy: OneForOne,
	}}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("LoadPlugin:\n got %#v\nwant %#v", p, want)
	}

	// No components, nulls for the optional keys, manifest.yml.
	dir = realDir(t)
	writeFile(t, filepath.Join(dir, "manifest.yml"), "id: p0\nname:\nversion: ~\ncomponents:\n", 0o644)
	p, err = LoadPlugin(dir)
	if err != nil {
		t.Fatal(err)
	}
	want = Plugin{ID: "p0", Dir: dir, Manifest: filepath.Join(dir, "manifest.yml")}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("LoadPlugin:\n got %#v\nwant %#v", p, want)
	}

	// Nulls in a command are absent keys too.
	dir = pluginDir(t, "id: p\ncomponents:\n- {id: c, type: cmd, command: cmd, strategy: , timeout: , perms: , env: }\n")
	p, err = LoadPlugin(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Components[0]
	if c.Strategy != OneForOne || c.Timeout != 0 || c.Perms != nil || c.Env != nil || c.UserPerms != nil {
		t.Errorf("component with null keys: %#v", c)
	}
}

func TestUserPerms(t *testing.T) {
	for _, tt := range []struct {
		line string
		want []string // nil: absent
	}{
		{"", nil},
		{"user_perms: []", []string{}},
		{`user_perms: ""`, []string{}},
		{"user_perms: '  '", []string{}},
		{"user_perms: plugin", []string{"plugin"}},
		{"user_perms: plugin  a.b[c]", []string{"plugin", "a.b[c]"}},
		{"user_perms: [plugin, 'a.b[c]']", []string{"plugin", "a.b[c]"}},
	} {
		dir := pluginDir(t, "id: p\ncomponents:\n- id: c\n  type: cmd\n  command: cmd\n  "+tt.line+"\n")
		p, err := LoadPlugin(dir)
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		got := p.Components[0].UserPerms
		if (got == nil) != (tt.want == nil) || !slices.Equal(got, tt.want) {
			t.Errorf("%q: UserPerms = %#v, want %#v", tt.line, got, tt.want)
		}
	}
}

func TestManifestErrors(t *testing.T) {
	const head = "id: p\ncomponents:\n- id: c\n  type: cmd\n" // a command on line 3
	for _, tt := range []struct {
		name     string
		manifest string
		setup    func(t *testing.T, dir string)
		line     int
		msg      string // a part of the message
	}{
		{"invalid YAML", "id: p\nname: [a,\n", nil, 3, "invalid YAML: did not find expected node content"},
		{"bad indentation", "id: p\nname: a\n  b: c\n", nil, 3, "invalid YAML: mapping values are not allowed"},
		{"top level list", "- id: p\n", nil, 1, "the manifest must be a mapping of keys (id, name, version, description, author, url, components, icon, tags, license, postinst), not a list"},
		{"top level scalar", "\n\nhello\n", nil, 3, "must be a mapping of keys"},
		{"empty", "", nil, 1, "the manifest is empty"},
		{"only comments", "# nothing\n", nil, 1, "the manifest is empty"},
		{"two documents", "id: p\n---\nid: q\n", nil, 2, "a second YAML document"},
		{"invalid UTF-8", "id: p\nname: caf\xe9\n", nil, 2, "invalid UTF-8"},
		{"control character", "id: p\n\nname: a\x01b\n", nil, 3, "invalid YAML: control characters are not allowed"},
		{"NUL in a string", "id: p\nname: \"a\\0b\"\n", nil, 2, "name: a NUL character"},
		{"tagged string", "id: p\nname: !!binary aGVsbG8=\n", nil, 2, "name must be a string, not a value tagged !!binary"},
		{"name a list", "id: p\nversion: [1]\n", nil, 2, "version must be a string, not a list"},
		{"null document", "---\n", nil, 2, "must be a mapping of keys (id, name, version, description, author, url, components, icon, tags, license, postinst), not null"},
		{"no id", "name: x\n", nil, 1, `no id: a manifest needs one`},
		{"null id", "id:\n", nil, 1, "id has no value"},
		{"bad id", "name: x\nid: Core\n", nil, 2, `invalid id "Core": an id is a lowercase letter or digit`},
		{"long value cut", "id: " + strings.Repeat("A", 100) + "\n", nil, 1, `invalid id "` + strings.Repeat("A", 64) + `"...: an id is`},
		{"id starts with a dot", "id: .p\n", nil, 1, `invalid id ".p"`},
		{"id too long", "id: " + strings.Repeat("a", MaxIDLen+1) + "\n", nil, 1, "at most 128 bytes"},
		{"unknown top key", "id: p\nnmae: x\n", nil, 2, `unknown key "nmae": did you mean "name"? the keys are id, name, version, description, author, url, components`},
		{"unknown top key far", "id: p\nlogo: x.png\n", nil, 2, `unknown key "logo": the keys are id,`},
		{"duplicate key", "id: p\nname: a\nname: b\n", nil, 3, `duplicate key "name": line 2 has it too`},
		{"complex key", "id: p\n? [a]\n: b\n", nil, 2, "a key that is not a string (a list)"},
		{"merge key", "id: p\n<<: {name: x}\n", nil, 2, `unknown key "<<"`},
		{"alias", "id: &a p\nname: *a\n", nil, 2, "an alias (*a): a manifest may not use YAML aliases"},
		{"merge alias", "id: p\nx: &b {a: 1}\ncomponents:\n- <<: *b\n", nil, 4, "an alias (*b)"},
		{"components a mapping", "id: p\ncomponents: {a: b}\n", nil, 2, "components must be a list, not a mapping"},
		{"component a scalar", "id: p\ncomponents:\n- cmd\n", nil, 3, "a component must be a mapping (name, type, id...), not a scalar"},
		{"component no type", "id: p\ncomponents:\n- id: c\n  command: cmd\n", nil, 3, "a component needs a type (cmd for a command)"},
		{"component no id", "id: p\ncomponents:\n- type: screen\n", nil, 3, "a component needs an id"},
		{"component bad id", "id: p\ncomponents:\n- type: screen\n  id: a/b\n", nil, 4, `invalid component id "a/b"`},
		{"duplicate component id", "id: p\ncomponents:\n- {type: screen, id: c}\n- {type: cmd, id: c, command: cmd}\n", nil, 4, `duplicate component id "c": the component at line 3 has it too`},
		{"unknown command key", head + "  command: cmd\n  stratgy: singleton\n", nil, 6, `unknown key "stratgy": did you mean "strategy"? the keys are id, type, name, command, strategy, timeout, perms, user_perms, env`},
		{"no command", head, nil, 3, "a command needs a command"},
		{"command absolute", head + "  command: /bin/true\n", nil, 5, `command "/bin/true": must be relative to the plugin's folder`},
		{"command dotdot", head + "  command: a/../cmd\n", nil, 5, `command "a/../cmd": must not have a ".." element`},
		{"command dot", head + "  command: ./\n", nil, 5, `command "./": names the plugin's folder`},
		{"command missing", head + "  command: nope.py\n", nil, 5, `command "nope.py": no such file in the plugin's folder`},
		{"command not executable", head + "  command: lib.py\n", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "lib.py"), "print(1)\n", 0o644)
		}, 5, `command "lib.py": not executable (mode 0644)`},
		{"command a folder", head + "  command: bin\n", func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "bin"), 0o755)
		}, 5, `command "bin": not a regular file: it is a folder`},
		{"command symlink outside", head + "  command: run\n", func(t *testing.T, dir string) {
			out := filepath.Join(realDir(t), "evil")
			writeExe(t, out)
			if err := os.Symlink(out, filepath.Join(dir, "run")); err != nil {
				t.Fatal(err)
			}
		}, 5, "outside the plugin's folder"},
		{"command symlink dotdot outside", head + "  command: run\n", func(t *testing.T, dir string) {
			if err := os.Symlink("../../../../../../../bin/sh", filepath.Join(dir, "run")); err != nil {
				t.Fatal(err)
			}
		}, 5, "outside the plugin's folder"},
		{"command dangling symlink", head + "  command: run\n", func(t *testing.T, dir string) {
			os.Symlink("gone", filepath.Join(dir, "run"))
		}, 5, "no such file"},
		{"bad strategy", head + "  command: cmd\n  strategy: one-for-one\n", nil, 6, `unknown strategy "one-for-one": it is one_for_one (the default) or singleton`},
		{"bad timeout", head + "  command: cmd\n  timeout: 10\n", nil, 6, `invalid timeout "10": no unit`},
		{"timeout a list", head + "  command: cmd\n  timeout: [1s]\n", nil, 6, "timeout must be a string, not a list"},
		{"bad perm", head + "  command: cmd\n  perms: ok Bad\n", nil, 6, `perms: invalid perm "Bad"`},
		{"bad perm context", head + "  command: cmd\n  perms: a[]\n", nil, 6, `perms: invalid perm "a[]": a context is in brackets`},
		{"perm context unclosed", head + "  command: cmd\n  perms: a[b\n", nil, 6, `invalid perm "a[b"`},
		{"perm context after", head + "  command: cmd\n  perms: a[b]c\n", nil, 6, `invalid perm "a[b]c"`},
		{"perm nested brackets", head + "  command: cmd\n  perms: 'a[b[c]]'\n", nil, 6, `invalid perm "a[b[c]]"`},
		{"bad perm in a list", head + "  command: cmd\n  perms:\n    - a\n    - 'b c'\n", nil, 8, `perms: invalid perm "b c"`},
		{"perm list item a mapping", head + "  command: cmd\n  perms:\n    - {a: b}\n", nil, 7, "perms item must be a string, not a mapping"},
		{"perms a mapping", head + "  command: cmd\n  perms: {a: b}\n", nil, 6, "perms must be a string of perms separated by spaces, or a list, not a mapping"},
		{"user_perms null", head + "  command: cmd\n  user_perms:\n", nil, 6, "user_perms has no value: write [] to let every caller call the command"},
		{"bad user perm", head + "  command: cmd\n  user_perms: [x, '[y]']\n", nil, 6, `user_perms: invalid perm "[y]"`},
		{"env a list", head + "  command: cmd\n  env: [A=b]\n", nil, 6, "env must be a mapping of NAME: value, not a list"},
		{"env bad name", head + "  command: cmd\n  env:\n    OK: 1\n    1BAD: x\n", nil, 8, `env: invalid variable name "1BAD"`},
		{"env name with =", head + "  command: cmd\n  env: {'A=B': x}\n", nil, 6, `env: invalid variable name "A=B"`},
		{"env null value", head + "  command: cmd\n  env:\n    A:\n", nil, 7, `env: A has no value: write "" for an empty one`},
		{"env NUL value", head + "  command: cmd\n  env: {A: \"x\\0\"}\n", nil, 6, "env A: a NUL character"},
		{"env value a mapping", head + "  command: cmd\n  env: {A: {b: c}}\n", nil, 6, "env A must be a string, not a mapping"},
		{"env duplicate", head + "  command: cmd\n  env:\n    A: x\n    A: y\n", nil, 8, `duplicate key "A": line 7 has it too`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := pluginDir(t, tt.manifest)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			_, err := LoadPlugin(dir)
			var me *ManifestError
			if !errors.As(err, &me) || err != error(me) {
				t.Fatalf("LoadPlugin = %v (%T), want one *ManifestError", err, err)
			}
			t.Log(err)
			file := filepath.Join(dir, "manifest.yaml")
			if me.File != file || me.Line != tt.line || !strings.Contains(me.Msg, tt.msg) {
				t.Errorf("error %q\nwant %s:%d: ...%s...", err, file, tt.line, tt.msg)
			}
			if want := file + ":" + strconv.Itoa(tt.line) + ": " + me.Msg; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
}

// TestBillionLaughs: aliases are refused at once, whatever their number.
func TestBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("id: p\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	dir := pluginDir(t, b.String())
	start := time.Now()
	_, err := LoadPlugin(dir)
	if err == nil || !strings.Contains(err.Error(), "may not use YAML aliases") {
		t.Fatalf("LoadPlugin = %v, want aliases refused", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestFolderErrors: the problems of a folder rather than of a manifest's
// content.
func TestFolderErrors(t *testing.T) {
	t.Run("no manifest", func(t *testing.T) {
		dir := realDir(t)
		writeExe(t, filepath.Join(dir, "cmd"))
		wantError(t, dir, dir, 0, "no manifest: a plugin's folder needs a manifest.yaml or a manifest.yml")
	})
	t.Run("two manifests", func(t *testing.T) {
		dir := pluginDir(t, "id: p\n")
		writeFile(t, filepath.Join(dir, "manifest.yml"), "id: p\n", 0o644)
		wantError(t, dir, dir, 0, "two manifests, manifest.yaml and manifest.yml: keep one")
	})
	t.Run("missing folder", func(t *testing.T) {
		dir := filepath.Join(realDir(t), "nope")
		wantError(t, dir, dir, 0, "cannot read the plugin's folder: no such file or directory")
	})
	t.Run("a file", func(t *testing.T) {
		dir := filepath.Join(realDir(t), "file")
		writeFile(t, dir, "", 0o644)
		wantError(t, dir, dir, 0, "not a folder")
	})
	t.Run("manifest a folder", func(t *testing.T) {
		dir := realDir(t)
		os.Mkdir(filepath.Join(dir, "manifest.yml"), 0o755)
		wantError(t, dir, filepath.Join(dir, "manifest.yml"), 0, "the manifest is not a regular file: it is a folder")
	})
	t.Run("manifest a FIFO", func(t *testing.T) {
		dir := realDir(t)
		if err := syscall.Mkfifo(filepath.Join(dir, "manifest.yaml"), 0o644); err != nil {
			t.Skip(err)
		}
		wantError(t, dir, filepath.Join(dir, "manifest.yaml"), 0, "the manifest is not a regular file: it is a FIFO")
	})
	t.Run("too large", func(t *testing.T) {
		dir := pluginDir(t, "id: p\n"+strings.Repeat("#", MaxManifestSize))
		wantError(t, dir, filepath.Join(dir, "manifest.yaml"), 0, "the manifest is larger than 1048576 bytes")
	})
	t.Run("named as given", func(t *testing.T) {
		dir := pluginDir(t, "id: P\n")
		link := filepath.Join(realDir(t), "link")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		wantError(t, link+"/", filepath.Join(link, "manifest.yaml"), 1, `invalid id "P"`)
		os.Remove(filepath.Join(dir, "manifest.yaml"))
		wantError(t, link+"/", link, 0, "no manifest")
	})
	t.Run("just below the limit", func(t *testing.T) {
		m := "id: p\n#"
		dir := pluginDir(t, m+strings.Repeat("#", MaxManifestSize-len(m)))
		if _, err := LoadPlugin(dir); err != nil {
			t.Fatal(err)
		}
	})
}

// wantError checks that LoadPlugin(dir) fails with one *ManifestError of
// file and line whose message has msg.
func wantError(t *testing.T, dir, file string, line int, msg string) {
	t.Helper()
	_, err := LoadPlugin(dir)
	var me *ManifestError
	if !errors.As(err, &me) || err != error(me) {
		t.Fatalf("LoadPlugin = %v (%T), want one *ManifestError", err, err)
	}
	if me.File != file || me.Line != line || !strings.Contains(me.Msg, msg) {
		t.Errorf("error %q\nwant %s:%d: ...%s...", err, file, line, msg)
	}
}

func TestCommandSymlinkInside(t *testing.T) {
	dir := pluginDir(t, "id: p\ncomponents:\n- {id: a, type: cmd, command: run}\n- {id: b, type: cmd, command: abs}\n")
	writeExe(t, filepath.Join(dir, "bin", "real"))
	if err := os.Symlink("bin/real", filepath.Join(dir, "run")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "cmd"), filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	// The plugin's folder reached through a symbolic link.
	link := filepath.Join(realDir(t), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPlugin(link)
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest != filepath.Join(dir, "manifest.yaml") {
		t.Errorf("Manifest = %q, want it in %q", p.Manifest, dir)
	}
	if p.Dir != dir || p.Components[0].Dir != dir {
		t.Errorf("Dir = %q, %q, want %q", p.Dir, p.Components[0].Dir, dir)
	}
	if got, want := p.Components[0].Command, filepath.Join(dir, "bin", "real"); got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
	if got, want := p.Components[1].Command, filepath.Join(dir, "cmd"); got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	root := realDir(t)
	// Folder names sort otherwise than ids.
	a := filepath.Join(root, "a")
	writeFile(t, filepath.Join(a, "manifest.yaml"), "id: zz\ncomponents:\n- {id: c, type: cmd, command: cmd, user_perms: [], perms: x, env: {A: b}}\n- {id: s, type: screen}\n", 0o644)
	writeExe(t, filepath.Join(a, "cmd"))
	b := filepath.Join(root, "b")
	writeFile(t, filepath.Join(b, "manifest.yml"), "id: aa\n", 0o644)
	// Skipped: hidden folders and files, plain files.
	writeFile(t, filepath.Join(root, ".git", "manifest.yaml"), "broken: [\n", 0o644)
	writeFile(t, filepath.Join(root, ".hidden"), "", 0o644)
	writeFile(t, filepath.Join(root, "README.md"), "plugins\n", 0o644)
	// A symbolic link to a plugin's folder is a plugin.
	elsewhere := filepath.Join(realDir(t), "mm")
	writeFile(t, filepath.Join(elsewhere, "manifest.yaml"), "id: mm\n", 0o644)
	if err := os.Symlink(elsewhere, filepath.Join(root, "m")); err != nil {
		t.Fatal(err)
	}
	// A symbolic link to a file is a file.
	if err := os.Symlink(filepath.Join(root, "README.md"), filepath.Join(root, "readme")); err != nil {
		t.Fatal(err)
	}

	s, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	ps := s.Plugins()
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{"aa", "mm", "zz"}) {
		t.Fatalf("ids = %q", ids)
	}
	if ps[1].Dir != elsewhere {
		t.Errorf("Dir of a linked plugin = %q, want %q", ps[1].Dir, elsewhere)
	}
	c, ok := s.Component("zz/c")
	if !ok || c.Command != filepath.Join(a, "cmd") || c.Type != TypeCmd {
		t.Fatalf("Component(zz/c) = %#v, %v", c, ok)
	}
	if c, ok := s.Component("zz/s"); !ok || c.Type != "screen" {
		t.Errorf("Component(zz/s) = %#v, %v", c, ok)
	}
	for _, id := range []string{"zz", "zz/", "aa/c", "zz/c/", "c", ""} {
		if _, ok := s.Component(id); ok {
			t.Errorf("Component(%q) found", id)
		}
	}

	// What callers get are copies.
	c.Perms[0].Name = "changed"
	c.Env[0] = "changed"
	c.UserPerms = append(c.UserPerms, "changed")
	ps[2].Components[0].Perms[0].Name = "changed"
	ps[2].Components[0].Env[0] = "changed"
	ps[2].Components[0].ID = "changed"
	ps[0].ID = "changed"
	again := s.Plugins()
	c2, _ := s.Component("zz/c")
	for _, c := range []Component{c2, again[2].Components[0]} {
		if c.ID != "c" || c.Perms[0].Name != "x" || c.Env[0] != "A=b" || c.UserPerms == nil || len(c.UserPerms) != 0 {
			t.Errorf("the Set changed: %#v", c)
		}
	}
	if again[0].ID != "aa" {
		t.Errorf("the Set changed: %#v", again[0])
	}

	var none *Set
	if none.Plugins() != nil {
		t.Error("nil Set has plugins")
	}
	if _, ok := none.Component("zz/c"); ok {
		t.Error("nil Set has a component")
	}
}

func TestLoadEmptyAndMissing(t *testing.T) {
	root := realDir(t)
	s, err := Load(root)
	if err != nil || s == nil || len(s.Plugins()) != 0 {
		t.Errorf("Load(empty) = %v, %v", s, err)
	}
	_, err = Load(filepath.Join(root, "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	file := filepath.Join(root, "file")
	writeFile(t, file, "", 0o644)
	if _, err = Load(file); err == nil {
		t.Errorf("Load(a file) = nil error")
	}
}

func TestLoadDuplicateIDs(t *testing.T) {
	root := realDir(t)
	writeFile(t, filepath.Join(root, "one", "manifest.yaml"), "id: same\n", 0o644)
	writeFile(t, filepath.Join(root, "two", "manifest.yaml"), "name: Two\nid: same\n", 0o644)
	_, err := Load(root)
	first := filepath.Join(root, "one", "manifest.yaml")
	second := filepath.Join(root, "two", "manifest.yaml")
	want := second + `:2: duplicate plugin id "same": ` + first + ":1 has it too"
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v\nwant %s", err, want)
	}
}

// TestLoadJoinsErrors: Load reports every problem of every plugin, by file
// then line.
func TestLoadJoinsErrors(t *testing.T) {
	root := realDir(t)
	writeFile(t, filepath.Join(root, "b", "manifest.yaml"), "id: b\ncomponents:\n- {id: c, type: cmd, command: nope, strategy: x}\n- {id: c, type: cmd}\nnmae: x\n", 0o644)
	writeFile(t, filepath.Join(root, "a", "manifest.yaml"), "id: A\n", 0o644)
	os.Mkdir(filepath.Join(root, "c"), 0o755)
	writeFile(t, filepath.Join(root, "d", "manifest.yaml"), "id: d\n", 0o644) // fine
	writeFile(t, filepath.Join(root, "e", "manifest.yaml"), "id: b\n", 0o644) // b's id, but b failed

	s, err := Load(root)
	if s != nil {
		t.Errorf("Load returned a Set with its errors")
	}
	if err == nil {
		t.Fatal("no error")
	}
	var me *ManifestError
	if !errors.As(err, &me) {
		t.Fatalf("%T is not a *ManifestError", err)
	}
	var where []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		me := e.(*ManifestError)
		where = append(where, strings.TrimPrefix(me.File, root+"/")+":"+strconv.Itoa(me.Line))
	}
	want := []string{
		"a/manifest.yaml:1",
		"b/manifest.yaml:3", // command nope
		"b/manifest.yaml:3", // strategy x
		"b/manifest.yaml:4", // no command
		"b/manifest.yaml:5", // nmae
		"c:0",
	}
	if !slices.Equal(where, want) {
		t.Errorf("errors at %q\nwant %q\n%v", where, want, err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
}

func TestParseTimeout(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"1000ms", time.Second},
		{"1ms", time.Millisecond},
		{"1000s", 1000 * time.Second},
		{"1s", time.Second},
		{"5m", 5 * time.Minute},
		{"2h", 2 * time.Hour},
		{"7d", 7 * day},
		{"1M", 30 * day},
		{"1y", 365 * day},
		{"10y", MaxTimeout},
		{"121M", 3630 * day},
		{"3650d", MaxTimeout},
		{"007s", 7 * time.Second},
	} {
		got, err := ParseTimeout(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"", "10", "0s", "00", "-1s", "+1s", "1.5s", "1 s", " 1s", "1s ", "1S", "1D", "1Y", "1sec",
		"1h30m", "1s1", "s", "ms", "1us", "1ns", "1w", "11y", "3651d", "122M",
		"9223372036854775807ms", "99999999999999999999s", "1e3s", "0x10s", "１s",
	} {
		got, err := ParseTimeout(in)
		if err == nil {
			t.Errorf("ParseTimeout(%q) = %v, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), "a timeout is 0, or a positive whole number and one unit of ms, s, m, h, d, M (30 days) or y (365 days)") {
			t.Errorf("ParseTimeout(%q): %v: the forms are not listed", in, err)
		}
	}
}

func TestParsePerm(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Perm
	}{
		{"plugin", Perm{Name: "plugin"}},
		{"settings.view[serverboards.core.actions/settings]", Perm{"settings.view", "serverboards.core.actions/settings"}},
		{"serverboards.core.ssh/daemon", Perm{Name: "serverboards.core.ssh/daemon"}},
		{"a_b-c[ü:*]", Perm{"a_b-c", "ü:*"}},
	} {
		got, err := parsePerm(tt.in)
		if err != nil || got != tt.want || got.String() != tt.in {
			t.Errorf("parsePerm(%q) = %#v, %v", tt.in, got, err)
		}
	}
	for _, in := range []string{"", "A", "a b", "a[", "a[]", "[b]", "a]", "a[b]]", "a[[b]", "a[b c]", "a[b\u00a0c]", "a[b]c", "é"} {
		if p, err := parsePerm(in); err == nil {
			t.Errorf("parsePerm(%q) = %#v, want an error", in, p)
		}
	}
}

// FuzzManifest: parsing never panics, and what it accepts holds the
// invariants the runtime relies on.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(fullManifest))
	f.Add([]byte("id: p\ncomponents:\n- {id: c, type: cmd, command: cmd, timeout: 1y, strategy: singleton, perms: [a, 'b[c]'], user_perms: '', env: {A: b}}\n"))
	f.Add([]byte("id: p\ncomponents:\n- id: c\n  type: cmd\n  command: ./cmd\n  user_perms: []\n"))
	f.Add([]byte("id: &a p\nname: *a\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("id: p\n---\nid: q\n"))
	f.Add([]byte("id: p\ncomponents:\n- {id: c, type: screen, x: [1, {y: z}]}\n"))
	dir := realDir(f)
	writeExe(f, filepath.Join(dir, "cmd"))
	file := filepath.Join(dir, "manifest.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, idLine, errs := parseManifest(file, dir, data)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.File != file || e.Line < 0 || e.Msg == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		if !validID(p.ID) || p.Dir != dir || p.Manifest != file || idLine < 1 {
			t.Fatalf("accepted plugin %#v (id line %d)", p, idLine)
		}
		seen := map[string]bool{}
		for _, c := range p.Components {
			if !validID(c.ID) || seen[c.ID] || c.Plugin != p.ID || c.Line < 1 || c.Type == "" {
				t.Fatalf("accepted component %#v", c)
			}
			seen[c.ID] = true
			if c.Type != TypeCmd {
				continue
			}
			if c.Strategy != OneForOne && c.Strategy != Singleton {
				t.Fatalf("strategy %q", c.Strategy)
			}
			if c.Timeout < 0 || c.Timeout > MaxTimeout {
				t.Fatalf("timeout %v", c.Timeout)
			}
			if c.Dir != dir || !strings.HasPrefix(c.Command, dir+"/") {
				t.Fatalf("command %q outside %q", c.Command, dir)
			}
			for _, perm := range c.Perms {
				if q, err := parsePerm(perm.String()); err != nil || q != perm {
					t.Fatalf("perm %#v", perm)
				}
			}
			for _, s := range c.UserPerms {
				if _, err := parsePerm(s); err != nil {
					t.Fatalf("user perm %q", s)
				}
			}
			for _, kv := range c.Env {
				name, _, ok := strings.Cut(kv, "=")
				if !ok || !validEnvName(name) || strings.IndexByte(kv, 0) >= 0 {
					t.Fatalf("env %q", kv)
				}
			}
			if !slices.IsSorted(c.Env) {
				t.Fatalf("env not sorted: %q", c.Env)
			}
		}
	})
}

// Serverboards' manifests carry keys that mean nothing to rexec: they load.
func TestManifestSeedKeys(t *testing.T) {
	dir := t.TempDir()
	manifest := "id: serverboards.core.actions\nname: Core actions\nauthor: me\nicon: cog.svg\ntags: [core, actions]\nlicense: Apache-2.0\npostinst: postinst.sh\ncomponents: []\n"
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPlugin(dir); err != nil || p.ID != "serverboards.core.actions" {
		t.Fatalf("LoadPlugin: %+v %v", p, err)
	}
}
