//go:build race

package fault

// raceEnabled is true when the suite runs under -race; the manager binary
// is then built with -race too, which reuses the packages the test build
// already compiled instead of compiling them all again.
const raceEnabled = true
