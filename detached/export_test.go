package detached

// NewQueueModel returns the plain model the memory queue is checked against
// (queue_test.go), for the external tests: the conformance suite runs
// against it too, which shows that the suite asks only what the Queue
// interface promises, not what the memory queue happens to do.
func NewQueueModel() Queue { return &queueModel{} }
