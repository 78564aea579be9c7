//go:build !linux

package testkit

import "syscall"

// redisSysProcAttr returns nil: parent-death signals are Linux only.
func redisSysProcAttr() *syscall.SysProcAttr { return nil }
