package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestPragmas checks the settings the package documentation promises, on
// every connection of the pool, not just the first.
func TestPragmas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		wantSync int // 1 NORMAL, 2 FULL
	}{{"default", Options{}, 1}, {"full sync", Options{FullSync: true}, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, t.TempDir(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var conns []interface{ Close() error }
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for range 3 { // hold several connections at once
				c, err := s.db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				var journal string
				var sync, fk, busy, version int
				for q, dst := range map[string]any{
					"PRAGMA journal_mode": &journal, "PRAGMA synchronous": &sync, "PRAGMA foreign_keys": &fk,
					"PRAGMA busy_timeout": &busy, "PRAGMA user_version": &version,
				} {
					if err := c.QueryRowContext(ctx, q).Scan(dst); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				if journal != "wal" || sync != tc.wantSync || fk != 1 || busy != 5000 || version != len(migrations) {
					t.Errorf("journal_mode %s, synchronous %d, foreign_keys %d, busy_timeout %d, user_version %d",
						journal, sync, fk, busy, version)
				}
			}
		})
	}
}

// FuzzOutputCap: however the output is split into writes, the file holds
// its first max bytes, then the marker if anything was cut, and nothing else.
func FuzzOutputCap(f *testing.F) {
	f.Add([]byte("hello, world\n"), uint8(3), uint16(5))
	f.Add([]byte("exactly"), uint8(6), uint16(7))
	f.Add([]byte{}, uint8(0), uint16(0))
	f.Add(bytes.Repeat([]byte("x"), 1000), uint8(255), uint16(999))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, max16 uint16) {
		max := int64(max16)
		path := filepath.Join(t.TempDir(), "out.log")
		file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
		if err != nil {
			t.Fatal(err)
		}
		w := &OutputWriter{id: "fuzz", max: max, f: file}
		step := int(chunk) + 1
		for rest := data; len(rest) > 0; {
			n := min(step, len(rest))
			if got, err := w.Write(rest[:n]); got != n || err != nil {
				t.Fatalf("Write(%d) = %d, %v", n, got, err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want := data
		if int64(len(data)) > max {
			want = append(append([]byte{}, data[:max]...), TruncationMarker(max)...)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || w.Size() != int64(len(want)) || w.Truncated() != (int64(len(data)) > max) {
			t.Fatalf("file %q (size %d, truncated %v), want %q", got, w.Size(), w.Truncated(), want)
		}
	})
}
