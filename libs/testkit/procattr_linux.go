package testkit

import "syscall"

// redisSysProcAttr makes the kernel kill redis-server if the test binary dies
// without running its cleanups (a panic in another goroutine, a timeout), so
// no server outlives its test run.
func redisSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
