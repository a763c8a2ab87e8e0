//go:build linux

package server

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops' system calls that cannot block: read(2) and write(2) on
// non-blocking sockets, and epoll_wait(2) with a zero timeout. A raw call
// skips the runtime's system-call bookkeeping (entersyscall and
// exitsyscall), which only a call that may block needs: one that blocks
// long has its P taken by the runtime's monitor, and getting one back on
// return is the expensive path. None of these takes more than the time to
// copy a socket buffer, so none can hold up a stop-the-world.

func sysRead(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// pollNow is epoll_wait(2) with a zero timeout (epoll_pwait with no
// signal mask, which every Linux architecture has).
func pollNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
