//go:build linux

package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// A burst of thousands of held streams grows the heap by hundreds of MiB.
// Once the burst is over and the server is quiet, no allocation triggers a
// garbage collection, so that memory stays resident for minutes (until Go's
// two-minute forced collection and its slow scavenger). When the server has
// been quiet (no collection) for a whole period and holds more than
// quietHeapFloor, return the memory at once.
const (
	quietPeriod    = time.Minute
	quietHeapFloor = 64 << 20
)

// returnMemoryWhenQuiet checks every period, until ctx ends, and returns
// the memory when no collection ran for a period and the heap holds more
// than floor bytes.
func returnMemoryWhenQuiet(ctx context.Context, log zerolog.Logger, period time.Duration, floor uint64) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	read := func() (cycles, heap uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64() + samples[2].Value.Uint64()
	}
	lastCycles, _ := read()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cycles, heap := read()
		if cycles == lastCycles && heap > floor {
			// Twice: the first collection only moves what sync.Pools
			// hold (net/http's per-connection buffers: ~10 KiB a
			// stream) to their victim caches; the second frees it.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
			_, after := read()
			log.Debug().Uint64("heap_before", heap).Uint64("heap_after", after).Msg("quiet: returned memory to the OS")
			cycles, _ = read()
		}
		lastCycles = cycles
	}
}
