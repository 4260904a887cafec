module tally-bench/sqlitedriver

go 1.26.8

require (
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/shopspring/decimal v1.4.0
	modernc.org/sqlite v1.61.1
)

require (
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	golang.org/x/sys v0.49.0 // indirect
	modernc.org/libc v1.79.0 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
)

// github.com/google/pprof is only a test dependency of modernc.org/sqlite
// v1.61.1; the module proxy does not serve the pseudo-version it names, which
// makes `go mod tidy` fail. Point it at one the proxy has. Does not affect
// the build.
replace github.com/google/pprof v0.0.0-20261016150608-1facf8f91b50 => github.com/google/pprof v0.0.0-20260802141513-ef3492d7dac3
