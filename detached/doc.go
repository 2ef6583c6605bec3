// Package detached owns detached runs: runs of exectab scripts that no
// client holds open (the /scripts/v1 API). A Manager queues them per script
// (first in, first out; a run may wait for a start time), starts each in a
// slot of the broker (which alone counts a script's -s, for attached and
// detached runs alike: a freed slot starts the next queued run at once),
// writes their output, follows their progress lines and callbacks, and
// records their whole life. After a crash it marks the runs that were
// running as interrupted (killing their groups if they survived) and
// queues the queued ones again.
//
// It works through interfaces that a history shared by several hosts can
// fill: store.History (the runs' records), store.Outputs (their output and
// stdin), Queue (what starts next) and feed.Publisher (their events). The
// single-host implementations are *store.Store, NewMemQueue and *feed.Hub.
// Package launch turns a script into a process spec, as it does for
// attached runs. It knows nothing of HTTP; the process table stays the
// broker's.
//
// The files: manager.go (the Manager, submitting, reading, cancelling),
// schedule.go (the loop and what starts next), execute.go (one run from
// its start to its end), record.go (recording ends, retried while the
// history cannot take them), callback.go (a run's result and progress
// posted back), progress.go (progress lines) and queue.go (the in-memory
// Queue).
package detached
