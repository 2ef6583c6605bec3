package detached

// What the metrics read of detached runs. The runs started and ended are
// counted where they start and end (execute.go; a run cancelled while
// queued, or whose stdin could not be kept, in manager.go) through
// Config.Metrics; runs of scripts that start no process (-n) are
// notifications and are not counted. How many are running is the
// broker's to say (broker.Running); how many are queued is the manager's.

// Queued counts the runs queued now, by script: those waiting for a slot,
// a start time, resources, or a script a reload removed.
func (m *Manager) Queued() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := map[string]int{}
	for _, s := range m.queue.Scripts() {
		q[s] = m.queue.Len(s)
	}
	return q
}
