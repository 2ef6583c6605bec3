// Package buildinfo says which build of rexec this is, from the build
// information the Go toolchain puts in every binary: the module's version
// (a tag when built as a module, "(devel)" from a checkout), the commit and
// its time, whether the tree had uncommitted changes, and the Go version.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info describes a build. Fields the binary does not carry are empty.
type Info struct {
	Version   string // the module version: "v1.2.3", or "(devel)"
	Revision  string // the VCS commit
	Time      string // the commit's time, RFC 3339
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
	Platform  string // GOOS/GOARCH
}

// Read returns the running binary's build information.
func Read() Info {
	in := Info{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	in.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the build as one line: "rexec v1.2.3 (commit 0123abcd, 2026-12-02T07:00:00Z, modified) go1.26.8 linux/amd64".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString("rexec ")
	if in.Version == "" {
		b.WriteString("(unknown)")
	} else {
		b.WriteString(in.Version)
	}
	var vcs []string
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		vcs = append(vcs, "commit "+rev)
	}
	if in.Time != "" {
		vcs = append(vcs, in.Time)
	}
	if in.Modified {
		vcs = append(vcs, "modified")
	}
	if len(vcs) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(vcs, ", "))
	}
	fmt.Fprintf(&b, " %s %s", in.GoVersion, in.Platform)
	return b.String()
}
