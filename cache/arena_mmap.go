//go:build (linux || darwin || freebsd) && !ptrcache

package cache

import (
	"fmt"
	"syscall"
	"unsafe"
)

// allocEntries maps n zeroed entries outside the Go heap. The GC neither
// scans nor counts this memory, so an arena of any size leaves the heap
// goal, and so the GC frequency, unchanged. Pages are committed on first
// touch; a zeroed entry is an empty slot.
func allocEntries(n int) ([]entry, func() error, error) {
	if n == 0 {
		return nil, func() error { return nil }, nil
	}
	size := n * int(unsafe.Sizeof(entry{}))
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("map %d-byte arena: %w", size, err)
	}
	adviseHugePages(mem)
	entries := unsafe.Slice((*entry)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	return entries, func() error { return syscall.Munmap(mem) }, nil
}
