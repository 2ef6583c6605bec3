package jshistory

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rexec/rexec/cgroup"
	"github.com/rexec/rexec/store"
)

// An operation is one write of the history, as it is published to the
// stream: a JSON object, one a message. It carries every value the write
// needs (the run's ID, the times, the output size), so that every host that
// applies it reaches the same state. The one value it does not carry is a
// new run's QueuedAt: that is the time the stream stored the message, the
// same for every host that reads it (see apply).

// opVersion is the version of the operations this package writes and
// reads. An operation of a later version is skipped, with a log line.
//
// A kind added later (the guest keys' were) keeps the version: a rexec that
// does not know a kind skips its operations with a log line (decodeOp, and
// History.apply records it as applied), and applies the others as before.
const opVersion = 1

// The kinds of operation: one for each write of store.History, and of the
// fleet's guest keys.
const (
	opCreate    = "create"    // Create
	opStart     = "start"     // MarkStarted
	opDone      = "done"      // MarkDone
	opProgress  = "progress"  // SetProgress
	opTasks     = "tasks"     // SetTaskProgress
	opResult    = "result"    // SetResult
	opDelete    = "delete"    // Delete
	opRetention = "retention" // DeleteEndedBefore
	opRecover   = "recover"   // Recover of one host's runs

	opGuestCreate = "guest-create" // CreateGuest
	opGuestDelete = "guest-delete" // DeleteGuest
)

// op is an operation. Which fields it uses depends on Kind.
type op struct {
	V    int    `json:"v"`              // opVersion
	ID   string `json:"id"`             // random: names it for its writer, and is its Nats-Msg-Id
	Kind string `json:"kind"`           // opCreate...
	Run  string `json:"run,omitempty"`  // the run's ID
	Host string `json:"host,omitempty"` // start: the host that started it; recover: the host whose runs end
	// At is the time of the change: start: StartedAt; done, recover:
	// EndedAt; retention: the time runs ended before.
	At time.Time `json:"at,omitzero"`

	// create
	Script  string        `json:"script,omitempty"`
	Args    []string      `json:"args,omitempty"`
	Who     string        `json:"who,omitempty"`
	StartAt time.Time     `json:"start_at,omitzero"`
	Timeout time.Duration `json:"timeout_ns,omitempty"`

	// start
	Pid int `json:"pid,omitempty"`

	// done
	ExitCode        *int           `json:"exit_code,omitempty"`
	Signal          string         `json:"signal,omitempty"`
	Ended           store.Ended    `json:"ended,omitempty"`
	OutputTruncated string         `json:"output_truncated,omitempty"`
	Usage           *cgroup.Report `json:"usage,omitempty"`
	OutputSize      int64          `json:"output_size,omitempty"`

	// progress, tasks
	Progress      *store.Progress `json:"progress,omitempty"`
	TaskStartedAt time.Time       `json:"task_started_at,omitzero"`
	Tasks         []span          `json:"tasks,omitempty"`

	// result: the JSON object as a string, so its bytes stay as they were;
	// nil for none.
	Result *string `json:"result,omitempty"`

	// recover: the output size of each run the writer expects to end.
	Sizes map[string]int64 `json:"sizes,omitempty"`

	// guest-create: the key as it is recorded: its hash, never the key.
	Guest *guest `json:"guest,omitempty"`
	// guest-delete: the key's ID.
	GuestID string `json:"guest_id,omitempty"`
}

// guest is a store.Guest in an operation. Its fields are named one by one,
// so that no field added to store.Guest reaches the stream unless it is
// added here: the stream holds a key's SHA-256 hash and never the key, and
// no operation is ever logged whole.
type guest struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Run       bool      `json:"run,omitempty"`
	Cancel    bool      `json:"cancel,omitempty"`
	Status    bool      `json:"status,omitempty"`
	Monitor   bool      `json:"monitor,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	Created   time.Time `json:"created"`
	KeyHash   []byte    `json:"key_hash"` // SHA-256 of the key, in base64
	WithToken bool      `json:"with_token,omitempty"`
	Perms     []string  `json:"perms,omitempty"`
}

func toGuest(g *store.Guest) *guest {
	return &guest{ID: g.ID, Name: g.Name, Run: g.Run, Cancel: g.Cancel, Status: g.Status, Monitor: g.Monitor,
		Expires: g.Expires, Created: g.Created, KeyHash: g.KeyHash, WithToken: g.WithToken, Perms: g.Perms}
}

func (g *guest) store() store.Guest {
	return store.Guest{ID: g.ID, Name: g.Name, Run: g.Run, Cancel: g.Cancel, Status: g.Status, Monitor: g.Monitor,
		Expires: g.Expires, Created: g.Created, KeyHash: g.KeyHash, WithToken: g.WithToken, Perms: g.Perms}
}

// span is a store.TaskSpan in an operation.
type span struct {
	Title string    `json:"t"`
	Start time.Time `json:"s"`
	End   time.Time `json:"e"`
}

func toSpans(tasks []store.TaskSpan) []span {
	if len(tasks) == 0 {
		return nil
	}
	out := make([]span, len(tasks))
	for i, t := range tasks {
		out[i] = span{Title: t.Title, Start: t.Start, End: t.End}
	}
	return out
}

func fromSpans(spans []span) []store.TaskSpan {
	if len(spans) == 0 {
		return nil
	}
	out := make([]store.TaskSpan, len(spans))
	for i, s := range spans {
		out[i] = store.TaskSpan{Title: s.Title, Start: s.Start, End: s.End}
	}
	return out
}

// errCannotApply: a message of the stream holds no operation this version
// can apply.
var errCannotApply = errors.New("not an operation this rexec can apply")

// decodeOp reads an operation. Whatever it returns, the ID is the
// operation's if the message had one, so that its writer can be told.
func decodeOp(data []byte) (op, error) {
	var o op
	if err := json.Unmarshal(data, &o); err != nil {
		return o, fmt.Errorf("%w: %v", errCannotApply, err)
	}
	switch {
	case o.V > opVersion:
		return o, fmt.Errorf("%w: version %d, written by a newer rexec (this one knows %d)", errCannotApply, o.V, opVersion)
	case o.V < 1:
		return o, fmt.Errorf("%w: version %d", errCannotApply, o.V)
	}
	switch o.Kind {
	case opCreate, opStart, opDone, opProgress, opTasks, opResult, opDelete, opRetention, opRecover, opGuestDelete:
		return o, nil
	case opGuestCreate:
		if o.Guest == nil {
			return o, fmt.Errorf("%w: %s without its guest", errCannotApply, o.Kind)
		}
		return o, nil
	}
	return o, fmt.Errorf("%w: kind %q", errCannotApply, o.Kind)
}
