// Package detached owns detached runs: runs of exectab scripts that no client
// holds open. It queues them per script (first in, first out; a run may wait
// for a start time), starts them through the broker within the script's -s,
// writes their output to the store's files, follows their progress lines,
// and records their whole life in the store. After a crash it marks the runs
// that were running as interrupted and queues the queued ones again. It
// knows nothing of HTTP; the process table stays the broker's.
package detached
