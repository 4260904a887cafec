//go:build !race

package main

// raceTest: see race_on_test.go.
const raceTest = false
