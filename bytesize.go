package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value in bytes: "1048576", "512KiB", "1MiB", "2GiB"
// (KB/MB/GB and K/M/G are read as the binary units too).
type byteSize int64

func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	units := []struct {
		suffixes []string
		mult     int64
	}{
		{[]string{"GiB", "GB", "G"}, 1 << 30},
		{[]string{"MiB", "MB", "M"}, 1 << 20},
		{[]string{"KiB", "KB", "K"}, 1 << 10},
		{[]string{"B"}, 1},
	}
	mult := int64(1)
outer:
	for _, u := range units {
		for _, suf := range u.suffixes {
			if num, ok := strings.CutSuffix(s, suf); ok {
				s, mult = strings.TrimSpace(num), u.mult
				break outer
			}
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size such as 1048576, 512KiB or 1MiB", string(text))
	}
	*b = byteSize(n * mult)
	return nil
}
