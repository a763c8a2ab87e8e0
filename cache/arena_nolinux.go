//go:build darwin || freebsd

package cache

func adviseHugePages([]byte) {}
