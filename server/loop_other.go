//go:build !linux

package server

import "net"

// Elsewhere than Linux, every connection is served by goroutines
// (stream.go).

type eventLoop struct{}

type deferPool struct{}

func (s *Server) useLoops(net.Listener) bool { return false }

func (s *Server) startLoops() error { panic("server: no event loops on this system") }

func (s *Server) serveLoop(net.Conn) { panic("server: no event loops on this system") }

func (s *Server) stopLoops() {}

func (s *Server) wakeLoops() {}
