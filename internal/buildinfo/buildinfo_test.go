package buildinfo_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/rexec/rexec/internal/buildinfo"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   buildinfo.Info
		want string
	}{
		{buildinfo.Info{Version: "v1.2.3", Revision: "0123456789abcdef", Time: "2026-12-02T07:00:00Z", Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64"},
			"rexec v1.2.3 (commit 0123456789ab, 2026-12-02T07:00:00Z, modified) go1.26.8 linux/amd64"},
		{buildinfo.Info{Version: "(devel)", GoVersion: "go1.26.8", Platform: "darwin/arm64"}, "rexec (devel) go1.26.8 darwin/arm64"},
		{buildinfo.Info{GoVersion: "go1.26.8", Platform: "linux/amd64"}, "rexec (unknown) go1.26.8 linux/amd64"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRead(t *testing.T) {
	in := buildinfo.Read()
	if in.GoVersion != runtime.Version() || in.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("%+v", in)
	}
	if !strings.HasPrefix(in.String(), "rexec ") {
		t.Fatalf("%q", in.String())
	}
}
