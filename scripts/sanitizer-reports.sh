#!/usr/bin/env bash
# Fails, printing them, when a sanitizer wrote any report into directory $1
# (the sanitizers' log_path; see the Makefile's ASAN_ENV and TSAN_ENV).
# A report from a process that the tests kill on purpose counts too: the
# sanitizers only write when they found something.
set -euo pipefail
dir="$1"
shopt -s nullglob
reports=("$dir"/*)
if [ ${#reports[@]} -eq 0 ]; then
  echo "sanitizers: no reports in $dir"
  exit 0
fi
for report in "${reports[@]}"; do
  echo "==== $report"
  cat "$report"
done
echo "sanitizers: ${#reports[@]} report(s) in $dir" >&2
exit 1
