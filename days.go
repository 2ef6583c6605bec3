package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// days is a duration flag that also takes days: "30d", "12h", "1d12h"
// ("0" means never).
type days time.Duration

func (d *days) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		return fmt.Errorf("empty duration: say 0 to keep everything, or e.g. 30d")
	}
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30d, 12h or 1d12h", string(text))
		}
		total = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
	}
	if s != "" {
		rest, err := time.ParseDuration(s)
		if err != nil || rest < 0 {
			return fmt.Errorf("%q is not a duration such as 30d, 12h or 1d12h", string(text))
		}
		total += rest
	}
	*d = days(total)
	return nil
}
