package cgroup_test

import (
	"testing"

	"github.com/rexec/rexec/cgroup"
)

// FuzzParseLimit: a size or CPU amount that parses is within its bounds
// and reads back as itself once formatted; nothing panics.
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"64MiB", "1048576", "1.5", "250m", "0", "-1", "1e300", "NaN", "9223372036854775807TiB", " 2 G "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := cgroup.ParseSize(s); err == nil {
			if n < 0 || n > 1<<62 {
				t.Fatalf("ParseSize(%q) = %d, out of bounds", s, n)
			}
			if back, err := cgroup.ParseSize(cgroup.FormatSize(n)); err != nil || back != n {
				t.Fatalf("ParseSize(%q) = %d; formatted %q reads back as %d, %v", s, n, cgroup.FormatSize(n), back, err)
			}
		}
		if n, err := cgroup.ParseCPU(s); err == nil {
			if n < 0 || n > 1<<62/1000 {
				t.Fatalf("ParseCPU(%q) = %d, out of bounds", s, n)
			}
			if back, err := cgroup.ParseCPU(cgroup.FormatCPU(n)); err != nil || back != n {
				t.Fatalf("ParseCPU(%q) = %d; formatted %q reads back as %d, %v", s, n, cgroup.FormatCPU(n), back, err)
			}
		}
	})
}
