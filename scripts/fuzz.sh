#!/usr/bin/env bash
# Runs each libFuzzer target named after $1 (the directory of the fuzz
# executables) for FUZZ_SECONDS, from its seed corpus in fuzz/corpus/<name>,
# and prints the executions of each. Exits non-zero when any target found a
# crash, a leak or a sanitizer report (its input is left in $1 as
# <name>-crash-* / leak-* / timeout-*). The Makefile then checks the
# sanitizers' report directory (scripts/sanitizer-reports.sh).
set -uo pipefail
dir="$1"
shift
seconds="${FUZZ_SECONDS:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
failed=()
summary=()
for name in "$@"; do
  binary="$dir/${name}_fuzzer"
  work="$dir/corpus-$name"
  log="$dir/$name.log"
  mkdir -p "$work"
  echo "fuzz: $name for ${seconds}s"
  "$binary" -max_total_time="$seconds" -max_len=16384 -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$dir/$name-" "$work" "$root/fuzz/corpus/$name" \
    > "$log" 2>&1
  code=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  rate=$(( ${runs:-0} / seconds ))
  summary+=("$(printf '%-10s %10s executions  %6s/s  exit %s' "$name" "${runs:-?}" "$rate" "$code")")
  if [ "$code" -ne 0 ]; then
    failed+=("$name")
    tail -n 60 "$log"
  fi
done
echo "fuzz: ${seconds}s per target"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
