//go:build !linux

package tests

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
