//go:build !linux

package server

import "net"

// Elsewhere than Linux, every connection has a goroutine (redcon's server).

type eventLoop struct{}

type deferPool struct{}

func (*eventLoop) wake() {}

func (s *Server) useLoops(net.Listener) bool { return false }

func (s *Server) serveLoops(*guardListener) error { panic("server: no event loops on this system") }

func (s *Server) stopLoops() {}

func (s *Server) wakeLoops() {}
