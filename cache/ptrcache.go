//go:build ptrcache

package cache

// Built with -tags ptrcache, Table is the pointer-rich LRU baseline
// (ptrtable.go) instead of the arena table: for the latency-under-GC
// benchmark only.

// Implementation names the Table built in: this pointer-rich LRU baseline,
// or the arena table of the default build.
const Implementation = "pointer-lru"

// Table is a fixed-capacity map from Key to State with LRU eviction,
// built for write-behind. All methods are safe for concurrent use.
type Table = ptrTable

// New returns a table with room for cfg.Entries read states.
func New(cfg Config) (*Table, error) { return newPtrTable(cfg) }
