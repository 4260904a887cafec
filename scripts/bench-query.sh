#!/usr/bin/env bash
# Query benchmark (docs/benchmarks.md): loads EVENTS events over 10,000
# subjects spread over the last 30 days into a fresh tally with one SUM meter,
# restarts tally, then times 1,000 one-month totals and 1,000 30-day HOUR
# window queries for random subjects, ROUNDS times. DATA keeps the loaded
# store between invocations (set SKIP_LOAD=1 to reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
ROUNDS=${ROUNDS:-3}
DATA=${DATA:-/tmp/tally-query-bench}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
go build -o "$WORK/tally" ./cmd/tally
T="$WORK/tally"
URL=http://127.0.0.1:18097
wait_up() { for _ in $(seq 300); do curl -fs -o /dev/null "$URL/healthz" && return 0; sleep 0.1; done; echo "tally did not start" >&2; return 1; }
if [ -z "${SKIP_LOAD:-}" ]; then
	rm -rf "$DATA"
	"$T" serve --data "$DATA" --addr 127.0.0.1:18097 >/dev/null 2>"$WORK/serve.log" &
	SP=$!
	wait_up
	curl -fs -o /dev/null -X POST "$URL/api/v1/meters" -H 'Content-Type: application/json' \
		-d '{"slug":"req_value","eventType":"request","aggregation":"SUM","valueProperty":"$.value","groupBy":{"route":"$.route"}}'
	echo "load $("$T" loadgen --url "$URL" --events "$EVENTS" --subjects 10000 --spread 720h --json | tail -1)"
	kill $SP; wait $SP 2>/dev/null || true
fi
"$T" serve --data "$DATA" --addr 127.0.0.1:18097 >/dev/null 2>"$WORK/serve.log" &
SP=$!
wait_up
for round in $(seq "$ROUNDS"); do
	echo "total $round $("$T" querybench --url "$URL" --meter req_value --subjects 10000 --queries 1000 --seed "$round" --json)"
	echo "hour  $round $("$T" querybench --url "$URL" --meter req_value --subjects 10000 --queries 1000 --window HOUR --seed "$round" --json)"
done
