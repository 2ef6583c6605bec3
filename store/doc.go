// Package store owns the run history of rexec: the SQLite database
// <dir>/rexec.db that records every detached run (script, arguments, who
// asked, state, times, progress, result, how it ended) and its guest keys,
// the output file of each run under <dir>/output/, and the stdin a queued run
// waits with (<dir>/stdin-<id>). It never starts, signals or waits for
// processes and knows nothing of HTTP: package detached records what
// happened through it, and webapi reads from it.
//
// # Durability
//
// The database runs in WAL mode with synchronous=NORMAL. A write that returned
// without error (an "acknowledged" one) has been appended to the WAL file
// with write(2) before COMMIT returned, so it lives in the kernel's page cache
// and survives a kill -9 of rexec: the next Open replays the WAL. What NORMAL
// gives up against FULL is an fsync of the WAL at every commit, so after a
// power loss or kernel crash the last transactions before the crash may be
// rolled back (the database itself stays consistent). Options.FullSync buys
// that guarantee too, at the cost of one fsync per write. Output files are
// written with plain write(2) and have the same property: everything a
// Write accepted is in the file after a kill -9 of the process.
//
// # Files
//
// The database, its -wal and -shm files and the output files are made with
// mode 0600 and the directories with 0700, whatever the umask and the mode of
// a data directory that already existed: the history holds arguments, which
// may be secret. Open also makes the database files of older versions 0600.
//
// # Conditions of the server
//
// Errors that come from the server rather than from the request carry a kind
// besides their cause: ErrBusy when another process holds the database's lock
// longer than Options.BusyTimeout, ErrFull when the disk or quota is full.
// Ready tells, without waiting, whether the store can take writes now. A full
// disk cuts the output of a run rather than failing it: see OutputWriter.
//
// # Seams
//
// Package detached depends on the History and Outputs interfaces only, never
// on *Store, so that a history shared by several hosts can take its place.
// Package storetest holds the tests any implementation of them must pass.
//
// # Replicas
//
// A Store can also be one host's copy of a history replicated from a log
// (package fleet/jshistory): MakeReplica names the log, and Entry applies
// its entries, each with every value taken from the entry rather than from
// this host, and records the last one applied in the same transaction
// (replica.go).
package store
