// Package bounds holds tally's bounds on input: times, decimals, sizes and
// depths are bounded where they enter, before any expansion, with one parser
// per kind. Every entry point (the event decoder, query parameters, JSON
// request bodies, configuration, command-line flags and credentials) calls
// the same function for the same kind of value, so that a value accepted in
// one place is accepted everywhere and nothing accepted can break what is
// computed from it later (encoding a window end, a period, a log line).
package bounds
