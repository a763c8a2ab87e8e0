package tests

import "syscall"

// childAttr makes the kernel kill a server if the test process dies
// first (a crashed or killed test, a fuzz worker the coordinator stops),
// so no server outlives its test.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
