// Command gen is the child the benchmark runs, both through rexec and
// straight from os/exec, so that both sides run the very same program.
//
//	gen lines BYTES        BYTES of 100-byte lines (99 characters and '\n')
//	                       to stdout, in 64 KiB writes
//	gen ticks N INTERVAL   N lines, one every INTERVAL, each holding the
//	                       time (Unix nanoseconds, CLOCK_REALTIME) just
//	                       before its own unbuffered write(2)
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: gen lines BYTES | gen ticks N INTERVAL")
	}
	switch args[0] {
	case "lines":
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return err
		}
		return lines(n)
	case "ticks":
		if len(args) < 3 {
			return fmt.Errorf("usage: gen ticks N INTERVAL")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		every, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		return ticks(n, every)
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// lineLen is the length of each generated line, newline included.
const lineLen = 100

// lines writes n bytes of 100-byte lines through a 64 KiB buffer, so the
// pipe sees large writes and the generator itself costs next to nothing.
func lines(n int64) error {
	line := make([]byte, lineLen)
	for i := range lineLen - 1 {
		line[i] = 'a' + byte(i%26)
	}
	line[lineLen-1] = '\n'
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	for n > 0 {
		l := line[:min(n, lineLen)]
		if _, err := w.Write(l); err != nil {
			return err
		}
		n -= int64(len(l))
	}
	return w.Flush()
}

// ticks writes n timestamped lines, one every interval, each with a write
// call of its own. The timestamp is taken right before the write, so what a
// reader computes from it is the delivery latency alone.
func ticks(n int, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	buf := make([]byte, 0, 32)
	for range n {
		<-t.C
		buf = strconv.AppendInt(buf[:0], time.Now().UnixNano(), 10)
		buf = append(buf, '\n')
		if _, err := os.Stdout.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
