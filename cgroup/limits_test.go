package cgroup_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rexec/rexec/cgroup"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"1048576", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"64M", 64 << 20, false},
		{" 2 GiB ", 2 << 30, false},
		{"1TB", 1 << 40, false},
		{"7B", 7, false},
		{"0", 0, false},
		{"", 0, true},
		{"-1MiB", 0, true},
		{"1.5GiB", 0, true},
		{"12PiB", 0, true},
		{"99999999TiB", 0, true},
		{"MiB", 0, true},
	} {
		got, err := cgroup.ParseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
		if err == nil && got != 0 {
			if back, err := cgroup.ParseSize(cgroup.FormatSize(got)); err != nil || back != got {
				t.Errorf("FormatSize(%d) = %q reads back as %d, %v", got, cgroup.FormatSize(got), back, err)
			}
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"1", 1000, false},
		{"0.5", 500, false},
		{"1.25", 1250, false},
		{"250m", 250, false},
		{"0", 0, false},
		{"0.0001", 0, true}, // not silently "no limit"
		{"-1", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"1e300", 0, true},
		{"2.5m", 0, true},
		{"", 0, true},
	} {
		got, err := cgroup.ParseCPU(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
		if err == nil {
			if back, err := cgroup.ParseCPU(cgroup.FormatCPU(got)); err != nil || back != got {
				t.Errorf("FormatCPU(%d) = %q reads back as %d, %v", got, cgroup.FormatCPU(got), back, err)
			}
		}
	}
}

func TestLimitsCheck(t *testing.T) {
	for _, l := range []cgroup.Limits{
		{Memory: -1}, {Pids: -1}, {CPU: -5},
		{Memory: cgroup.MinMemory - 1}, {Pids: 1}, {CPU: cgroup.MinCPU - 1},
		{Memory: 1<<63 - 1}, {CPU: 1 << 62},
	} {
		if err := l.Check(); !errors.Is(err, cgroup.ErrLimit) {
			t.Errorf("%+v.Check() = %v, want an ErrLimit", l, err)
		}
	}
	for _, l := range []cgroup.Limits{{}, {Memory: cgroup.MinMemory, Pids: cgroup.MinPids, CPU: cgroup.MinCPU}, {Memory: 1 << 40, CPU: 64000}} {
		if err := l.Check(); err != nil {
			t.Errorf("%+v.Check() = %v", l, err)
		}
	}
}

func TestLimitsWithinOrMin(t *testing.T) {
	caps := cgroup.Limits{Memory: 1 << 30, Pids: 100}
	name := func(f string) string { return "--max-" + f }
	for _, l := range []cgroup.Limits{{}, {Memory: 1 << 30}, {Pids: 100, CPU: 4000}, {Memory: 1 << 20, Pids: 1}} {
		if err := l.Within(caps, "the request's", name); err != nil {
			t.Errorf("%+v within %+v: %v", l, caps, err)
		}
	}
	err := cgroup.Limits{Memory: 2 << 30}.Within(caps, "the request's", name)
	if !errors.Is(err, cgroup.ErrLimit) || !strings.Contains(err.Error(), "--max-memory=1GiB") || !strings.Contains(err.Error(), "2GiB") {
		t.Errorf("2GiB within a 1GiB cap: %v", err)
	}
	if err := (cgroup.Limits{Pids: 101}).Within(caps, "x", name); !errors.Is(err, cgroup.ErrLimit) {
		t.Errorf("101 pids within 100: %v", err)
	}
	if got := (cgroup.Limits{Pids: 5}).Or(caps); got != (cgroup.Limits{Memory: 1 << 30, Pids: 5}) {
		t.Errorf("Or: %+v", got)
	}
	if got := caps.Min(cgroup.Limits{Memory: 1 << 20, Pids: 500, CPU: 100}); got != (cgroup.Limits{Memory: 1 << 20, Pids: 100, CPU: 100}) {
		t.Errorf("Min: %+v", got)
	}
}
