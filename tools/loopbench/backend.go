package main

import (
	"context"
	"errors"
	"sync"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/persist"
)

// memStore is a persist.Store in memory: the engine in front of it is the
// server's, and the store is never in the way (the benchmark's keyspace
// fits the cache, so it is read once per key and written only on a flush,
// which the flush interval puts off beyond a run).
type memStore struct {
	mu sync.Mutex
	m  map[cache.Key]persist.Record
}

func newMemStore() *memStore { return &memStore{m: make(map[cache.Key]persist.Record)} }

func (s *memStore) Load(_ context.Context, k cache.Key) (cache.State, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[k]
	return r.State, r.Stamp, nil
}

// LoadUser scans the map: the benchmark's store is empty or nearly so.
func (s *memStore) LoadUser(_ context.Context, user int64, limit int) ([]persist.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []persist.Record
	for k, r := range s.m {
		if k.User == user && len(recs) < limit {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

func (s *memStore) Write(_ context.Context, recs []persist.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if old, ok := s.m[r.Key]; !ok || r.Stamp > old.Stamp {
			s.m[r.Key] = r
		}
	}
	return nil
}

func (s *memStore) Close() error { return nil }

// host is the commands.Host of the benchmark server: no connection
// registry, no SHUTDOWN.
type host struct{ port int }

func (h host) HostStats() commands.HostStats         { return commands.HostStats{Port: h.port} }
func (h host) EachSession(func(*commands.Session))   {}
func (h host) Kill(func(*commands.Session) bool) int { return 0 }
func (h host) Shutdown() error {
	return errors.New("loopbench: SHUTDOWN is not supported, send SIGTERM")
}
