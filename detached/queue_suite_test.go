package detached_test

import (
	"testing"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/detached/queuetest"
)

// TestMemQueue runs the conformance suite of detached.Queue against the
// single-host memory queue.
func TestMemQueue(t *testing.T) { queuetest.TestQueue(t, detached.NewMemQueue) }

// TestQueueModel runs the suite against the plain model of queue_test.go,
// a second implementation written for clarity rather than speed.
func TestQueueModel(t *testing.T) { queuetest.TestQueue(t, detached.NewQueueModel) }
