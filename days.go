//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/rexec/rexec/catalog"
)

// days is a duration flag that also takes days: "30d", "12h", "1d12h"
// ("0" means never), written as the exectab's -t is.
type days time.Duration

func (d *days) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		return fmt.Errorf("empty duration: say 0 to keep everything, or e.g. 30d")
	}
	v, err := catalog.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = days(v)
	return nil
}
