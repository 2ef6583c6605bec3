package child

// WithoutPidfd runs fn with the fallback for kernels without pidfd: a
// goroutine blocked in waitid per child. Tests using it must not run in
// parallel with others.
func WithoutPidfd(fn func()) {
	usePidfd = false
	defer func() { usePidfd = true }()
	fn()
}
