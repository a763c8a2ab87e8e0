package commands

import "github.com/readstates/readstates/persist"

// ReadStates is what the read-state commands need of the engine that keeps
// the read states (persist.Engine): Incr, Reset, Get, GetMany and
// Atomically (MULTI/EXEC). Implementations are safe for concurrent use,
// and each call is atomic for its read state.
type ReadStates = persist.ReadStates

// StatsSource reports the engine's counters for INFO and DBSIZE.
type StatsSource interface {
	Stats() EngineStats
}

// EngineStats is a snapshot of the engine's counters.
type EngineStats = persist.Stats
