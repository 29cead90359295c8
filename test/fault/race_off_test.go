//go:build !race

package fault

// raceEnabled is false when the suite runs without -race.
const raceEnabled = false
