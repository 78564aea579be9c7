package calendar

// ForgetCompiledFreezes empties the memo of compiled freezes, for cold-start benchmarks.
func ForgetCompiledFreezes() {
	compiledFreezes.Clear()
	compiledCount.Store(0)
}
