//go:build (darwin || freebsd) && !ptrcache

package cache

func adviseHugePages([]byte) {}
