//go:build linux

package main

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

var sink [][]byte

func TestQuietServerReturnsMemory(t *testing.T) {
	released := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	// A burst: 64 MiB that becomes garbage at once.
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC() // what a busy server's own allocations would do
	before := released()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		returnMemoryWhenQuiet(ctx, zerolog.Nop(), 20*time.Millisecond, 16<<20)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for released() < before+32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("released %d bytes, want 32 MiB more than %d", released(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
