//go:build !linux

package main

import (
	"errors"

	"github.com/readstates/readstates/commands"
)

func serveEpoll(string, int, *commands.Dispatcher) (func(), error) {
	return nil, errors.New("the epoll driver runs on Linux only")
}
