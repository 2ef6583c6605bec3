package jsqueue

import "time"

// SetWaits sets the bounds of the waits for a test, and returns what puts
// them back.
func SetWaits(apply, retry time.Duration) (restore func()) {
	a, r := applyWait, retryFor
	applyWait, retryFor = apply, retry
	return func() { applyWait, retryFor = a, r }
}
