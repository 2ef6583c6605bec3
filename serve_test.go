//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestServeRefusesAnOpenAddressWithoutToken(t *testing.T) {
	base := serveCmd{Port: 8910, StatusSize: 8, StdoutSize: 8, KillGrace: 1, ShutdownGrace: 1, MaxBody: 1, Heartbeat: 1, MaxOutput: 1, EventReplay: 1, EventQueue: 1,
		BodyTimeout: 1, BusyTimeout: 1, MaxMonitors: 1, MonitorsPerKey: 1, MonitorNames: 1, MaxQueued: 1, MaxQueuedStdin: 1,
		PluginTimeout: 1, PluginProcs: 1, PluginSessions: 1}
	for _, tc := range []struct {
		ip, token string
		insecure  bool
		clientCA  string
		ok        bool
	}{
		{"127.0.0.1", "", false, "", true},
		{"::1", "", false, "", true},
		{"localhost", "", false, "", true},
		{"0.0.0.0", "", false, "", false},
		{"192.0.2.7", "", false, "", false},
		{"0.0.0.0", "t0ken", false, "", true},
		{"0.0.0.0", "", true, "", true},
		{"0.0.0.0", "", false, "clients.pem", true}, // mutual TLS
	} {
		c := base
		c.IP, c.Token, c.InsecureNoAuth = tc.ip, tc.token, tc.insecure
		if tc.clientCA != "" {
			c.TLSCert, c.TLSKey, c.TLSClientCA = "server.crt", "server.key", tc.clientCA
		}
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("ip %s token %q insecure %v: err %v", tc.ip, tc.token, tc.insecure, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--token") {
			t.Errorf("refusal does not say how to fix it: %v", err)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "2GiB": 2 << 30, "1M": 1 << 20, "10B": 10, " 3 KB": 3 << 10, "1TiB": 1 << 40,
	} {
		var b byteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || int64(b) != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5MiB", "1PiB", "99999999999999GiB"} {
		var b byteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
}

func TestRaiseFileLimitKeepsOrRaises(t *testing.T) {
	before, after, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if after.Cur < before.Cur || after.Cur != after.Max {
		t.Fatalf("limit went from %+v to %+v", before, after)
	}
}

func TestDays(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "1d12h": 36 * time.Hour, "0": 0, "90m": 90 * time.Minute,
	} {
		var d days
		if err := d.UnmarshalText([]byte(in)); err != nil || time.Duration(d) != want {
			t.Errorf("%q: %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1x", "1d-2h"} {
		var d days
		if err := d.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %v", in, time.Duration(d))
		}
	}
}
