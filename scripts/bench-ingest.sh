#!/usr/bin/env bash
# Ingest benchmark (docs/benchmarks.md): alternates a null server and tally,
# ROUNDS times, each taking EVENTS events from `tally loadgen` with batches of
# 1,000 over 4 connections and 1,000 subjects; tally has 3 meters on the event
# type, dedup and durable commits. Prints one JSON line per run plus tally's
# peak RSS, and checks tally's SUM against loadgen's exact expectation.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
go build -o "$WORK/tally" ./cmd/tally
T="$WORK/tally"
wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "$1/healthz" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; return 1; }
for round in $(seq "$ROUNDS"); do
	"$T" nullserver --addr 127.0.0.1:18095 >/dev/null 2>&1 &
	NP=$!
	sleep 0.5
	echo "null  $round $("$T" loadgen --url http://127.0.0.1:18095 --events "$EVENTS" --json | tail -1)"
	kill $NP; wait $NP 2>/dev/null || true

	rm -rf "$WORK/data"
	"$T" serve --data "$WORK/data" --addr 127.0.0.1:18096 >/dev/null 2>"$WORK/serve.log" &
	SP=$!
	wait_up http://127.0.0.1:18096
	for m in '{"slug":"req_value","eventType":"request","aggregation":"SUM","valueProperty":"$.value"}' \
		'{"slug":"req_count","eventType":"request","aggregation":"COUNT","groupBy":{"route":"$.route"}}' \
		'{"slug":"req_max","eventType":"request","aggregation":"MAX","valueProperty":"$.value"}'; do
		curl -fs -o /dev/null -X POST http://127.0.0.1:18096/api/v1/meters -H 'Content-Type: application/json' -d "$m"
	done
	OUT=$("$T" loadgen --url http://127.0.0.1:18096 --events "$EVENTS" --json | tail -1)
	RSS=$(awk '/VmHWM/ {print $2}' /proc/$SP/status)
	echo "tally $round $OUT peak_rss_kb=$RSS"
	WANT=$(echo "$OUT" | sed 's/.*"expected_sum":"\([^"]*\)".*/\1/')
	GOT=$(curl -fs http://127.0.0.1:18096/api/v1/meters/req_value/query | sed 's/.*"value":\([^,]*\),.*/\1/')
	if [ "$GOT" != "$WANT" ]; then echo "SUM mismatch: tally says $GOT, loadgen expected $WANT" >&2; exit 1; fi
	kill $SP; wait $SP 2>/dev/null || true
done
