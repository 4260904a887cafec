//go:build race

package main

// raceTest is true when the tests run with -race: TestMain then builds the
// tally binary with -race too, so that it reuses the race-instrumented
// packages the test binary was just compiled from instead of compiling
// every dependency (SQLite's C amalgamation included) a second time.
const raceTest = true
