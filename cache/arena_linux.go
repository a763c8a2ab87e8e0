//go:build !ptrcache

package cache

import "syscall"

// adviseHugePages asks for transparent huge pages: random probes over
// gigabytes miss the TLB on almost every access with 4 KiB pages. The
// advice is optional; an error only means the kernel will not.
func adviseHugePages(mem []byte) { _ = syscall.Madvise(mem, 14 /* MADV_HUGEPAGE */) }
