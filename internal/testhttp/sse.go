package testhttp

import (
	"bufio"
	"strings"
	"testing"
)

// Event is one Server-Sent Event as a stream carries it: its id, its type,
// its data (lines joined with "\n"), and how many heartbeat comments
// (": ping") came before it.
type Event struct {
	ID, Event, Data string
	Pings           int
}

// ReadEvent reads the next event of an event stream, an event being the
// lines up to a blank one after an "event:" field; other comments are
// skipped. It fails t if the stream ends first.
func ReadEvent(t testing.TB, br *bufio.Reader) Event {
	t.Helper()
	var e Event
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the event stream ended: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && e.Event != "":
			return e
		case line == ": ping":
			e.Pings++
		case strings.HasPrefix(line, "id: "):
			e.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if e.Data != "" {
				e.Data += "\n"
			}
			e.Data += line[6:]
		}
	}
}
