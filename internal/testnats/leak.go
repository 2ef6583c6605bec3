package testnats

import "go.uber.org/goleak"

// LeakOptions are goleak's options for the packages that use nats.go: its
// jetstream package starts, with a connection's first asynchronous publish
// reply, a goroutine that waits for the connection's status and ends when
// it closes, but one started as the publisher is cleaned up reads the
// channel after it was cleared and waits on nil for good (nats.go
// v1.55.0, jetstream/publish.go, resetPendingAcksOnReconnect). It holds
// nothing of ours.
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect")}
}
