#!/bin/sh
# Time-boxed libFuzzer run over a scratch copy of a corpus.
# usage: run-smoke.sh <fuzzer> <corpus-dir> <seconds>
set -eu
fuzzer=$1
corpus=$2
secs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
exec "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$work"
