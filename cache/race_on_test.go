//go:build race

package cache

// raceEnabled shrinks single-goroutine measurement tests, which the race
// detector slows tenfold and cannot help.
const raceEnabled = true
