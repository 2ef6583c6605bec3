package child_test

import (
	"strings"
	"testing"

	"github.com/rexec/rexec/child"
)

// BenchmarkStart is one short run from start to reap: the spawn path of
// every request. Its allocs/op are the budget a change to Start must keep.
func BenchmarkStart(b *testing.B) {
	for _, tc := range []struct {
		name string
		spec child.Spec
	}{
		{"plain", child.Spec{Path: "true"}},
		{"stdin and stderr", child.Spec{Path: "true", Stdin: strings.NewReader(""), Stderr: child.StderrSeparate}},
		{"raw", child.Spec{Path: "true", RawOutput: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := child.Start(tc.spec, child.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if pipe := p.RawPipe(); pipe != nil {
					pipe.Discard()
				}
				for c := range p.Output() {
					c.Release()
				}
				p.Wait()
			}
		})
	}
}
