//go:build linux

package main

import "github.com/rexec/rexec/cgroup"

// byteSize is a flag value in bytes: "1048576", "512KiB", "1MiB", "2GiB"
// (KB/MB/GB and K/M/G are read as the binary units too): cgroup.ParseSize,
// the one reader of sizes.
type byteSize int64

func (b *byteSize) UnmarshalText(text []byte) error {
	n, err := cgroup.ParseSize(string(text))
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// cpuAmount is a flag value in thousandths of a core, written as cores:
// "0.5", "2", "250m" (cgroup.ParseCPU).
type cpuAmount int64

func (c *cpuAmount) UnmarshalText(text []byte) error {
	n, err := cgroup.ParseCPU(string(text))
	if err != nil {
		return err
	}
	*c = cpuAmount(n)
	return nil
}
