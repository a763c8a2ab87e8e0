//go:build !unix

package tests

import "testing"

func raiseOpenFiles(t *testing.T, n uint64) {
	t.Skipf("needs %d open files: only checked on Unix", n)
}
