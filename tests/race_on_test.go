//go:build race

package tests

// raceEnabled: this test binary was built with -race.
const raceEnabled = true
